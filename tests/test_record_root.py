"""The record folder on a rig's small card: a new record per run under a record root, the
free-space reserve (the video stops, findings, log and live page go on, summary.json says why),
and `rustseg records`. The reserve is tested on a real small tmpfs (root, as in CI), and once
with a given free-space function, which runs anywhere."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, output_frame, video_frames

from edge.errors import OutputStopped
from edge.outputs import VideoFileSink
from edge.record.layout import RecordLayout
from edge.record.reserve import ReserveGuardedVideo

_MB = 1024 * 1024
_RECORD_NAME = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(-\d+)?")


def _rustseg(*args: str, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _config_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rig.yaml"
    path.write_text(text)
    return str(path)


@contextmanager
def _small_card(folder: Path, size_mb: int):
    """A real tmpfs of `size_mb` at `folder`, or skip saying why."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                              str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs a small tmpfs (root and mount): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def _only_record(root: Path) -> RecordLayout:
    records = [p for p in root.iterdir() if p.is_dir()]
    assert len(records) == 1 and _RECORD_NAME.fullmatch(records[0].name), records
    return RecordLayout(records[0])


def test_video_stops_at_the_reserve_and_findings_and_log_go_on(tmp_path):
    frames = 120
    with _small_card(tmp_path / "card", 16) as card:
        reserve_mb = shutil.disk_usage(card).free / _MB - 1.5   # room for ~1.5 MB, then stop
        config = _config_file(tmp_path, f"record:\n  reserve_mb: {reserve_mb:.3f}\n"
                                        "  finding_gap_frames: 4\n")
        done = _rustseg("run", "--source", f"synthetic://?width=640&height=480&frames={frames}"
                        "&seed=3", "--record-root", str(card), "--refine", "light", "--quiet",
                        "--headless", "--config", config)
        assert done.returncode == 5, done.stderr      # an output (the video) was not kept whole
        layout = _only_record(card)
        summary = layout.read_summary()
        video = summary["video"]
        stopped_at = video["stopped_at_frame"]
        assert video["recorded"] == "part" and 0 < stopped_at < frames, video
        assert "under the reserve" in video["reason"] and "record.reserve_mb" in video["reason"]
        assert summary["ended"] == "end of source" and summary["complete"] is False
        assert summary["space"]["free_mb_at_end"] > 0        # stopped before the card was full
        assert f"recording the video stopped at frame {stopped_at}" in done.stderr
        # The log and the findings went on after the video stopped.
        assert len(layout.read_frames()) == frames
        later = [f for f in layout.read_findings() if f["index"] > stopped_at]
        assert later, layout.read_findings()
        assert all(layout.finding_files(f["name"]).raw.is_file() for f in later)
        # What was recorded stays playable: exactly the frames before the stop.
        assert video_frames(layout.overlay_video) == stopped_at


def test_under_the_reserve_at_start_no_video_and_the_live_page_says_so(tmp_path):
    with _small_card(tmp_path / "card", 8) as card:
        config = _config_file(tmp_path, "record:\n  reserve_mb: 100\n")   # more than the card
        process = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--source",
             "synthetic://?width=320&height=240&frames=0&fps=15&seed=3", "--record-root",
             str(card), "--output", "http://127.0.0.1:0", "--refine", "none", "--quiet",
             "--headless", "--config", config], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            page = _live_page(process)
            stats = _wait_for_notice(page)
            assert "recording the video stopped before its first frame" in stats["notices"][0]
            assert "under the reserve of 100 MB" in stats["notices"][0]
            assert stats["frames"] > 0                        # and the overlay keeps coming
            frames_then = stats["frames"]
            time.sleep(1.0)
            assert _stats(page)["frames"] > frames_then
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 5
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        layout = _only_record(card)
        summary = layout.read_summary()
        assert summary["ended"] == "SIGTERM"
        assert summary["video"]["recorded"] == "none"
        assert summary["video"]["stopped_at_frame"] is not None
        assert not layout.overlay_video.exists()
        assert len(layout.read_frames()) > 0


def _live_page(process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        match = re.search(r"live page: (http://\S+)/", line)
        if match:
            return match.group(1)
        assert line or process.poll() is None, "the run ended before serving its live page"
    raise AssertionError("no live page within 90 s")


def _stats(page: str) -> dict:
    with urllib.request.urlopen(f"{page}/stats.json", timeout=5) as response:
        return json.load(response)


def _wait_for_notice(page: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = _stats(page)
        if stats.get("notices"):
            return stats
        time.sleep(0.2)
    raise AssertionError(f"the live page showed no notice: {stats}")


def test_reserve_guard_with_a_given_free_space_function(tmp_path):
    """Where no tmpfs can be mounted: the same guard, fed the free space it would read."""
    free_mb = iter([900, 800, 700, 90, 900])  # under 100 MB at the fourth frame
    guard = ReserveGuardedVideo(VideoFileSink(tmp_path / "v.mp4", 10), tmp_path, 100,
                                free=lambda _folder: next(free_mb) * _MB)
    image = np.zeros((120, 160, 3), np.uint8)
    for index in range(3):
        guard.write(output_frame(index, image, name=f"{index:06d}"))
    with pytest.raises(OutputStopped, match="stopped at frame 3: .* 90 MB, under the reserve"):
        guard.write(output_frame(3, image, name="000003"))
    assert guard.summary()["recorded"] == "part"
    assert guard.summary()["stopped_at_frame"] == 3
    assert video_frames(tmp_path / "v.mp4") == 3


def test_each_run_gets_a_new_record_and_records_lists_them(tmp_path):
    root = tmp_path / "records"
    for _ in range(2):
        done = _rustseg("run", "--source", "synthetic://?width=160&height=120&frames=12&seed=3",
                        "--record-root", str(root), "--refine", "light", "--quiet",
                        "--headless")
        assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in root.iterdir())
    assert len(names) == 2 and all(_RECORD_NAME.fullmatch(n) for n in names), names
    listing = _rustseg("records", str(root))
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["record", "size", "duration", "frames", "findings", "video",
                                "ended"]
    for name, line in zip(names, lines[1:3]):
        summary = RecordLayout(root / name).read_summary()
        assert line.startswith(name) and line.endswith("end of source")
        assert f" {summary['flight']['frames']} " in line and f" {summary['findings']} " in line
        assert " KB " in line and " all " in line
    assert lines[3].startswith(f"2 records, ") and lines[3].endswith(str(root))


def test_a_source_that_never_opens_leaves_no_folder_behind(tmp_path):
    root = tmp_path / "records"
    done = _rustseg("run", "--source", str(tmp_path / "missing.mp4"), "--record-root",
                    str(root), "--quiet", "--headless")
    assert done.returncode != 0
    assert list(root.iterdir()) == []     # a service retrying a dead camera leaves no litter


def test_records_of_a_missing_root_is_one_line(tmp_path):
    done = _rustseg("records", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"rustseg: error: record root {tmp_path / 'nowhere'}: no " \
                                  "such folder"

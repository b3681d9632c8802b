"""Reliability, the truth about a run: footage is never overwritten, the exit code and the
report say what was kept, and the same input gives the same masks; a short soak."""

import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from conftest import ROOT
from reliability_support import Counter, assert_one_line_error, cli, run_with
from edge.config import load_config
from edge.data.synthetic import make_scene
from edge.live.app import RunRequest, run_loop
from edge.outputs import FrameSink


# --- 6. footage is never overwritten (issue 11) -----------------------------------------------

def _write_clip(path, frames=12):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(frames):
        writer.write(make_scene(48, 64, i)[0])
    writer.release()


@pytest.mark.parametrize("flag", ["--output", "--log"])
def test_an_output_over_its_own_source_video_is_refused(tmp_path, flag):
    video = tmp_path / "flight.avi"
    _write_clip(video)
    before = video.read_bytes()
    result = cli("run", "--source", str(video), flag, str(video), "--headless", "--quiet")
    assert_one_line_error(result, 2, f"output {video} would write over the source file {video}")
    assert video.read_bytes() == before


def test_an_output_folder_over_its_source_photos_is_refused(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "p0.jpg"), make_scene(48, 64, 0)[0])
    cv2.imwrite(str(photos / "p1.png"), make_scene(48, 64, 1)[0])
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    for flag, victim in (("--output", "p0.jpg"), ("--save-masks", "p1.png")):
        result = cli("run", "--source", str(photos), flag, f"{photos}/", "--headless",
                      "--quiet")
        assert_one_line_error(result, 2, f"output {photos / victim} would write over the "
                               f"source file {photos / victim}")
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_images_sharing_a_name_get_one_output_each(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), make_scene(48, 64, 0)[0])
    cv2.imwrite(str(photos / "a.png"), np.zeros((48, 64, 3), np.uint8))
    run_loop(load_config(overrides={"refine.mode": "none"}),
             RunRequest(str(photos), (str(tmp_path / "out") + "/",), None,
                        str(tmp_path / "masks"), True))
    assert len(list((tmp_path / "out").iterdir())) == 2
    assert len(list((tmp_path / "masks").iterdir())) == 2


# --- 7. the exit code and the report tell the truth (issue 11) --------------------------------

@pytest.mark.parametrize("where, reason", [("under_a_file", "Not a directory"),
                                           ("proc", "No such file or directory"),
                                           ("read_only", "Permission denied")])
def test_a_video_output_that_cannot_be_opened_fails_at_start(tmp_path, where, reason):
    if where == "read_only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    target = {"under_a_file": blocker / "v.mp4", "proc": "/proc/rustseg_test.mp4",
              "read_only": locked / "v.mp4"}[where]
    result = cli("run", "--source", "synthetic://?width=96&height=72&frames=3", "--output",
                  str(target), "--headless", "--quiet", "--refine", "none")
    assert_one_line_error(result, 4, str(target), reason)
    assert "frames:" not in result.stdout  # it stopped before the first frame


class _FailingAt(FrameSink):
    """An output that writes `good` frames and then fails like a full disk."""

    def __init__(self, good):
        self.name, self.good, self.count = "failing.mp4", good, 0

    def write(self, frame):
        if self.count == self.good:
            raise OSError(28, "No space left on device")
        self.count += 1

    def close(self):
        pass


def test_an_output_lost_mid_run_is_named_with_the_frame_where_it_stopped():
    config = load_config(overrides={"refine.mode": "none"})
    from edge.sources import open_source
    failing, counter = _FailingAt(5), Counter()
    with open_source("synthetic://?width=64&height=48&frames=12") as source:
        report = run_with(source, config, [failing, counter])
    assert report.frames_processed == 12 and counter.count == 12
    assert report.outputs["failing.mp4"].written == 5
    assert report.outputs["failing.mp4"].lost_at_frame == 5
    assert report.outputs["counter"].written == 12 and report.lost_outputs == ["failing.mp4"]
    assert "output failing.mp4: written 5, LOST at frame 5: output failing.mp4: No space left" \
        in report.format()


def test_a_run_with_no_outputs_processes_every_frame():
    report = run_loop(load_config(overrides={"refine.mode": "none"}),
                      RunRequest("synthetic://?width=64&height=48&frames=20", (), None, None,
                                 True))
    assert report.frames_processed == 20 and report.stopped_by == "end of source"


def _started_run(*args):
    """A `rustseg run` that has printed its first frame line."""
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--headless", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT)
    line = process.stdout.readline()
    assert line.startswith("frame"), (line, process.stderr.read() if not line else "")
    return process


def test_a_single_ctrl_c_stops_cleanly_with_its_own_exit_code(tmp_path):
    log = tmp_path / "l.jsonl"
    process = _started_run("--source", "synthetic://?width=96&height=72&frames=0",
                           "--refine", "none", "--log", str(log))
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "stopped by SIGINT" in stdout and "Traceback" not in stderr
    processed = int(stdout.split("processed ")[1].split(",")[0])
    assert len(log.read_text().splitlines()) == processed  # everything processed was kept


def test_a_closed_stdout_ends_the_run_quietly(tmp_path):
    process = _started_run("--source", "synthetic://?width=96&height=72&frames=0",
                           "--refine", "none", "--log", str(tmp_path / "l.jsonl"))
    process.stdout.close()  # what `| head -1` does after its line
    stderr = process.stderr.read()
    assert process.wait(timeout=30) == 141, stderr
    assert "error" not in stderr and "Traceback" not in stderr and "Exception" not in stderr


def test_a_log_under_a_file_names_the_real_reason(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = cli("run", "--source", "synthetic://?width=96&height=72&frames=3", "--log",
                  str(blocker / "x.jsonl"), "--headless", "--quiet")
    assert_one_line_error(result, 4, str(blocker / "x.jsonl"), "Not a directory")


# --- 4. soak, 5. determinism ------------------------------------------------------------------

def test_short_soak_keeps_memory_threads_and_accounting():
    from benchmarks.soak import soak

    result = soak(400, "light", 320, 240)
    assert result["accounting_exact"], result
    assert result["rss_growth_mb"] < 20, result
    assert result["threads_after"] <= result["threads_before"], result


@pytest.mark.parametrize("mode", ["none", "light", "full"])
def test_same_input_same_masks(tmp_path, mode):
    config = load_config(overrides={"refine.mode": mode})
    masks = []
    for run in range(2):
        folder = tmp_path / f"run{run}"
        run_loop(config, RunRequest("synthetic://?width=200&height=150&frames=8&seed=4", (),
                                    None, str(folder), True))
        masks.append([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*"))])
    assert len(masks[0]) == 8
    assert all(np.array_equal(a, b) for a, b in zip(*masks))



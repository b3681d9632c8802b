"""Any name the file system allows works everywhere (issue 19 item 1): run, record, report,
CSV, GeoJSON, the batch index and manifest, the console; and a batch survives whatever one
input does (a worker's exception is that input's `failed`; the index and the manifest are
written however the batch ends).

The names: bytes that are not UTF-8 (a Latin-1 `Brücke`), `$` that matplotlib reads as
mathtext, `#`, `?`, `%` and spaces that break a link, and markup.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import urllib.request
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote_to_bytes

import cv2
import numpy as np
import pytest

from conftest import output_frame
from edge.batch import BatchRequest, run_batch
from edge.cli import main
from edge.config import load_config
from edge.data.synthetic import make_scene, write_clip_video
from edge.live.app import record_run
from edge.record.layout import RecordLayout

pytest.importorskip("matplotlib", reason="the report needs the report extra (matplotlib)")
Image = pytest.importorskip("PIL.Image", reason="the photos carry EXIF written with Pillow")

ROOT = Path(__file__).resolve().parent.parent
LATIN1 = os.fsdecode(b"Br\xfccke")          # "Brücke" as a Latin-1 file system writes it
ODD_NAMES = [LATIN1, "pier_$5_$", "a#b?c%d e", "<b>bold<b> & 'q'"]


def _config():
    return load_config(overrides={"refine.mode": "none", "record.finding_min_area": 0.0})


def _geotagged(path: Path, seed: int) -> None:
    """A rusty still with a GPS fix (Paris, a little apart per seed)."""
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (Fraction(48), Fraction(51), Fraction(20 + seed)), 3: "E",
                    4: (Fraction(2), Fraction(17), Fraction(40 + seed)), 5: 0,
                    6: Fraction(35)}
    Image.fromarray(make_scene(96, 128, seed)[0][:, :, ::-1]).save(path, format="JPEG",
                                                                    exif=exif, quality=92)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        self.handlers += [k for k, _ in attrs if k.startswith("on")]


def _assert_links_reach_files(page: Path) -> list[str]:
    """Every link of the page, percent-decoded to the bytes of a file name, is a file."""
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))  # valid UTF-8, whatever the names were
    assert parser.links and parser.handlers == []
    for link in parser.links:
        target = page.parent / os.fsdecode(unquote_to_bytes(link))
        assert target.is_file(), link
    return parser.links


def test_odd_photo_names_work_in_run_record_report_csv_and_geojson(tmp_path, capsys):
    photos = tmp_path / f"photos {LATIN1} #1"
    photos.mkdir()
    for seed, name in enumerate(ODD_NAMES, start=1):
        _geotagged(photos / f"{name}.jpg", seed)
    layout = RecordLayout(tmp_path / f"rec {LATIN1}")
    summary = record_run(str(photos), layout.root, _config())
    assert summary["complete"] and summary["frames"]["read"] == len(ODD_NAMES)

    assert main(["report", str(layout.root)]) == 0
    out = capsys.readouterr().out
    shown = str(layout.report_html).replace(LATIN1, "Br\\xfccke")
    assert f"report: {shown}  (4 findings, 4 with a position" in out
    links = _assert_links_reach_files(layout.report_html)
    assert sum(link.startswith("findings/") for link in links) == 2 * len(ODD_NAMES)
    page = layout.report_html.read_text(encoding="utf-8")
    assert "Br\\xfccke" in page and "pier_$5_$" in page and "&lt;b&gt;bold" in page
    assert (layout.report_files / "positions.png").is_file()  # "$5_$" was not mathtext

    with open(layout.findings_csv, encoding="utf-8", newline="") as file:
        names = sorted(row["name"] for row in csv.DictReader(file))
    assert names == sorted(["Br\\xfccke", "pier_$5_$", "a#b?c%d e", "<b>bold<b> & 'q'"])
    collection = json.loads(layout.findings_geojson.read_text(encoding="utf-8"))
    assert sorted(f["properties"]["file"] for f in collection["features"]) == sorted(
        n.replace(LATIN1, "Br\\xfccke") + ".jpg" for n in ODD_NAMES)


def test_a_video_and_outputs_with_names_that_are_not_utf8_run(tmp_path):
    """OpenCV crashes (segfault) on such a name: the run must reach the file another way."""
    clip = write_clip_video(tmp_path / "clip.avi", 128, 96, 12, seed=4)
    source = tmp_path / (os.fsdecode(b"Fl\xfcg") + " #1.avi")
    clip.rename(source)
    record = tmp_path / f"rec {LATIN1}"
    output = tmp_path / f"out {LATIN1}.mp4"
    result = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--source", str(source),
                             "--record", str(record), "--output", str(output), "--refine",
                             "none", "--quiet"], cwd=ROOT, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    for video in (record / "overlay.mp4", output):
        capture = cv2.VideoCapture(_ascii_link(video, tmp_path))  # the test's own way round
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
        capture.release()
    assert json.loads((record / "summary.json").read_text())["frames"] == {
        "expected": 12, "read": 12, "skipped": 0, "skip_reasons": []}


def _ascii_link(path: Path, folder: Path) -> str:
    link = folder / f"check_{len(list(folder.iterdir()))}{path.suffix}"
    link.symlink_to(path)
    return str(link)


def test_a_batch_of_odd_names_is_done_indexed_and_resumable(tmp_path):
    archive = tmp_path / "archive"
    stills = archive / "<img src=x onerror=alert(1)> #%"  # no glob characters: item 2, not here
    stills.mkdir(parents=True)
    for seed, name in enumerate(ODD_NAMES, start=1):
        _geotagged(stills / f"{name}.jpg", seed)
    video = archive / f"{LATIN1}.avi"
    write_clip_video(archive / "v.avi", 128, 96, 6, seed=2).rename(video)
    out = tmp_path / "out"
    request = BatchRequest((str(stills), str(video)), str(out), workers=1, show_progress=False)

    result = run_batch(_config(), request)
    assert [o["status"] for o in result.outcomes] == ["done", "done"], result.outcomes
    assert result.exit_code == 0
    with open(out / "index.csv", encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert {r["input"] for r in rows} == {str(stills.resolve()),
                                          str(video.resolve()).replace(LATIN1, "Br\\xfccke")}
    links = _assert_links_reach_files(out / "index.html")
    assert len(links) == 2 and all(link.endswith("/report.html") for link in links)
    for outcome in result.outcomes:
        _assert_links_reach_files(RecordLayout(Path(outcome["record"])).report_html)

    again = run_batch(_config(), request)  # the manifest kept them: nothing is redone
    assert [o["status"] for o in again.outcomes] == ["skipped", "skipped"]


def test_an_exception_in_a_worker_is_that_inputs_failed(tmp_path, monkeypatch):
    """A fault injected where a bug would be (the report): the input is failed with one
    line, its traceback is kept in its log, and nothing is raised to the batch."""
    import edge.record.report
    from edge.batch.inputs import expand_inputs
    from edge.batch.work import Job, log_file, process_input

    def broken_report(*args, **kwargs):
        raise RuntimeError("report blew up\nwith a second line")

    monkeypatch.setattr(edge.record.report, "write_report", broken_report)
    clip = write_clip_video(tmp_path / "a.avi", 96, 64, 4, seed=1)
    item = expand_inputs([str(clip)])[0]
    record = tmp_path / "out" / item.record_name
    outcome = process_input(Job(item, str(record), _config()))
    assert outcome["status"] == "failed"
    assert outcome["error"] == "internal error: RuntimeError: report blew up"
    assert "Traceback" in log_file(record).read_text()
    assert outcome["frames"] == 4  # what the record holds is still counted


def test_index_and_manifest_are_written_whatever_happens(tmp_path, monkeypatch):
    """The engine itself fails before any input ends (as Ray does when it cannot start): the
    index and the manifest are still written, every input pending, and the error still
    reaches the caller."""
    import edge.batch.runner as runner

    def engine_that_breaks(jobs, workers, threads, on_done, address=None):
        raise RuntimeError("the engine broke")

    monkeypatch.setitem(runner.ENGINES, "local", engine_that_breaks)
    clips = [write_clip_video(tmp_path / f"{n}.avi", 96, 64, 3, seed=i)
             for i, n in enumerate(("one", "two"))]
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="the engine broke"):
        run_batch(_config(), BatchRequest(tuple(map(str, clips)), str(out), workers=1,
                                          show_progress=False))
    assert json.loads((out / "manifest.json").read_text())["inputs"] == {}  # nothing done
    with open(out / "index.csv", newline="") as file:
        statuses = {Path(r["input"]).name: r["status"] for r in csv.DictReader(file)}
    assert statuses == {"one.avi": "pending", "two.avi": "pending"}
    assert (out / "index.html").read_text().count("<tr class=\"pending\">") == 2


def test_the_console_serves_a_finding_whose_name_is_not_utf8(monkeypatch):
    import edge.console.live_findings as live_findings
    from edge.console.server import HttpFeedSink

    monkeypatch.setattr(live_findings, "_WINDOW_S", 0.05)
    monkeypatch.delenv("RUSTSEG_TOKEN", raising=False)
    sink = HttpFeedSink("127.0.0.1", 0, "", 70, 4)
    try:
        image = np.zeros((48, 64, 3), np.uint8)
        sink.write(output_frame(3, image, np.ones((48, 64), bool), name=LATIN1 + "<b>",
                                corroded_fraction=0.5, score=0.9))
        time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/stats.json", timeout=3) as r:
            stats = json.loads(r.read().decode("ascii"))
    finally:
        sink.close()
    assert [f["name"] for f in stats["findings"]] == [LATIN1 + "<b>"]

"""Skipped frames are counted and shown, never hidden behind `complete` (issue 19 item 10).

Two real ways to lose frames: a photo folder holding unreadable photos, and a video cut in
half (its header announces every frame, half of them decode). summary.json counts the frames
expected, read and skipped with the reasons; the report and the batch index show them; a batch
input with skipped frames is `partial` (exit 7) and a re-run retries it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from edge.cli import main
from edge.config import load_config
from edge.data.synthetic import make_scene, write_clip_video
from edge.live.app import record_run
from edge.record.layout import RecordLayout
from edge.record.report import write_report

pytest.importorskip("matplotlib", reason="the report needs the report extra (matplotlib)")


def _config():
    return load_config(overrides={"refine.mode": "none"})


def _folder_with_two_unreadable_photos(root: Path) -> Path:
    photos = root / "photos"
    photos.mkdir(parents=True)
    for i in range(4):
        if i % 2:
            (photos / f"p{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg" * 8)
        else:
            cv2.imwrite(str(photos / f"p{i}.jpg"), make_scene(96, 128, seed=i)[0])
    return photos


def _video_cut_in_half(root: Path, frames: int = 40) -> tuple[Path, int]:
    """An MJPG AVI whose second half is cut off; returns it and how many frames still decode
    (counted here by decoding, independently of the code under test)."""
    whole = write_clip_video(root / "whole.avi", 128, 96, frames, seed=2)
    cut = root / "cut.avi"
    data = whole.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    capture = cv2.VideoCapture(str(cut))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == frames  # the header still says so
    decoded = 0
    while capture.read()[0]:
        decoded += 1
    capture.release()
    assert 0 < decoded < frames
    return cut, decoded


def test_unreadable_photos_are_counted_and_the_record_is_not_complete(tmp_path):
    photos = _folder_with_two_unreadable_photos(tmp_path)
    layout = RecordLayout(tmp_path / "rec")
    summary = record_run(str(photos), layout.root, _config())
    assert summary["ended"] == "end of source" and not summary["complete"]
    counts = summary["frames"]
    assert (counts["expected"], counts["read"], counts["skipped"]) == (4, 2, 2)
    assert len(layout.read_frames()) == 2
    assert [("p1.jpg" in r, "p3.jpg" in r) for r in counts["skip_reasons"]] == [
        (True, False), (False, True)]

    write_report(layout.root)
    page = layout.report_html.read_text()
    assert "2 frame(s) of the source were skipped" in page
    assert "<td>4 / 2 / 2</td>" in page and "p3.jpg" in page


def test_a_video_cut_in_half_counts_the_frames_its_header_promised(tmp_path):
    cut, decoded = _video_cut_in_half(tmp_path)
    layout = RecordLayout(tmp_path / "rec")
    summary = record_run(str(cut), layout.root, _config())
    assert not summary["complete"]
    counts = summary["frames"]
    assert (counts["expected"], counts["read"], counts["skipped"]) == (40, decoded, 40 - decoded)
    assert "header announces" in counts["skip_reasons"][0]
    whole = record_run(str(tmp_path / "whole.avi"), tmp_path / "rec2", _config())
    assert whole["complete"] and whole["frames"]["skipped"] == 0  # no false alarm


def test_a_batch_input_with_skipped_frames_is_partial_exit_7_and_retried(tmp_path):
    photos = _folder_with_two_unreadable_photos(tmp_path / "archive")
    cut, decoded = _video_cut_in_half(tmp_path / "archive")
    whole = tmp_path / "archive" / "whole.avi"
    out = tmp_path / "out"
    argv = ["batch", str(photos), str(cut), str(whole), "--out", str(out), "--workers", "1",
            "--refine", "none"]
    assert main(argv) == 7

    with open(out / "index.csv", newline="") as file:
        rows = {Path(r["input"]).name: r for r in csv.DictReader(file)}
    assert {n: (r["status"], r["frames"], r["skipped"]) for n, r in rows.items()} == {
        "photos": ("partial", "2", "2"), "cut.avi": ("partial", str(decoded), str(40 - decoded)),
        "whole.avi": ("done", "40", "0")}
    assert rows["photos"]["error"].startswith("2 of 4 frames skipped: image ")
    page = (out / "index.html").read_text()
    assert page.count('<tr class="partial">') == 2
    for name in ("photos", "cut.avi"):  # each partial input has its report, saying so
        report = out / rows[name]["report"]
        assert "of the source were skipped" in report.read_text()

    # A re-run retries the partial inputs (and only them); mended photos are then done.
    for i in (1, 3):
        cv2.imwrite(str(photos / f"p{i}.jpg"), make_scene(96, 128, seed=i)[0])
    assert main(argv) == 7  # the cut video is still cut
    manifest = json.loads((out / "manifest.json").read_text())["inputs"]
    assert {Path(uri).name: e["status"] for uri, e in manifest.items()} == {
        "photos": "done", "cut.avi": "partial", "whole.avi": "done"}
    with open(out / "index.csv", newline="") as file:
        statuses = {Path(r["input"]).name: r["status"] for r in csv.DictReader(file)}
    assert statuses == {"photos": "done", "cut.avi": "partial", "whole.avi": "skipped"}


def test_only_failures_outrank_partial_in_the_exit_code(tmp_path):
    from edge.batch.runner import EXIT_SOME_FAILED, EXIT_SOME_PARTIAL, BatchResult

    partial = BatchResult([{"status": "done"}, {"status": "partial"}])
    failed = BatchResult([{"status": "partial"}, {"status": "failed"}])
    assert partial.exit_code == EXIT_SOME_PARTIAL == 7
    assert failed.exit_code == EXIT_SOME_FAILED == 6
    assert BatchResult([{"status": "done"}, {"status": "skipped"}]).exit_code == 0

"""The console's server side: the findings strip (edge/console/live_findings.py), its one route
/finding.jpg, and the FPS the page shows (the HUD's rolling one)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import cv2
import numpy as np

from edge.config import load_config
import edge.console.live_findings as live_findings
from edge.console.live_findings import RecentFindings
from edge.console.server import HttpFeedSink
from edge.live.app import build_segmenter
from edge.live.pipeline import LoopOptions, Pipeline
from edge.outputs import OutputFrame
from edge.sources import open_source


def _frame(index, area, width=640, height=480):
    """An overlay whose colour encodes its index, and the loop's record for it."""
    image = np.full((height, width, 3), index % 256, np.uint8)
    return image, {"index": index, "name": f"f{index}", "corroded_fraction": area,
                   "score": 0.9, "valid": True}


def test_one_finding_per_window_the_most_corroded_and_bounded(monkeypatch):
    monkeypatch.setattr(live_findings, "_WINDOW_S", 0.1)
    findings = RecentFindings(80)
    index = 0
    for window in range(live_findings._KEEP + 4):
        for area in (0.02, 0.30 + window / 100, 0.10, 0.005):
            findings.offer(_frame(index, area)[1], _frame(index, area)[0])
            index += 1
        time.sleep(0.12)
    image, record = _frame(index, 0.0)
    findings.offer(record, image)  # closes the last window; not a finding
    shown = findings.summaries()
    assert len(shown) == live_findings._KEEP                     # bounded
    # Newest first, each window's most corroded frame (the second of its four).
    windows = range(live_findings._KEEP + 3, 3, -1)
    assert [f["id"] for f in shown] == [4 * w + 1 for w in windows]
    assert [f["corroded_fraction"] for f in shown] == [round(0.30 + w / 100, 5) for w in windows]


def test_frames_under_the_minimum_area_or_invalid_are_not_findings():
    findings = RecentFindings(80)
    image, record = _frame(1, live_findings._MIN_AREA / 2)
    findings.offer(record, image)
    findings.offer({**_frame(2, 0.5)[1], "valid": False}, _frame(2, 0.5)[0])
    assert findings.summaries() == []


def test_an_open_windows_best_frame_is_shown_once_its_window_has_closed(monkeypatch):
    """Its frame may still be replaced by a larger one until then (a click on it would 404)."""
    monkeypatch.setattr(live_findings, "_WINDOW_S", 0.2)
    findings = RecentFindings(80)
    for index, area in ((1, 0.1), (2, 0.3)):
        image, record = _frame(index, area)
        findings.offer(record, image)
    assert findings.summaries() == [] and findings.jpeg(2, "thumb") is None
    time.sleep(0.25)  # no frame arrives: the run has paused or stopped
    assert [f["id"] for f in findings.summaries()] == [2]
    assert findings.jpeg(2, "thumb") is not None


def test_the_route_serves_thumbnails_and_full_size_behind_the_token(monkeypatch):
    monkeypatch.setattr(live_findings, "_WINDOW_S", 0.0)  # every frame closes its window
    sink = HttpFeedSink("127.0.0.1", 0, "s3cret", 70, 4)
    base = f"http://127.0.0.1:{sink.port}/finding.jpg"
    try:
        image, record = _frame(77, 0.4)
        sink.write(OutputFrame(77, "f77", image, np.zeros(image.shape[:2], bool), record))

        def get(query):
            try:
                with urllib.request.urlopen(base + query, timeout=3) as response:
                    return response.status, response.read()
            except urllib.error.HTTPError as error:
                return error.code, b""

        status, thumb = get("?id=77&size=thumb&token=s3cret")
        assert status == 200
        thumb = cv2.imdecode(np.frombuffer(thumb, np.uint8), cv2.IMREAD_COLOR)
        assert thumb.shape == (180, 240, 3) and abs(int(thumb.mean()) - 77) <= 2
        status, full = get("?id=77&size=full&token=s3cret")
        assert cv2.imdecode(np.frombuffer(full, np.uint8), cv2.IMREAD_COLOR).shape == image.shape
        assert get("?id=77&size=thumb")[0] == 401
        for bad in ("?id=78", "?id=x", "?id=77&size=huge", "?id=../../etc/passwd", ""):
            assert get(bad + ("&" if "?" in bad else "?") + "token=s3cret")[0] == 404, bad
        stats = sink.stats()
        assert [f["id"] for f in stats["findings"]] == [77]
    finally:
        sink.close()


class _PausingSink:
    """Holds the loop up once, as a stalled output or a hiccup of the device would."""
    name, wants_stop = "pause", False

    def __init__(self, at_index: int, pause_s: float) -> None:
        self.at_index, self.pause_s, self.last_record = at_index, pause_s, None

    def write(self, frame):
        if frame.index == self.at_index:
            time.sleep(self.pause_s)
        self.last_record = frame.record

    def close(self):
        pass


def test_the_page_shows_the_huds_rolling_fps_not_an_average_since_start():
    config = load_config(overrides={"refine.mode": "none"})
    feed = HttpFeedSink("127.0.0.1", 0, "", 70, 4)
    pause = _PausingSink(at_index=5, pause_s=3.0)
    options = LoopOptions(frames=50, overlay=config.overlay, print_frames=False)
    try:
        with open_source("synthetic://?width=64&height=48&frames=50") as source:
            report = Pipeline(source, build_segmenter(config), [pause, feed], options).run()
        stats = feed.stats()
    finally:
        feed.close()
    assert report.frames_processed == 50
    # The last 30 frames came after the pause: the rolling FPS is well above the run's average.
    assert stats["fps"] == pause.last_record["fps"] > 1.5 * report.fps

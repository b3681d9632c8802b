"""The on-device loop: sources, outputs, the live page and clean shutdown."""

import dataclasses
import json
import signal
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from conftest import start_logged_run, video_frames
from edge.config import load_config
from edge.errors import SinkError, SourceError
from edge.live.app import RunRequest, run_loop
from edge.live.overlay import draw_overlay, hud_lines
from edge.outputs import FrameRecord, FrameSink, open_output
from edge.sources import open_source
from edge.stop_reason import StopReason, StopRequest


def _config(**overrides):
    base = {"refine.mode": "light", "loop.target_fps": 30}
    return load_config(overrides={**base, **overrides})


def test_synthetic_source_to_video_log_and_masks_with_exact_accounting(tmp_path):
    request = RunRequest("synthetic://?width=160&height=120&frames=24&seed=3",
                         (str(tmp_path / "out.mp4"),), str(tmp_path / "frames.jsonl"),
                         str(tmp_path / "masks"), headless=True)
    report = run_loop(_config(), request)
    records = [json.loads(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    assert report.frames_read == report.frames_processed + report.dropped == 24
    assert len(records) == 24 == video_frames(tmp_path / "out.mp4")
    assert [r["index"] for r in records] == list(range(24))
    assert {"index", "captured_at", "output_at", "score", "corroded_fraction", "path", "ms",
            "dropped"} <= set(records[0])
    masks = sorted((tmp_path / "masks").glob("*.png"))
    assert len(masks) == 24
    mask = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (120, 160) and set(np.unique(mask)) <= {0, 255}


def test_image_folder_source_names_masks_after_the_images(tmp_path):
    from edge.data.synthetic import make_scene

    folder = tmp_path / "shots"
    folder.mkdir()
    for stem in ("girder_a", "bolt_b", "weld_c"):
        cv2.imwrite(str(folder / f"{stem}.jpg"), make_scene(90, 120, len(stem))[0])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    request = RunRequest(str(folder), (), None, str(tmp_path / "masks"), headless=True)
    report = run_loop(_config(**{"refine.mode": "none"}), request)
    assert report.frames_processed == 3
    assert sorted(p.stem for p in (tmp_path / "masks").glob("*.png")) == \
        ["bolt_b", "girder_a", "weld_c"]


def test_live_page_stream_and_stats_while_the_loop_runs(tmp_path):
    from edge.console.server import HttpFeedSink

    config = _config(**{"http.token": ""})
    stop = StopRequest()
    sink = HttpFeedSink("127.0.0.1", 0, "", 70, 4)
    base = f"http://127.0.0.1:{sink.port}"
    results = {}

    def viewer():
        deadline = time.time() + 20
        while time.time() < deadline and "stats" not in results:
            try:
                with urllib.request.urlopen(f"{base}/stats.json", timeout=2) as r:
                    stats = json.loads(r.read())
                if stats["frame"] is None:
                    time.sleep(0.1)
                    continue
                results["stats"] = stats
                with urllib.request.urlopen(f"{base}/", timeout=2) as r:
                    results["page"] = r.read().decode()
                with urllib.request.urlopen(f"{base}/static/console.js", timeout=2) as r:
                    results["script"] = r.read().decode()  # the page's script: static
                with urllib.request.urlopen(f"{base}/stream.mjpg", timeout=5) as r:
                    results["type"] = r.headers["Content-Type"]
                    chunk = r.read(60000)
                    results["jpeg"] = chunk[chunk.index(b"\xff\xd8"):]
            except OSError:
                time.sleep(0.1)
        stop.set()

    from edge.live.app import build_segmenter
    from edge.live.pipeline import LoopOptions, Pipeline

    thread = threading.Thread(target=viewer)
    thread.start()
    with open_source("synthetic://?width=160&height=120&frames=0&fps=25") as source:
        Pipeline(source, build_segmenter(config), [sink],
                 LoopOptions(overlay=config.overlay), stop).run()
    sink.close()
    thread.join()
    assert results["stats"]["frame"]["index"] >= 0 and "fps" in results["stats"]
    assert "/stream.mjpg" in results["page"] and "/stats.json" in results["script"]
    assert results["type"].startswith("multipart/x-mixed-replace")
    image = cv2.imdecode(np.frombuffer(results["jpeg"], np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (120, 160, 3)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_video_stays_playable_after_a_signal(tmp_path, sig):
    video, log = tmp_path / "run.mp4", tmp_path / "run.jsonl"
    process = start_logged_run(log, "--output", str(video), "--refine", "none", timeout_s=30)
    process.send_signal(sig)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 128 + sig, err  # a stopped run is told from a finished one
    lines = log.read_text().splitlines()
    assert all(json.loads(line)["index"] >= 0 for line in lines)  # complete, valid JSON
    assert video_frames(video) == len(lines) >= 10
    assert f"stopped by {signal.Signals(sig).name}" in out


@pytest.mark.parametrize("uri, expected", [
    ("", "source is empty"),
    ("ftp://host/x", "unknown scheme ftp://"),
    ("rtsp://", "expected rtsp://HOST"),
    ("v4l2://camera", "expected v4l2:///dev/videoN"),
    ("csi://x", "expected a camera number"),
    ("synthetic://?width=abc", "width='abc' is not a number"),
    ("synthetic://?colour=red", "unknown parameter 'colour'"),
    ("synthetic://?width=0", "width and height must be"),
    ("no/such/file.mp4", "video file does not exist"),
    ("no/such/photo.jpg", "image file does not exist"),
    ("notes.txt", "does not exist and is not a camera"),
    ("/dev/video77", "could not be opened"),
    ("97", "could not be opened"),
])
def test_bad_source_uris_are_rejected_in_one_line(uri, expected):
    with pytest.raises(SourceError) as info:
        open_source(uri, reconnect_timeout_s=0.1)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_source_uri_forms_that_need_hardware_say_what_is_missing():
    from edge.errors import MissingDependencyError
    from edge.sources import gstreamer_available

    if not gstreamer_available():
        with pytest.raises(SourceError, match="without GStreamer"):
            open_source("csi://0")
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="picamera2"):
            open_source("picam://0")


def test_good_source_uris_open(tmp_path):
    from edge.data.synthetic import make_scene

    cv2.imwrite(str(tmp_path / "a.png"), make_scene(40, 50, 1)[0])
    cv2.imwrite(str(tmp_path / "b.png"), make_scene(40, 50, 2)[0])
    for uri in (str(tmp_path), str(tmp_path / "*.png"), str(tmp_path / "a.png"),
                f"file://{tmp_path / 'a.png'}", "synthetic://?width=32&height=24&frames=2"):
        with open_source(uri) as source:
            frame = source.read()
            assert frame.image.dtype == np.uint8 and frame.image.ndim == 3
    writer = cv2.VideoWriter(str(tmp_path / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (50, 40))
    for _ in range(3):
        writer.write(make_scene(40, 50, 3)[0])
    writer.release()
    with open_source(str(tmp_path / "clip.avi"), loop_video=True) as source:
        frames = [source.read() for _ in range(5)]  # loops past the end
    assert all(f is not None for f in frames)


@pytest.mark.parametrize("uri, expected", [
    ("gopher://x", "unknown scheme gopher://"),
    ("out.gif", "unsupported file type .gif"),
    ("https://127.0.0.1:8443", "https is not served"),
    ("http://127.0.0.1:8080/page", "with no path"),
    ("/no/such/dir/out.mp4", "does not exist"),
])
def test_bad_output_uris_are_rejected_in_one_line(uri, expected):
    with pytest.raises(SinkError, match=expected):
        open_output(uri, 15.0)


def test_display_output_says_when_opencv_has_no_gui():
    from edge.outputs import display_available

    if display_available():
        pytest.skip("this OpenCV has a GUI")
    with pytest.raises(SinkError, match="no GUI support"):
        open_output("display://0", 15.0)


@pytest.mark.parametrize("size", [(240, 320), (480, 640), (1080, 1920)])
def test_overlay_draws_mask_outline_and_hud_at_any_size(size):
    frame = np.full((*size, 3), 128, np.uint8)
    mask = np.zeros(size, bool)
    mask[size[0] // 2:, size[1] // 2:] = True
    hud = FrameRecord(0, "0", 0.0, 0.0, 0.93, corroded_fraction=0.25, path="light",
                      ms={"invoke": 1.8, "refine": 9.1}, dropped=3, fps=29.7)
    out = draw_overlay(frame, mask, load_config().overlay, np.ones((7, 7), np.float32), hud)
    assert out.shape == frame.shape and not np.array_equal(out, frame)
    assert not np.array_equal(out[mask], frame[mask])                      # fill
    corner = out[size[0] - 5:, : size[1] // 4]
    assert np.array_equal(corner, frame[size[0] - 5:, : size[1] // 4])      # untouched
    assert out[: size[0] // 10, : size[1] // 4].mean() < 120               # HUD panel


def test_hud_lines_are_read_from_the_frame_record():
    record = FrameRecord(4, "000004", 1.0, 1.1, 0.93, corroded_fraction=0.25, path="light",
                         ms={"invoke": 1.8, "refine": 9.1, "output": 3.0}, dropped=3, fps=29.7)
    assert hud_lines(record) == [" 29.7 FPS  refine light  drops 3",
                                 "corrosion 0.93  area 25.0%", "ms: inv 1.8 ref 9.1"]


def test_frame_record_round_trips_through_json_rounded_and_ignores_unknown_keys():
    record = FrameRecord(7, "girder", 1700000000.123456, 1700000000.2, 0.9876543,
                         corroded_fraction=0.1234567, path="full", ms={"invoke": 1.23456},
                         lag_frames=2, fps=29.6666)
    line = record.to_json()
    assert line == {"index": 7, "name": "girder", "captured_at": 1700000000.1235,
                    "output_at": 1700000000.2, "score": 0.98765, "valid": True,
                    "corroded_fraction": 0.12346, "path": "full", "grades": None,
                    "area_by_state": None, "mask": "fresh", "mask_from": None,
                    "evidence_from": None, "carry_reset": None, "ms": {"invoke": 1.235},
                    "dropped": 0, "lag_frames": 2, "fps": 29.67, "position": None,
                    "position_missing": None}
    back = FrameRecord.from_json({**json.loads(json.dumps(line)), "added_later": 1})
    assert back.to_json() == line and back.line() == FrameRecord.from_json(line).line()
    assert back.line().startswith("frame     7 girder: corrosion 0.99 area  12.3% full")
    # The terminal's line says where the frame was taken, or why that is not known.
    located = dataclasses.replace(record, position={"lat": 51.5, "lon": -0.12, "age_s": 1.5})
    assert located.line().endswith("| 51.500000, -0.120000, 1.5 s old")
    missing = dataclasses.replace(record, position_missing="no fix yet")
    assert missing.line().endswith("| no position: no fix yet")


def test_open_output_with_default_settings_builds_every_kind_or_refuses_in_one_line(tmp_path):
    """`open_output(uri, fps)` needs no settings: file outputs are built, and an http output
    without the console's constructor is refused in one line (no AttributeError)."""
    assert open_output(str(tmp_path / "o.mp4"), 15.0).name == str(tmp_path / "o.mp4")
    assert open_output(str(tmp_path / "frames") + "/", 15.0).name == str(tmp_path / "frames")
    with pytest.raises(SinkError, match="live console is not available") as error:
        open_output("http://127.0.0.1:0", 15.0)
    assert "\n" not in str(error.value)
    built = []
    sink = open_output("http://127.0.0.1:0", 15.0,
                       http_sink=lambda uri: built.append(uri) or _Kept())
    assert built == ["http://127.0.0.1:0"] and isinstance(sink, _Kept)


def test_a_served_page_is_announced_by_its_url_and_an_open_one_warns(tmp_path, monkeypatch):
    """The run reads what to announce from the sink's attributes, not from its name."""
    from edge.console.server import HttpFeedSink

    monkeypatch.delenv("RUSTSEG_TOKEN", raising=False)
    local = HttpFeedSink("127.0.0.1", 0, "", 70, 2)
    exposed = HttpFeedSink("0.0.0.0", 0, "", 70, 2)
    try:
        assert local.url == f"http://127.0.0.1:{local.port}/" and local.warnings == ()
        assert len(exposed.warnings) == 1 and "no access token" in exposed.warnings[0]
        assert local.overlay is None  # it reads no config.yaml of its own
    finally:
        local.close()
        exposed.close()


class _Kept(FrameSink):
    def __init__(self, fail_at: int | None = None, is_output: bool = True) -> None:
        self.name, self.frames, self.fail_at, self.is_output = "kept", [], fail_at, is_output

    def write(self, frame) -> None:
        if self.fail_at is not None and frame.index == self.fail_at:
            raise OSError(32, "Broken pipe")
        self.frames.append(frame.record)


def _pipeline_run(sinks, clip_frames=6, stop=None, **options):
    from edge.live.app import build_segmenter
    from edge.live.pipeline import LoopOptions, Pipeline

    config = _config(**{"refine.mode": "none"})
    with open_source(f"synthetic://?width=96&height=72&frames={clip_frames}") as source:
        return Pipeline(source, build_segmenter(config), sinks,
                        LoopOptions(overlay=config.overlay, **options), stop).run()


def test_every_sink_gets_the_same_frame_record_the_log_writes(tmp_path):
    from edge.outputs import JsonlLogSink

    kept, log = _Kept(), JsonlLogSink(tmp_path / "f.jsonl")
    log.start()
    report = _pipeline_run([kept, log])
    log.close()
    lines = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert [r.to_json() for r in kept.frames] == lines and len(lines) == 6
    assert all({"capture", "invoke", "draw"} <= set(r.ms) for r in kept.frames)
    assert report.stopped_by is StopReason.END_OF_SOURCE and report.warmup_ms > 0


def test_the_stop_reason_is_the_askers_and_the_frame_limit_is_named():
    stop = StopRequest()
    stop.request(StopReason.SIGTERM)  # asked before the first frame: nothing is read
    report = _pipeline_run([_Kept()], stop=stop)
    assert report.stopped_by is StopReason.SIGTERM and report.interrupted_by == "SIGTERM"
    limited = _pipeline_run([_Kept()], clip_frames=0, frames=4)
    assert limited.stopped_by is StopReason.FRAME_LIMIT and limited.stop_detail == "--frames 4"
    assert limited.frames_processed == 4 and "stopped by frame limit (--frames 4)" in \
        limited.format()


def test_a_view_that_fails_ends_the_run_and_an_output_that_fails_is_dropped():
    """The terminal's line is a view: its reader gone (| head) ends the run with that error.
    An output's failure is tallied and, with sink_error_policy=drop, the run goes on."""
    with pytest.raises(OSError, match="Broken pipe"):
        _pipeline_run([_Kept(), _Kept(fail_at=2, is_output=False)])
    survivor, failing = _Kept(), _Kept(fail_at=2)
    failing.name = "failing"
    report = _pipeline_run([survivor, failing])
    assert report.outputs["failing"].lost_at_frame == 2 and len(survivor.frames) == 6
    assert report.lost_outputs == ["failing"]

"""Reliability: bad input, faults mid-run, shutdown, the live feed under load, soak, determinism.

Each test here would fail without the behaviour it names; README's Reliability section lists them.
"""

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from conftest import DEFAULT_MODEL, ROOT
from edge.app import RunRequest, build_segmenter, run_loop
from edge.config import load_config
from edge.errors import SourceError
from edge.pipeline import LoopOptions, Pipeline
from edge.sources import LiveSource
from edge.synthetic import make_scene

PACED = "synthetic://?width=160&height=120&frames=0&fps=30"


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


def _assert_one_line_error(result, code, *fragments):
    assert result.returncode == code, (result.returncode, result.stderr)
    error_lines = [l for l in result.stderr.splitlines() if l.startswith("rustseg: error:")]
    assert len(error_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


# --- 1. bad input -----------------------------------------------------------------------------

def test_bad_models_are_one_line_errors(tmp_path):
    _assert_one_line_error(_cli("eval", "--model", str(tmp_path / "gone.tflite"), "--data",
                                str(tmp_path)), 2, "expected class folders")
    from edge.synthetic import write_classification_folder
    data = write_classification_folder(tmp_path / "cls", 1, 32, 0)
    _assert_one_line_error(_cli("eval", "--model", str(tmp_path / "gone.tflite"), "--data",
                                str(data)), 2, "gone.tflite does not exist")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    _assert_one_line_error(_cli("eval", "--model", str(junk), "--data", str(data)), 2,
                           "is not a TFLite file")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(DEFAULT_MODEL.read_bytes()[:5000])
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), corrupt.with_suffix(".json"))
    _assert_one_line_error(_cli("eval", "--model", str(corrupt), "--data", str(data)), 2,
                           "does not match")


def test_bad_config_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text((ROOT / "config.yaml").read_text().replace("threads: 2", "threads: 2\n  turbo: 1"))
    _assert_one_line_error(_cli("--config", str(bad), "config"), 2, "model.turbo")


@pytest.mark.parametrize("uri, fragment", [("bogus://x", "unknown scheme"),
                                           ("synthetic://?fps=x", "not a number")])
def test_bad_source_uri_on_the_command_line(uri, fragment):
    _assert_one_line_error(_cli("run", "--source", uri, "--headless"), 3, fragment)


def test_corrupt_image_and_truncated_video(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    _assert_one_line_error(_cli("run", "--source", str(broken), "--headless"), 3,
                           "not a readable image")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(20):
        writer.write(make_scene(48, 64, i)[0])
    writer.release()
    data = video.read_bytes()
    truncated = tmp_path / "cut.avi"
    truncated.write_bytes(data[: len(data) // 2])
    result = _cli("run", "--source", str(truncated), "--headless", "--quiet", "--log",
                  str(tmp_path / "cut.jsonl"))
    assert result.returncode == 0, result.stderr          # plays what can be decoded
    assert 0 < len((tmp_path / "cut.jsonl").read_text().splitlines()) < 20
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    _assert_one_line_error(_cli("run", "--source", str(empty), "--headless"), 3, "empty.mp4")


def test_grayscale_rgba_and_16_bit_images_are_processed(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    frame = make_scene(60, 80, 1)[0]
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "deep.png"), frame.astype(np.uint16) * 257)
    report = run_loop(load_config(overrides={"refine.mode": "full"}),
                      RunRequest(str(folder), (), None, str(tmp_path / "m"), True, False))
    assert report.frames_processed == 3
    for stem in ("gray", "rgba", "deep"):
        assert cv2.imread(str(tmp_path / "m" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).shape \
            == (60, 80)


@pytest.mark.parametrize("mode", ["none", "light", "full", "auto"])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (4320, 7680)])
def test_tiny_and_8k_frames_for_every_refine_path(mode, size):
    from edge.refine import make_refiner
    from edge.segment import Segmenter
    from edge.runtime import CorrosionModel

    config = load_config()
    segmenter = Segmenter(CorrosionModel(DEFAULT_MODEL, 2),
                          make_refiner(mode, config.refine, 15))
    frame = np.full((*size, 3), (40, 70, 150), np.uint8)  # rust-brown everywhere
    result = segmenter.segment(frame)
    assert result.mask.shape == size and result.mask.dtype == bool
    cam = np.full(segmenter.model.cam_hw, np.nan, np.float32)  # NaN heat still gives a mask
    assert segmenter.refiner.refine(cam, frame).mask.shape == size


def test_empty_or_corrupt_training_folder_is_a_one_line_error(tmp_path):
    pytest.importorskip("tensorflow")
    (tmp_path / "corrosion").mkdir()
    (tmp_path / "no_corrosion").mkdir()
    (tmp_path / "no_corrosion" / "x.jpg").write_bytes(b"garbage")
    _assert_one_line_error(_cli("train", "--data", str(tmp_path), "--out",
                                str(tmp_path / "m"), "--weights", "none"), 2, "holds no images")


# --- 2. faults mid-run ------------------------------------------------------------------------

class _FlakyDevice:
    def __init__(self, frames: int) -> None:
        self.left = frames

    def read(self):
        time.sleep(0.01)
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, make_scene(48, 64, self.left)[0]

    def release(self) -> None:
        pass


class _DyingCamera(LiveSource):
    """Delivers frames, dies, and comes back `returns` times before dying for good."""

    def __init__(self, frames_per_life: int, returns: int, timeout_s: float) -> None:
        self.frames_per_life, self.returns, self.opens = frames_per_life, returns, 0
        super().__init__("test camera", timeout_s, 0.02)

    def open_device(self):
        self.opens += 1
        if self.opens > self.returns + 1:
            raise SourceError("test camera: unplugged")
        return _FlakyDevice(self.frames_per_life)


def _run_with(source, config, sinks=(), frames=0):
    options = LoopOptions(frames=frames, overlay=config.overlay, print_frames=False,
                          sink_error_policy=config.loop.sink_error_policy)
    return Pipeline(source, build_segmenter(config), list(sinks), options).run()


class _Counter:
    name, wants_stop, count = "counter", False, 0

    def write(self, frame):
        self.count += 1

    def close(self):
        pass


def test_lost_camera_reconnects_with_backoff():
    config = load_config(overrides={"refine.mode": "none"})
    camera = _DyingCamera(frames_per_life=5, returns=2, timeout_s=2.0)
    counter = _Counter()
    with pytest.raises(SourceError, match="lost and not back after 0.5 s"):
        camera.reconnect_timeout_s = 0.5
        _run_with(camera, config, [counter])
    camera.close()
    assert camera.reconnects == 2 and counter.count >= 10


def test_lost_camera_gives_up_with_exit_code_3(tmp_path, monkeypatch):
    code = ("import sys, edge.sources as s\n"
            "class Dead(s.LiveSource):\n"
            "    def open_device(self):\n"
            "        if getattr(self, 'opened', False): raise s.SourceError('gone')\n"
            "        self.opened = True\n"
            "        class D:\n"
            "            n = 3\n"
            "            def read(d):\n"
            "                d.n -= 1\n"
            "                import numpy as np\n"
            "                return (d.n > 0), np.zeros((40, 50, 3), np.uint8)\n"
            "            def release(d): pass\n"
            "        return D()\n"
            "s.open_source = lambda uri, *a, **k: Dead('camera 0', 0.3, 0.05)\n"
            "import edge.app; edge.app.open_source = s.open_source\n"
            "from edge.cli import main; sys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", code, "run", "--source", "0", "--headless",
                             "--quiet", "--log", str(tmp_path / "l.jsonl")],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    _assert_one_line_error(result, 3, "camera 0 lost and not back after 0.3 s")
    records = [json.loads(l) for l in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert records and len(records) + records[-1]["dropped"] == 2  # every frame accounted for


def test_full_disk_drop_policy_keeps_the_other_outputs(tmp_path):
    result = _cli("run", "--source", "synthetic://?width=96&height=72&frames=15", "--output",
                  str(tmp_path / "v.avi"), "--log", "/dev/full", "--headless", "--quiet",
                  "--refine", "none")
    assert result.returncode == 0, result.stderr
    assert "dropped that output and going on" in result.stderr
    capture = cv2.VideoCapture(str(tmp_path / "v.avi"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 15


def test_full_disk_stop_policy_stops_cleanly(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text((ROOT / "config.yaml").read_text().replace(
        "sink_error_policy: drop", "sink_error_policy: stop"))
    result = _cli("--config", str(config), "run", "--source",
                  "synthetic://?width=96&height=72&frames=0", "--output",
                  str(tmp_path / "v.mp4"), "--log", "/dev/full", "--headless", "--quiet",
                  "--refine", "none")
    assert result.returncode == 4, result.stderr
    assert "stopping cleanly" in result.stderr
    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    assert capture.read()[0]  # the video was closed properly and plays


def test_second_interrupt_exits_at_once():
    # The first SIGINT only asks for a clean stop (the loop would finish its frames); the
    # second, arriving while that is still going on, must end the process at once.
    code = ("import os, signal, sys, threading, time\n"
            "from edge.app import stop_on_signals\n"
            "stop = threading.Event()\n"
            "with stop_on_signals(stop):\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(0.2)\n"
            "    assert stop.is_set(), 'first interrupt did not ask for a stop'\n"
            "    print('first handled', flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(5)\n"
            "print('not reached')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=30)
    assert result.returncode == 130, result.stderr
    assert "first handled" in result.stdout and "not reached" not in result.stdout
    assert "second interrupt, exiting now" in result.stderr


# --- 3. the live feed -------------------------------------------------------------------------

def test_http_binds_loopback_by_default():
    from edge.http_feed import HttpFeedSink

    settings = load_config().http
    assert settings.host == "127.0.0.1"
    sink = HttpFeedSink.from_uri("http://:0", settings)
    try:
        assert sink.server.server_address[0] == "127.0.0.1"
    finally:
        sink.close()


def _get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status, response.read(200)
    except urllib.error.HTTPError as error:
        return error.code, b""


def test_token_is_checked_on_every_route_and_nothing_else_is_served(monkeypatch):
    from edge.http_feed import HttpFeedSink

    monkeypatch.setenv("RUSTSEG_TOKEN", "s3cret")
    sink = HttpFeedSink.from_uri("http://127.0.0.1:0", load_config().http)
    base = f"http://127.0.0.1:{sink.port}"
    try:
        for route in ("/", "/stats.json", "/stream.mjpg"):
            assert _get(base + route)[0] == 401
            assert _get(base + route + "?token=wrong")[0] == 401
        assert _get(base + "/?token=s3cret")[0] == 200
        assert _get(base + "/stats.json", {"Authorization": "Bearer s3cret"})[0] == 200
        for path in ("/../../etc/passwd", "/config.yaml", "/models/rustseg_default.tflite",
                     "/%2e%2e/etc/passwd", "/stats.json/../../x"):
            assert _get(base + path + "?token=s3cret")[0] == 404
    finally:
        sink.close()


def test_twenty_viewers_and_stalled_clients_do_not_slow_the_loop_or_leak_threads():
    from edge.http_feed import HttpFeedSink

    config = load_config(overrides={"refine.mode": "none"})
    threads_before = threading.active_count()
    sink = HttpFeedSink("127.0.0.1", 0, "", 70, 32)
    stalled = []
    for _ in range(20):  # viewers that connect, ask for the stream and never read it
        s = socket.create_connection(("127.0.0.1", sink.port))
        s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        stalled.append(s)
    for _ in range(5):  # viewers that hang up at once
        s = socket.create_connection(("127.0.0.1", sink.port))
        s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
    from edge.sources import open_source
    with open_source("synthetic://?width=320&height=240&frames=0&fps=30") as source:
        report = _run_with(source, config, [sink], frames=90)
    # A live source may drop a stale frame now and then; every frame is accounted for.
    assert report.frames_read == report.frames_processed + report.dropped
    assert report.frames_processed >= 80
    assert report.fps > 20  # the source's 30 FPS pace, not the viewers', sets the rate
    for s in stalled:
        s.close()
    sink.close()
    deadline = time.time() + 10
    while time.time() < deadline and threading.active_count() > threads_before:
        time.sleep(0.2)
    assert threading.active_count() <= threads_before


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
                                    None, str(folder), True, False))
        masks.append([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*"))])
    assert len(masks[0]) == 8
    assert all(np.array_equal(a, b) for a, b in zip(*masks))

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
from edge.config import load_config
from edge.data.synthetic import make_scene
from edge.errors import SourceError
from edge.live.app import RunRequest, build_segmenter, run_loop
from edge.live.pipeline import LoopOptions, Pipeline
from edge.sources import LiveSource

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
    from edge.data.synthetic import write_classification_folder
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
    from edge.method.model import CorrosionModel
    from edge.method.refine.factory import make_refiner
    from edge.method.segment import Segmenter

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
        self.left, self.released = frames, False

    def read(self):
        time.sleep(0.01)
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, make_scene(48, 64, self.left)[0]

    def release(self) -> None:
        self.released = True


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
            "from edge.errors import SourceError\n"
            "class Dead(s.LiveSource):\n"
            "    def open_device(self):\n"
            "        if getattr(self, 'opened', False): raise SourceError('gone')\n"
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
            "import edge.live.app; edge.live.app.open_source = s.open_source\n"
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
    assert result.returncode == 5, result.stderr  # an output was lost: not a success
    assert "dropped that output and going on" in result.stderr
    assert "output log /dev/full: written 0, LOST at frame 0" in result.stdout
    assert f"output {tmp_path / 'v.avi'}: written 15\n" in result.stdout
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
            "from edge.live.app import stop_on_signals\n"
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
    from edge.console.server import HttpFeedSink

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
    from edge.console.server import HttpFeedSink

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
    from edge.console.server import HttpFeedSink

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


# --- 3b. the live feed: secure and honest (issue 11) ------------------------------------------

def _status(url, headers=None):
    """The status of a GET, without reading the body (the stream never ends)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_an_empty_token_variable_does_not_switch_off_the_configs_token(monkeypatch):
    from edge.console.server import HttpFeedSink

    monkeypatch.setenv("RUSTSEG_TOKEN", "")
    settings = load_config(overrides={"http.token": "from-config"}).http
    sink = HttpFeedSink.from_uri("http://127.0.0.1:0", settings)
    base = f"http://127.0.0.1:{sink.port}"
    try:
        assert _status(base + "/stats.json") == 401
        assert _status(base + "/stats.json?token=from-config") == 200
    finally:
        sink.close()


def test_a_token_with_reserved_characters_works_from_the_page(monkeypatch):
    import re
    from urllib.parse import quote

    from edge.console.server import HttpFeedSink

    token = "a+b &c#d@e%f/?=;'\"<x>"
    monkeypatch.setenv("RUSTSEG_TOKEN", token)
    sink = HttpFeedSink.from_uri("http://127.0.0.1:0", load_config().http)
    base = f"http://127.0.0.1:{sink.port}"
    try:
        with urllib.request.urlopen(base + "/?token=" + quote(token, safe=""), timeout=3) as r:
            page = r.read().decode()
        # The URLs the page itself requests, exactly as the browser would send them.
        image = re.search(r'<img id="v" src="([^"]+)"', page).group(1)
        query = re.search(r"const QUERY = '([^']*)'", page).group(1)
        assert image.startswith("/stream.mjpg?token=") and query.startswith("?token=")
        assert _status(base + image) == 200
        assert _status(base + "/stats.json" + query) == 200
        assert _status(base + "/stats.json", {"Authorization": f"Bearer {token}"}) == 200
        assert _status(base + "/stats.json" + query[:-1]) == 401
    finally:
        sink.close()


def test_exposed_bind_without_token_warns_on_stderr_and_on_the_page(monkeypatch, capsys):
    import edge.console.server as http_feed

    assert http_feed.is_loopback("127.0.0.1") and http_feed.is_loopback("::1")
    assert http_feed.is_loopback("localhost")
    for exposed in ("0.0.0.0", "::", "", "192.168.1.20", "rig.local"):
        assert not http_feed.is_loopback(exposed)
    # Only 127.0.0.1 is ever bound here: the sink is told its loopback address is exposed.
    monkeypatch.setattr(http_feed, "is_loopback", lambda host: False)
    monkeypatch.delenv("RUSTSEG_TOKEN", raising=False)
    run_loop(load_config(overrides={"refine.mode": "none"}),
             RunRequest("synthetic://?width=64&height=48&frames=3", ("http://127.0.0.1:0",),
                        None, None, True, False))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "no access token" in warnings[0]

    open_sink = http_feed.HttpFeedSink("127.0.0.1", 0, "", 70, 4)
    guarded = http_feed.HttpFeedSink("127.0.0.1", 0, "t0ken", 70, 4)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{open_sink.port}/", timeout=3) as r:
            page = r.read().decode()
        assert '<div id="w">WARNING: ' in page and "no access token" in page
        with urllib.request.urlopen(f"http://127.0.0.1:{guarded.port}/?token=t0ken",
                                    timeout=3) as r:
            assert "WARNING" not in r.read().decode()
    finally:
        open_sink.close()
        guarded.close()


def test_idle_connections_are_capped_timed_out_and_release_their_threads(monkeypatch):
    import edge.console.server as http_feed

    monkeypatch.setattr(http_feed._Handler, "timeout", 1.0)  # the 5 s default, shortened
    threads_before = threading.active_count()
    sink = http_feed.HttpFeedSink("127.0.0.1", 0, "", 70, 4)  # at most 8 connections
    base = f"http://127.0.0.1:{sink.port}"
    idle = []
    try:
        for _ in range(40):  # connect, send nothing, keep the socket open
            idle.append(socket.create_connection(("127.0.0.1", sink.port)))
        peak, until = 0, time.time() + 0.5
        while time.time() < until:
            peak = max(peak, threading.active_count())
            time.sleep(0.02)
        # The accept and encoder threads plus one per allowed connection, not one per socket.
        assert peak <= threads_before + 2 + 8
        # Every socket is answered 503 (over the cap) or closed by the server (timed out):
        # 40 sockets, 8 at a time, 1 s each, so well within 10 s.
        replies, deadline = [], time.time() + 10
        for s in idle:
            s.settimeout(max(0.1, deadline - time.time()))
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
            replies.append(reply)
        assert any(r.startswith(b"HTTP/1.1 503") for r in replies)
        assert all(r == b"" or r.startswith(b"HTTP/1.1 503") for r in replies)
        deadline = time.time() + 3
        while time.time() < deadline and threading.active_count() > threads_before + 2:
            time.sleep(0.1)
        assert threading.active_count() <= threads_before + 2  # encoder + accept thread
        assert _status(base + "/stats.json") == 200  # and the page serves again
    finally:
        for s in idle:
            s.close()
        sink.close()


def test_the_page_tells_a_stale_or_lost_feed_and_reconnects(monkeypatch):
    from edge.console.server import HttpFeedSink
    from edge.outputs import OutputFrame

    monkeypatch.delenv("RUSTSEG_TOKEN", raising=False)
    sink = HttpFeedSink("127.0.0.1", 0, "", 70, 4)
    base = f"http://127.0.0.1:{sink.port}"
    try:
        assert json.loads(_get(base + "/stats.json")[1])["last_frame_age_s"] is None
        image = np.zeros((48, 64, 3), np.uint8)
        sink.write(OutputFrame(0, "0", image, np.zeros((48, 64), bool), {"index": 0}))
        assert json.loads(_get(base + "/stats.json")[1])["last_frame_age_s"] < 1.0
        time.sleep(2.2)
        assert json.loads(_get(base + "/stats.json")[1])["last_frame_age_s"] > 2.0
        with urllib.request.urlopen(base + "/", timeout=3) as r:
            page = r.read().decode()
    finally:
        sink.close()
    for state in ("'STALE'", "'DISCONNECTED'", "STALE_AFTER_S = 2.0", "reconnect()"):
        assert state in page
    assert "http:" not in page and "https:" not in page and "//" not in page.split("<script>")[0]


_PAGE_SHIM = """
const BASE = process.argv[2], el = {}, log = [];
const document = {getElementById: id => (el[id] ??= {id, src: ''})};
const realFetch = fetch;
globalThis.fetch = (url, options) => realFetch(BASE + url, options);
setInterval(() => console.log(JSON.stringify({state: el.state?.className, src: el.v?.src})),
            200);
setTimeout(() => process.exit(0), Number(process.argv[3]) * 1000);
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="runs the page's script in Node")
def test_the_page_script_goes_stale_then_disconnected_and_reconnects(tmp_path, monkeypatch):
    """The page's own script, run in Node against a real server: LIVE while frames come,
    STALE when they stop, DISCONNECTED when the run ends, and a new stream request (LIVE
    again) when a run serves on the same address."""
    import re

    from edge.console.server import HttpFeedSink
    from edge.outputs import OutputFrame

    monkeypatch.delenv("RUSTSEG_TOKEN", raising=False)

    def frame(i):
        return OutputFrame(i, str(i), np.zeros((48, 64, 3), np.uint8),
                           np.zeros((48, 64), bool), {"index": i})

    sink = HttpFeedSink("127.0.0.1", 0, "", 70, 4)
    port = sink.port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as r:
        script = re.search(r"<script>(.*)</script>", r.read().decode(), re.S).group(1)
    (tmp_path / "page.js").write_text(_PAGE_SHIM + script)
    node = subprocess.Popen(["node", str(tmp_path / "page.js"), f"http://127.0.0.1:{port}",
                             "9"], stdout=subprocess.PIPE, text=True)
    try:
        for i in range(10):          # a live run: 1 s of frames
            sink.write(frame(i))
            time.sleep(0.1)
        time.sleep(2.8)              # frames stop: stale after 2 s
        sink.close()                 # the run ends
        time.sleep(1.5)
        sink = HttpFeedSink("127.0.0.1", port, "", 70, 4)  # a new run on the same address
        for i in range(20):
            sink.write(frame(i))
            time.sleep(0.1)
        out, _ = node.communicate(timeout=15)
    finally:
        node.kill()
        sink.close()
    samples = [json.loads(line) for line in out.splitlines()]
    states = [s["state"] for s in samples]
    order = [state for i, state in enumerate(states) if i == 0 or states[i - 1] != state]
    assert [s for s in order if s != "CONNECTING"] == ["LIVE", "STALE", "DISCONNECTED", "LIVE"]
    # The stream is left alone while live and requested anew once the new run serves.
    assert "src" not in samples[0] and samples[-1]["src"].startswith("/stream.mjpg?r=")


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
    result = _cli("run", "--source", str(video), flag, str(video), "--headless", "--quiet")
    _assert_one_line_error(result, 2, f"output {video} would write over the source file {video}")
    assert video.read_bytes() == before


def test_an_output_folder_over_its_source_photos_is_refused(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "p0.jpg"), make_scene(48, 64, 0)[0])
    cv2.imwrite(str(photos / "p1.png"), make_scene(48, 64, 1)[0])
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    for flag, victim in (("--output", "p0.jpg"), ("--save-masks", "p1.png")):
        result = _cli("run", "--source", str(photos), flag, f"{photos}/", "--headless",
                      "--quiet")
        _assert_one_line_error(result, 2, f"output {photos / victim} would write over the "
                               f"source file {photos / victim}")
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_images_sharing_a_name_get_one_output_each(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), make_scene(48, 64, 0)[0])
    cv2.imwrite(str(photos / "a.png"), np.zeros((48, 64, 3), np.uint8))
    run_loop(load_config(overrides={"refine.mode": "none"}),
             RunRequest(str(photos), (str(tmp_path / "out") + "/",), None,
                        str(tmp_path / "masks"), True, False))
    assert len(list((tmp_path / "out").iterdir())) == 2
    assert len(list((tmp_path / "masks").iterdir())) == 2


# --- 7. the exit code and the report tell the truth (issue 11) --------------------------------

@pytest.mark.parametrize("where, reason", [("under_a_file", "Not a directory"),
                                           ("proc", "No such file or directory"),
                                           ("read_only", "Permission denied")])
def test_a_video_output_that_cannot_be_opened_fails_at_start(tmp_path, where, reason):
    import os
    if where == "read_only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    target = {"under_a_file": blocker / "v.mp4", "proc": "/proc/rustseg_test.mp4",
              "read_only": locked / "v.mp4"}[where]
    result = _cli("run", "--source", "synthetic://?width=96&height=72&frames=3", "--output",
                  str(target), "--headless", "--quiet", "--refine", "none")
    _assert_one_line_error(result, 4, str(target), reason)
    assert "frames:" not in result.stdout  # it stopped before the first frame


class _FailingAt:
    """An output that writes `good` frames and then fails like a full disk."""

    wants_stop = False

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
    failing, counter = _FailingAt(5), _Counter()
    with open_source("synthetic://?width=64&height=48&frames=12") as source:
        report = _run_with(source, config, [failing, counter])
    assert report.frames_processed == 12 and counter.count == 12
    assert report.outputs["failing.mp4"].written == 5
    assert report.outputs["failing.mp4"].lost_at_frame == 5
    assert report.outputs["counter"].written == 12 and report.lost_outputs == ["failing.mp4"]
    assert "output failing.mp4: written 5, LOST at frame 5: output failing.mp4: No space left" \
        in report.format()


def test_a_run_with_no_outputs_processes_every_frame():
    report = run_loop(load_config(overrides={"refine.mode": "none"}),
                      RunRequest("synthetic://?width=64&height=48&frames=20", (), None, None,
                                 True, False))
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
    result = _cli("run", "--source", "synthetic://?width=96&height=72&frames=3", "--log",
                  str(blocker / "x.jsonl"), "--headless", "--quiet")
    _assert_one_line_error(result, 4, str(blocker / "x.jsonl"), "Not a directory")


# --- 8. streams and cameras at start-up (issue 11) --------------------------------------------

def _silent_server():
    """A TCP server that accepts connections and never says a word (a hung RTSP camera)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server


def test_a_silent_stream_gives_up_within_the_reconnect_timeout():
    from edge.sources import open_source
    server = _silent_server()
    started = time.monotonic()
    try:
        with pytest.raises(SourceError, match="tried for 1 s"):
            open_source(f"rtsp://127.0.0.1:{server.getsockname()[1]}/x", reconnect_timeout_s=1.0)
    finally:
        server.close()
    assert time.monotonic() - started < 10  # FFmpeg's own wait would be 30 s


# A shell starts background jobs with SIGINT ignored (`make test &`, `nohup ... &` in a script)
# and every child inherits that: pytest's own disposition must not decide the outcome.
_SIGINT_IGNORED_THEN_CLI = ("import os, signal, sys\n"
                            "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                            "os.execv(sys.executable, [sys.executable, '-m', 'edge.cli', "
                            "*sys.argv[1:]])\n")


@pytest.mark.parametrize("inherited_sigint", ["default", "ignored"])
def test_ctrl_c_is_honoured_while_a_stream_is_opening(tmp_path, inherited_sigint):
    server = _silent_server()
    server.settimeout(60)
    config = tmp_path / "c.yaml"
    config.write_text("loop: {reconnect_timeout_s: 60}\n")  # the open would hang 60 s
    launcher = ["-m", "edge.cli"] if inherited_sigint == "default" else \
        ["-c", _SIGINT_IGNORED_THEN_CLI]
    process = subprocess.Popen(
        [sys.executable, *launcher, "--config", str(config), "run", "--headless",
         "--source", f"rtsp://127.0.0.1:{server.getsockname()[1]}/x"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    connection = None
    try:
        # FFmpeg has connected and waits for an answer that never comes: inside the open.
        connection, _ = server.accept()
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        # communicate() drains the pipes, so a chatty child never blocks on a full one
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
        assert process.returncode == 130, stderr
        assert "rustseg: interrupted" in stderr and "Traceback" not in stderr
        # 0.5 s here, 1.4 s with two CPU hogs on two cores; room for a loaded CI machine
        assert took < 5, took
    finally:
        process.kill()
        process.wait()
        if connection is not None:
            connection.close()
        server.close()


class _HangingReopen(LiveSource):
    """Delivers a few frames, is lost, and its reopen hangs inside the driver (a stream that
    accepts the connection and never answers) until `unblock` is set."""

    def __init__(self):
        self.devices, self.reopening, self.unblock = [], threading.Event(), threading.Event()
        super().__init__("hanging camera", 60.0, 0.02)

    def open_device(self):
        if self.devices:
            self.reopening.set()
            self.unblock.wait(30)
        self.devices.append(_FlakyDevice(5))
        return self.devices[-1]


def _wait_for(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_ctrl_c_during_a_hung_reconnect_ends_the_run_within_a_second():
    config = load_config(overrides={"refine.mode": "none"})
    camera = _HangingReopen()
    stop = threading.Event()
    pipeline = Pipeline(camera, build_segmenter(config), [],
                        LoopOptions(overlay=config.overlay, print_frames=False), stop)
    reports = []
    runner = threading.Thread(target=lambda: reports.append(pipeline.run()))
    try:
        runner.start()
        assert camera.reopening.wait(10), "the camera was never reopened"
        started = time.monotonic()
        stop.set()  # what the first Ctrl-C does (edge.live.app.stop_on_signals)
        runner.join(10)
        camera.close()
        took = time.monotonic() - started
        assert reports and reports[0].frames_read == 5
        assert took < 1.0, took  # it was 2.5 s: a 0.5 s read wait, then a 2 s join in close()
        assert camera.devices[0].released
        camera.unblock.set()  # the hung open returns after all: its capture is released too
        assert _wait_for(lambda: len(camera.devices) == 2 and camera.devices[1].released)
    finally:
        camera.unblock.set()
        camera.close()


class _BlockingReadDevice(_FlakyDevice):
    """A device whose second read hangs inside the driver until `unblock` is set."""

    def __init__(self):
        super().__init__(100)
        self.reading, self.unblock = threading.Event(), threading.Event()

    def read(self):
        if self.left < 100:
            self.reading.set()
            self.unblock.wait(30)
        return super().read()


class _OneDeviceCamera(LiveSource):
    def __init__(self, device):
        self.device = device
        super().__init__("blocking camera", 60.0, 0.02)

    def open_device(self):
        return self.device


def test_closing_never_releases_a_device_while_its_read_is_under_way():
    # Releasing a cv2.VideoCapture that another thread is reading from frees it under that
    # thread; close() must return promptly and leave the release to the capture thread.
    device = _BlockingReadDevice()
    camera = _OneDeviceCamera(device)
    try:
        assert device.reading.wait(5)
        started = time.monotonic()
        camera.close()
        assert time.monotonic() - started < 1.0
        assert not device.released
        device.unblock.set()
        assert _wait_for(lambda: device.released)
    finally:
        device.unblock.set()
        camera.close()


class _LateCamera(LiveSource):
    """A camera that is not up for its first `late` opens (the rig booted before it)."""

    def __init__(self, late):
        self.late, self.opens = late, 0
        super().__init__("late camera", 2.0, 0.02)

    def open_device(self):
        self.opens += 1
        if self.opens <= self.late:
            raise SourceError("late camera: connection refused")
        return _FlakyDevice(5)


def test_a_camera_not_up_yet_at_start_is_waited_for():
    camera = _LateCamera(late=3)
    try:
        frame = None
        while frame is None:
            frame = camera.read()
        assert camera.opens == 4 and camera.reconnects == 0
    finally:
        camera.close()


@pytest.mark.parametrize("verbose", [False, True])
def test_native_log_lines_only_with_verbose(tmp_path, verbose):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: FFmpeg and OpenCV complain on every try
    config = tmp_path / "c.yaml"
    config.write_text("loop: {reconnect_timeout_s: 0.3}\n")
    result = _cli("--config", str(config), "run", "--headless", *(["-v"] if verbose else []),
                  "--source", f"rtsp://127.0.0.1:{port}/x")
    assert result.returncode == 3
    noise = ("INFO: Created TensorFlow Lite", "Connection refused", "[ WARN")
    if verbose:  # which of FFmpeg's and OpenCV's lines come depends on how far each try got
        assert noise[0] in result.stderr, result.stderr
        assert any(line in result.stderr for line in noise[1:]), result.stderr
    else:
        assert not any(line in result.stderr for line in noise), result.stderr


# --- 9. synthetic source and benchmark scripts (issue 11) -------------------------------------

def test_a_paced_synthetic_clip_ends_after_its_frames():
    from edge.sources import open_source
    frames = []
    with open_source("synthetic://?width=64&height=48&frames=6&fps=60") as source:
        deadline = time.monotonic() + 5  # 6 frames at 60 FPS take 0.1 s
        while not source.ended and time.monotonic() < deadline:
            frame = source.read()
            if frame is not None:
                frames.append(frame.index)
        ended = source.ended
    assert ended and frames == list(range(6))


def test_benchmark_plots_are_skipped_without_matplotlib(monkeypatch, capsys, tmp_path):
    from benchmarks import common
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    assert common.bar_plot("x", ["a"], [1.0], "ms", "t") is None
    assert "plot x.png skipped: matplotlib is not installed" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())

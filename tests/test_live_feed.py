"""Reliability, the live feed: loopback by default, the token on every route, viewers that stall
or idle, a page that tells a stale or lost feed and reconnects."""

import json
import logging
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from reliability_support import run_with, threads_started_since, wait_until
from edge.config import load_config
from edge.live.app import RunRequest, run_loop


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
            return response.status, response.read(65536)  # no route asked for here streams
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
    before = set(threading.enumerate())
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
        report = run_with(source, config, [sink], frames=90)
    # A live source may drop a stale frame now and then; every frame is accounted for.
    assert report.frames_read == report.frames_processed + report.dropped
    # The source's 30 FPS pace, not the 20 stalled viewers, sets the rate: a stalled viewer
    # would hold the loop for its 5 s send timeout. Generous bounds for a busy machine.
    assert report.frames_processed >= 45 and report.fps > 10
    for s in stalled:
        s.close()
    sink.close()
    assert wait_until(lambda: not threads_started_since(before), 20), \
        threads_started_since(before)


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
        query = json.loads(re.search(r'<script id="settings" type="application/json">(.*?)'
                                     r'</script>', page, re.S).group(1))["query"]
        script = re.search(r'<script src="([^"]+)"', page).group(1)
        assert image.startswith("/stream.mjpg?token=") and query.startswith("?token=")
        assert _status(base + image) == 200
        assert _status(base + script) == 200 and script.startswith("/static/console.js?")
        assert _status(base + "/stats.json" + query) == 200
        assert _status(base + "/stats.json", {"Authorization": f"Bearer {token}"}) == 200
        assert _status(base + "/stats.json" + query[:-1]) == 401
    finally:
        sink.close()


def test_exposed_bind_without_token_warns_at_start_and_on_the_page(monkeypatch, caplog):
    import edge.console.server as http_feed

    assert http_feed.is_loopback("127.0.0.1") and http_feed.is_loopback("::1")
    assert http_feed.is_loopback("localhost")
    for exposed in ("0.0.0.0", "::", "", "192.168.1.20", "rig.local"):
        assert not http_feed.is_loopback(exposed)
    # Only 127.0.0.1 is ever bound here: the sink is told its loopback address is exposed.
    monkeypatch.setattr(http_feed, "is_loopback", lambda host: False)
    monkeypatch.delenv("RUSTSEG_TOKEN", raising=False)
    with caplog.at_level(logging.INFO, logger="edge"):
        run_loop(load_config(overrides={"refine.mode": "none"}),
                 RunRequest("synthetic://?width=64&height=48&frames=3", ("http://127.0.0.1:0",),
                            None, None, True))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no access token" in warnings[0]
    assert any(r.getMessage().startswith("live page: http://127.0.0.1:") for r in caplog.records)

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
    before = set(threading.enumerate())
    sink = http_feed.HttpFeedSink("127.0.0.1", 0, "", 70, 4)  # at most 8 connections
    base = f"http://127.0.0.1:{sink.port}"
    idle = []
    try:
        for _ in range(40):  # connect, send nothing, keep the socket open
            idle.append(socket.create_connection(("127.0.0.1", sink.port)))
        peak, until = 0, time.time() + 0.5
        while time.time() < until:
            peak = max(peak, len(threads_started_since(before)))
            time.sleep(0.02)
        # The accept and encoder threads plus one per allowed connection, not one per socket
        # (counted among this test's own threads, whatever else the process runs).
        assert peak <= 2 + 8
        # Every socket is answered 503 (over the cap) or closed by the server (timed out):
        # 40 sockets, 8 at a time, 1 s each: 5 s; 30 s leaves room for a busy machine.
        replies, deadline = [], time.time() + 30
        for s in idle:
            s.settimeout(max(0.1, deadline - time.time()))
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
            replies.append(reply)
        assert any(r.startswith(b"HTTP/1.1 503") for r in replies)
        assert all(r == b"" or r.startswith(b"HTTP/1.1 503") for r in replies)
        # Only the encoder and accept threads are left.
        assert wait_until(lambda: len(threads_started_since(before)) <= 2, 15), \
            threads_started_since(before)
        assert _status(base + "/stats.json") == 200  # and the page serves again
    finally:
        for s in idle:
            s.close()
        sink.close()


def test_the_page_tells_a_stale_or_lost_feed_and_reconnects(monkeypatch):
    from edge.console.server import HttpFeedSink
    from edge.outputs import FrameRecord, OutputFrame

    monkeypatch.delenv("RUSTSEG_TOKEN", raising=False)
    sink = HttpFeedSink("127.0.0.1", 0, "", 70, 4)
    base = f"http://127.0.0.1:{sink.port}"
    try:
        assert json.loads(_get(base + "/stats.json")[1])["last_frame_age_s"] is None
        image = np.zeros((48, 64, 3), np.uint8)
        sink.write(OutputFrame(0, "0", image, np.zeros((48, 64), bool),
                               FrameRecord(0, "0", 0.0, 0.0, 0.0)))
        assert json.loads(_get(base + "/stats.json")[1])["last_frame_age_s"] < 1.0
        time.sleep(2.2)
        assert json.loads(_get(base + "/stats.json")[1])["last_frame_age_s"] > 2.0
        with urllib.request.urlopen(base + "/", timeout=3) as r:
            page = r.read().decode()
        with urllib.request.urlopen(base + "/static/console.js", timeout=3) as r:
            script = r.read().decode()
    finally:
        sink.close()
    settings = json.loads(re.search(r'<script id="settings" type="application/json">(.*?)'
                                    r'</script>', page, re.S).group(1))
    assert settings["stale_after_s"] == 2.0
    for state in ("'STALE'", "'DISCONNECTED'", "STALE_AFTER_S", "reconnect()"):
        assert state in script
    for text in (page, script):
        assert "http:" not in text and "https:" not in text
    assert "//" not in page.split("<script")[0]


_PAGE_SHIM = """
const BASE = process.argv[2], el = {}, log = [];
el.settings = {id: 'settings', textContent: process.argv[3]};  // the page's settings JSON
const document = {getElementById: id => (el[id] ??= {id, src: ''})};
const realFetch = fetch;
globalThis.fetch = (url, options) => realFetch(BASE + url, options);
setInterval(() => console.log(JSON.stringify({state: el.state?.className, src: el.v?.src})),
            200);
"""
_PHASE_S = 30        # generous: each state must show within this on a busy machine


class _PageStates:
    """The states the page's script reports, read from Node's output as they come."""

    def __init__(self, node: subprocess.Popen) -> None:
        self.samples: list[dict] = []
        self._reader = threading.Thread(target=self._read, args=(node,), daemon=True)
        self._reader.start()

    def _read(self, node) -> None:
        for line in node.stdout:
            self.samples.append(json.loads(line))

    def shown(self, state: str, after: int = 0) -> bool:
        return any(s["state"] == state for s in self.samples[after:])

    def wait(self, state: str, while_doing=lambda: None) -> int:
        """Wait (doing `while_doing` every 0.1 s) until the page shows `state`; the sample
        index where it did."""
        start, deadline = len(self.samples), time.monotonic() + _PHASE_S
        while not self.shown(state, start) and time.monotonic() < deadline:
            while_doing()
            time.sleep(0.1)
        assert self.shown(state, start), (state, self.samples[-5:])
        return len(self.samples)


@pytest.mark.skipif(shutil.which("node") is None, reason="runs the page's script in Node")
def test_the_page_script_goes_stale_then_disconnected_and_reconnects(tmp_path, monkeypatch):
    """The page's own script, run in Node against a real server: LIVE while frames come,
    STALE when they stop, DISCONNECTED when the run ends, and a new stream request (LIVE
    again) when a run serves on the same address. Each phase lasts until the page shows its
    state (or a generous deadline passes), so a slow machine only makes it slower."""

    from edge.console.server import HttpFeedSink
    from edge.outputs import FrameRecord, OutputFrame

    monkeypatch.delenv("RUSTSEG_TOKEN", raising=False)
    frames = iter(range(10 ** 6))

    def send(sink):
        i = next(frames)
        sink.write(OutputFrame(i, str(i), np.zeros((48, 64, 3), np.uint8),
                               np.zeros((48, 64), bool), FrameRecord(i, str(i), 0.0, 0.0, 0.0)))

    sink = HttpFeedSink("127.0.0.1", 0, "", 70, 4)
    port = sink.port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as r:
        settings = re.search(r'<script id="settings" type="application/json">(.*?)</script>',
                             r.read().decode(), re.S).group(1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/console.js", timeout=3) as r:
        script = r.read().decode()
    (tmp_path / "page.js").write_text(_PAGE_SHIM + script)
    node = subprocess.Popen(["node", str(tmp_path / "page.js"), f"http://127.0.0.1:{port}",
                             settings], stdout=subprocess.PIPE, text=True)
    try:
        page = _PageStates(node)
        page.wait("LIVE", lambda: send(sink))      # a live run
        page.wait("STALE")                          # frames stop: stale after 2 s
        sink.close()                                # the run ends
        page.wait("DISCONNECTED")
        sink = HttpFeedSink("127.0.0.1", port, "", 70, 4)  # a new run on the same address
        page.wait("LIVE", lambda: send(sink))
        page.wait("LIVE", lambda: send(sink))       # and it stays live while frames come
    finally:
        node.kill()
        node.wait()
        sink.close()
    states = [s["state"] for s in page.samples]
    order = [state for i, state in enumerate(states) if i == 0 or states[i - 1] != state]
    assert [s for s in order if s != "CONNECTING"] == ["LIVE", "STALE", "DISCONNECTED", "LIVE"]
    # The stream is left alone while live and requested anew once the new run serves.
    assert "src" not in page.samples[0] and page.samples[-1]["src"].startswith("/stream.mjpg?r=")

"""Reliability round 3 (issue 19): file names read as globs, two batches on one --out, a live
record's lock, slow and smuggling HTTP clients, hostile YAML, file modes, FIFOs, an
unreachable Ray cluster, non-ASCII tokens and @list comments. Each test names its item."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from urllib.parse import quote

import cv2
import pytest

from conftest import LIVE_TEST_SOURCE, ROOT
from edge.batch import BatchRequest, run_batch
from edge.batch.inputs import expand_inputs
from edge.batch.runner import LOCK_NAME
from edge.cli import main
from edge.config import load_config
from edge.data.synthetic import make_scene, write_clip_video
from edge.errors import ConfigError, DataError
from edge.record.layout import RecordLayout
from edge.record.lock import FolderLock, LockBusy, lock_holder
from edge.sources import open_source
from edge.writable import write_atomic

_W, _H = 96, 72


def _still(path: Path, seed: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), make_scene(_H, _W, seed=seed)[0])
    return path


# --- item 2: an existing path is taken literally --------------------------------------------

def test_existing_paths_with_glob_characters_are_taken_literally(tmp_path):
    bracketed = write_clip_video(tmp_path / "DJI [1].avi", _W, _H, 3, seed=1)
    write_clip_video(tmp_path / "DJI 1.avi", _W, _H, 5, seed=2)  # what the glob would match
    shots = tmp_path / "shots [2]"
    _still(shots / "a.png")
    _still(tmp_path / "shots 2" / "b.png")

    items = expand_inputs([str(bracketed), str(shots)])
    assert [Path(i.uri).name for i in items] == ["DJI [1].avi", "shots [2]"]
    assert [p.name for p in items[1].files] == ["a.png"]

    with open_source(str(bracketed)) as source:  # run --source (exit 3 before the fix)
        assert source.input_files()[0][0].name == "DJI [1].avi"
    with open_source(str(shots)) as source:
        assert [p.name for p, _ in source.input_files()] == ["a.png"]

    # ... through an @list too, while a pattern that is no path is still a glob.
    listing = tmp_path / "list.txt"
    listing.write_text("DJI [1].avi\n")
    assert [Path(i.uri).name for i in expand_inputs([f"@{listing}"])] == ["DJI [1].avi"]
    globbed = expand_inputs([str(tmp_path / "DJI*.avi")])
    assert sorted(Path(i.uri).name for i in globbed) == ["DJI 1.avi", "DJI [1].avi"]


# --- item 22: @list comments ----------------------------------------------------------------

def test_list_comments_indented_or_trailing_are_not_paths(tmp_path):
    write_clip_video(tmp_path / "flight_a.avi", _W, _H, 3, seed=1)
    write_clip_video(tmp_path / "clip #3.avi", _W, _H, 3, seed=2)
    listing = tmp_path / "list.txt"
    listing.write_text("# the archive\n    # an indented comment\n"
                       "flight_a.avi    # the morning flight\n"
                       "clip #3.avi\n"                     # an existing name keeps its '#'
                       "\t# a tab-indented one\n")
    items = expand_inputs([f"@{listing}"])
    assert [Path(i.uri).name for i in items] == ["flight_a.avi", "clip #3.avi"]


# --- item 18: a FIFO given to batch ---------------------------------------------------------

def test_a_fifo_given_to_batch_is_refused_before_it_is_hashed(tmp_path, capsys):
    fifo = tmp_path / "camera.mp4"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"camera\.mp4: is not a regular file \(a FIFO"):
        expand_inputs([str(fifo)])
    code = main(["batch", str(fifo), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not a regular file" in err[0]
    # ... in the words `run --source` uses (it said "does not exist" for a FIFO)
    assert main(["run", "--source", str(fifo), "--headless", "--quiet"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert "camera.mp4: video file is not a regular file (a FIFO, socket or device)" in err[-1]


# --- item 3: one batch per --out, the record's lock -----------------------------------------

_HOLD = textwrap.dedent("""
    import os, signal, sys, time
    from edge.record.lock import FolderLock
    lock = FolderLock(sys.argv[1], "test", "the test's holder").acquire()
    print("held", flush=True)
    if sys.argv[2] == "die":
        os.kill(os.getpid(), signal.SIGKILL)   # dies holding it: the file stays behind
    time.sleep(60)
""")


def _holder(path: Path, mode: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", _HOLD, str(path), mode], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    if mode == "hold":
        assert process.stdout.readline().strip() == "held"
    else:
        process.wait(timeout=30)
    return process


def test_a_second_batch_on_a_busy_out_is_refused_at_once(tmp_path, capsys):
    clip = write_clip_video(tmp_path / "flight.avi", _W, _H, 3, seed=1)
    out = tmp_path / "out"
    (out / "records" / "flight-0123abcd").mkdir(parents=True)  # the first batch's work
    holder = _holder(out / LOCK_NAME, "hold")
    try:
        started = time.monotonic()
        code = main(["batch", str(clip), "--out", str(out)])
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 75 and len(err) == 1, err
    assert f"--out {out}: in use by" in err[0] and f"pid {holder.pid}" in err[0]
    assert took < 20  # at once: no input was processed (generous: the model is not loaded)
    assert (out / "records" / "flight-0123abcd").is_dir()  # nothing of the first was removed
    assert not (out / "manifest.json").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, caplog):
    lock_path = tmp_path / "out" / LOCK_NAME
    lock_path.parent.mkdir()
    dead = _holder(lock_path, "die")
    assert dead.returncode == -signal.SIGKILL and lock_path.exists()
    assert lock_holder(lock_path) is None  # the file is there, but nobody holds it

    stills = tmp_path / "stills"
    _still(stills / "p0.png")
    request = BatchRequest((str(stills),), str(lock_path.parent), workers=1,
                           show_progress=False)
    with caplog.at_level("WARNING"):
        result = run_batch(load_config(overrides={"refine.mode": "light"}), request)
    assert result.all_done, result.outcomes
    assert f"took over the lock left by the test's holder (pid {dead.pid}" in caplog.text
    assert not lock_path.exists()  # released at the end


def test_folder_lock_refuses_a_second_holder_even_in_one_process(tmp_path):
    path = tmp_path / "x.lock"
    with FolderLock(path, "--out x", "first") as first:
        assert first.took_over is None
        assert lock_holder(path)["pid"] == os.getpid()
        with pytest.raises(LockBusy, match=r"--out x: in use by first \(pid"):
            FolderLock(path, "--out x", "second").acquire()
    assert lock_holder(path) is None and not path.exists()


def test_a_recording_run_holds_its_record_lock_until_its_summary_is_written(tmp_path):
    record = tmp_path / "rec"
    layout = RecordLayout(record)
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--source", LIVE_TEST_SOURCE, "--record",
         str(record), "--quiet", "--headless", "--refine", "none"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not layout.frames_log.exists()
                                           or not layout.frames_log.read_text().count("\n")):
            time.sleep(0.2)
        holder = lock_holder(layout.run_lock)
        assert holder is not None and holder["pid"] == process.pid, holder
        assert holder["what"] == "rustseg run --record"
        assert layout.read_summary()["ended"] == "running"
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert layout.read_summary()["ended"] == "SIGINT"
    assert lock_holder(layout.run_lock) is None and not layout.run_lock.exists()


# --- item 17: write_atomic's mode and the folder's fsync ------------------------------------

def test_write_atomic_follows_the_umask_and_syncs_the_folder(tmp_path, monkeypatch):
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        previous = os.umask(umask)
        try:
            target = tmp_path / f"run_{umask:o}.json"
            write_atomic(target, "{}")
        finally:
            os.umask(previous)
        assert stat.S_IMODE(target.stat().st_mode) == mode

    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_atomic(tmp_path / "manifest.json", "{}", fsync=True)
    assert synced == [False, True]  # the data, then the folder holding the new name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "run_22.json",
                                                           "run_27.json"]  # no temp left


# --- items 12 and 13: hostile YAML ----------------------------------------------------------

_ALIAS_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]"
       for i in range(8)]
    + ["model:", "  path: *i"]) + "\n"


def test_an_alias_bomb_is_refused_quickly_and_help_still_works(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_ALIAS_BOMB)
    with pytest.raises(ConfigError, match=r"bomb\.yaml line 2: YAML aliases \(\*a\) are not "
                                          r"allowed"):
        load_config(bomb)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "edge.cli", "--config", str(bomb), "--help"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "exit codes:" in result.stdout, result.stderr
    assert time.monotonic() - started < 60


def test_deep_nesting_and_huge_files_are_one_line_errors(tmp_path, capsys):
    deep = tmp_path / "deep.yaml"
    deep.write_text("model:\n  path: " + "[" * 20000 + "]" * 20000 + "\n")
    assert main(["--config", str(deep), "config"]) == 2  # was RecursionError, exit 70
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deep.yaml line 2: nested more than 16 levels" in err[0]

    huge = tmp_path / "huge.yaml"
    huge.write_text("# padding\n" * 200_000)
    with pytest.raises(ConfigError, match=r"huge\.yaml is larger than 1048576 bytes"):
        load_config(huge)


def test_duplicate_keys_are_refused_naming_the_key_and_its_line(tmp_path):
    config = tmp_path / "dup.yaml"
    config.write_text("refine:\n  mode: light\nloop:\n  frames: 3\nrefine:\n  worker: thread\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml line 5: duplicate key 'refine' "
                                          r"\(first at line 1\)"):
        load_config(config)
    config.write_text("loop:\n  frames: 3\n  queue_depth: 2\n  frames: 4\n")
    with pytest.raises(ConfigError, match=r"line 4: duplicate key 'frames' \(first at line 2\)"):
        load_config(config)
    config.write_text("loop:\n  frames: 3\nrefine:\n  mode: light\n")  # the same key in two
    assert load_config(config).loop.frames == 3                       # sections is fine


# --- item 20: an unreachable Ray cluster ----------------------------------------------------

def test_an_unreachable_ray_address_is_a_quick_clear_error(tmp_path):
    pytest.importorskip("ray", reason="needs the cluster extra (Ray)")
    clip = write_clip_video(tmp_path / "flight.avi", _W, _H, 3, seed=1)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "batch", str(clip), "--out", str(tmp_path / "out"),
         "--engine", "ray", "--address", f"127.0.0.1:{port}"],
        cwd=ROOT, capture_output=True, text=True, timeout=100)
    err = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(err) == 1, result.stderr
    assert f"--address 127.0.0.1:{port}: cannot reach the Ray cluster" in err[0]
    assert time.monotonic() - started < 60  # Ray alone kept trying for minutes
    assert main(["batch", str(clip), "--out", str(tmp_path / "out"), "--engine", "ray",
                 "--address", "headnode"]) == 2  # no port: malformed, said at once


# --- items 7, 9, 21: the live page's server -------------------------------------------------

def _request(port: int, raw: bytes, source: str = "127.0.0.1", wait_s: float = 5.0) -> bytes:
    """Send `raw` on one connection, close our side for writing, return all that comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s,
                                  source_address=(source, 0)) as connection:
        connection.sendall(raw)
        connection.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    return reply


@pytest.fixture
def feed():
    from edge.console.server import HttpFeedSink

    sinks = []

    def make(token="", max_clients=4, max_per_address=None):
        sinks.append(HttpFeedSink("127.0.0.1", 0, token, 70, max_clients,
                                  max_per_address=max_per_address))
        return sinks[-1]

    yield make
    for sink in sinks:
        sink.close()


def test_request_bodies_are_never_read_as_requests(feed):
    port = feed().port
    smuggled = b"GET /stats.json HTTP/1.1\r\nHost: x\r\n\r\n"
    for method in (b"POST", b"HEAD", b"GET"):
        reply = _request(port, method + b" /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: "
                         + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled
                         + b"GET /stats.json HTTP/1.1\r\nHost: x\r\n\r\n")
        statuses = re.findall(rb"HTTP/1\.1 \d{3}", reply)
        # The body is dropped; the request after it is answered, on the same connection.
        assert len(statuses) == 2, (method, reply)
        assert statuses[1] == b"HTTP/1.1 200"
    # A body of unknown length: answered, then the connection is closed.
    reply = _request(port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"26\r\n" + smuggled + b"\r\n0\r\n\r\n")
    assert reply.count(b"HTTP/1.1 ") == 1 and reply.startswith(b"HTTP/1.1 405")


@pytest.mark.parametrize("token", ["grüße-ключ", "plain-ascii"])
def test_a_non_ascii_token_works_as_query_and_as_bearer_header(feed, token):
    port = feed(token=token).port
    head = b"GET /stats.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    bearer = _request(port, head + b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")
    query = _request(port, b"GET /stats.json?token=" + quote(token).encode()
                     + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    wrong = _request(port, head + b"Authorization: Bearer " + token[:-1].encode() + b"\r\n\r\n")
    assert bearer.startswith(b"HTTP/1.1 200") and query.startswith(b"HTTP/1.1 200")
    assert wrong.startswith(b"HTTP/1.1 401")


def _slow_client(port: int, source: str, every_s: float, until: float, closed_after: list):
    """Slowloris: a request line, then one header line every `every_s` until `until`."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2,
                                      source_address=(source, 0)) as connection:
            connection.sendall(b"GET /stats.json HTTP/1.1\r\n")
            while time.monotonic() < until:
                connection.sendall(b"X-Slow: 1\r\n")
                time.sleep(every_s)
                connection.setblocking(False)
                try:
                    if connection.recv(4096) == b"":
                        break  # the server hung up
                except BlockingIOError:
                    pass
                finally:
                    connection.setblocking(True)
    except OSError:
        pass  # refused or reset: the server hung up too
    closed_after.append(time.monotonic() - started)


def test_a_slow_request_head_is_cut_at_its_deadline(feed, monkeypatch):
    import edge.console.server as server

    monkeypatch.setattr(server._Handler, "timeout", 1.0)  # the 5 s default, shortened
    port = feed().port
    closed_after: list[float] = []
    _slow_client(port, "127.0.0.1", 0.2, time.monotonic() + 8, closed_after)
    # One header line each 0.2 s never trips a per-read timeout: only a deadline ends it.
    assert closed_after[0] < 4, closed_after


def test_one_address_is_capped_and_others_are_still_served(feed):
    sink = feed(max_per_address=3)
    idle = [socket.create_connection(("127.0.0.1", sink.port)) for _ in range(5)]
    try:
        refused = 0
        for connection in idle[3:]:
            connection.settimeout(3)
            refused += connection.recv(4096).startswith(b"HTTP/1.1 503")
        assert refused == 2
        reply = _request(sink.port, b"GET /stats.json HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\n\r\n", source="127.0.0.2")
        assert reply.startswith(b"HTTP/1.1 200")
    finally:
        for connection in idle:
            connection.close()


def test_the_token_holder_is_served_while_slow_clients_hold_every_slot(feed, capfd):
    sink = feed(token="t0ken", max_clients=2, max_per_address=4)  # 4 pending heads at most
    until = time.monotonic() + 6
    closed: list[float] = []
    attackers = [threading.Thread(target=_slow_client,
                                  args=(sink.port, f"127.0.0.{10 + i}", 1.0, until, closed),
                                  daemon=True) for i in range(16)]
    for thread in attackers:
        thread.start()
    time.sleep(1.0)  # every pending slot is taken by now
    statuses = []
    for _ in range(10):
        reply = _request(sink.port, b"GET /stats.json HTTP/1.1\r\nHost: x\r\nConnection: close"
                         b"\r\nAuthorization: Bearer t0ken\r\n\r\n")
        statuses.append(reply.split(b"\r\n", 1)[0])
        time.sleep(0.1)
    for thread in attackers:
        thread.join(timeout=10)
    assert statuses == [b"HTTP/1.1 200 OK"] * 10
    assert "Traceback" not in capfd.readouterr().err  # cut-off clients are no errors

"""The loop as a systemd service: the unit (systemd-analyze verify, the shipped copy), `rustseg
service install/status` into a system image (systemctl --root), and the sd_notify protocol seen
from systemd's side: a unix datagram socket of the test's own as NOTIFY_SOCKET."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

from edge.config import load_config
from edge.service.systemd import record_root_of
from edge.service.unit import UnitSettings, render_unit

needs_systemd_tools = pytest.mark.skipif(
    not (shutil.which("systemd-analyze") and shutil.which("systemctl")),
    reason="needs systemd's tools (Debian: apt-get install systemd)")


def _settings(**changes) -> UnitSettings:
    service = load_config().service
    values = dict(command=(sys.executable, "-m", "edge.cli"), source=service.source,
                  record_root=service.record_root, user="root", outputs=(service.output,),
                  watchdog_s=service.watchdog_s, restart_s=service.restart_s)
    return UnitSettings(**{**values, **changes})


def test_shipped_unit_is_what_install_writes_with_the_defaults():
    service = load_config().service
    shipped = (ROOT / "deploy" / "rustseg.service").read_text()
    assert shipped == render_unit(_settings(command=("/opt/rustseg/.venv/bin/rustseg",),
                                            user="pi"))
    for line in ("Type=notify", "Restart=on-failure", f"WatchdogSec={service.watchdog_s}",
                 "StandardOutput=journal", "WantedBy=multi-user.target"):
        assert f"\n{line}\n" in shipped


def _verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)


@needs_systemd_tools
def test_unit_passes_systemd_analyze_verify_and_a_broken_one_does_not(tmp_path):
    good = tmp_path / "rustseg.service"
    good.write_text(render_unit(_settings(source="rtsp://cam:p%40ss@10.0.0.2/live 1")))
    done = _verify(good)
    assert done.returncode == 0 and str(good) not in done.stdout + done.stderr, done.stderr
    # The same check refuses what a hand edit gets wrong: the verify step is not a formality.
    bad = tmp_path / "bad.service"
    bad.write_text(good.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    assert "Unknown key 'WatchdogSecs'" in _verify(bad).stderr


def test_exec_start_arguments_survive_systemd_quoting(tmp_path):
    # % starts a specifier and $ a variable in ExecStart; a space splits arguments.
    unit = tmp_path / "rustseg.service"
    root = "/srv/records $1 100%"
    unit.write_text(render_unit(_settings(record_root=root)))
    assert record_root_of(unit) == root
    assert '"/srv/records $$1 100%%"' in unit.read_text()


def _rustseg(*args: str, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


@needs_systemd_tools
def test_service_install_writes_enables_and_status_reports(tmp_path):
    image = tmp_path / "image"
    done = _rustseg("service", "install", "--root", str(image), "--source",
                    "synthetic://?fps=30", "--record-root", "/var/lib/rig/records",
                    "--user", "root")
    assert done.returncode == 0, done.stderr
    unit = image / "etc/systemd/system/rustseg.service"
    link = image / "etc/systemd/system/multi-user.target.wants/rustseg.service"
    assert unit.is_file() and link.is_symlink()          # enabled: started at boot
    assert (image / "var/lib/rig/records").is_dir()
    assert "--source synthetic://?fps=30 --record-root /var/lib/rig/records" in unit.read_text()
    status = _rustseg("service", "status", "--root", str(image))
    assert status.returncode == 3                        # not running (no systemd here)
    assert "enabled (starts at boot)" in status.stdout
    assert "records: 0 in" in status.stdout and "journalctl -u rustseg.service" in status.stdout


def test_service_install_refuses_an_unknown_user_in_one_line(tmp_path):
    done = _rustseg("service", "install", "--root", str(tmp_path), "--user", "no-such-user-x")
    assert done.returncode == 2
    assert done.stderr.strip() == "rustseg: error: --user no-such-user-x: no such user on this " \
                                  "machine"


# --- sd_notify: READY once, WATCHDOG while frames flow --------------------------------------

def _notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.2)
    return sock


def _receive_for(sock: socket.socket, seconds: float) -> list[str]:
    messages, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            messages += sock.recv(4096).decode().splitlines()
        except socket.timeout:
            pass
    return messages


def _wait_for(sock: socket.socket, message: str, seconds: float) -> list[str]:
    """Messages received up to and including the first `message`."""
    received, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        received += _receive_for(sock, 0.5)
        if message in received:
            return received
    raise AssertionError(f"no {message} within {seconds} s: {received}")


def _refine_worker_pid(parent: int) -> int:
    """The refine worker: the child started by multiprocessing's spawn (not its resource
    tracker)."""
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in cmdline:
            return int(child)
    raise AssertionError(f"no refine worker among the children of {parent}")


def test_ready_then_watchdog_while_frames_flow_and_none_when_they_stop(tmp_path):
    sock = _notify_socket(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
           "WATCHDOG_USEC": "1000000"}          # 1 s: a ping every 0.25 s
    # A paced camera of a well-rusted plate: the gate opens, so every frame goes through the
    # refine worker, a process of its own that the test can freeze like a hung device.
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--source",
         "synthetic://?width=320&height=240&frames=0&fps=15&seed=3", "--refine", "light",
         "--headless", "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        messages: list[str] = []
        deadline = time.monotonic() + 90
        while "READY=1" not in messages and time.monotonic() < deadline:
            messages += _receive_for(sock, 0.5)
        assert "READY=1" in messages, process.stderr.read() if process.poll() is not None else ""
        assert "WATCHDOG=1" not in messages[:messages.index("READY=1")]  # ready comes first
        messages += _wait_for(sock, "WATCHDOG=1", 120)  # the first frame out (slow when busy)
        flowing = _receive_for(sock, 4)
        assert flowing.count("WATCHDOG=1") >= 3, flowing   # up to 16 in 4 s; >= 1 FPS surely
        assert any(m.startswith("STATUS=live: ") for m in flowing + messages)

        worker = _refine_worker_pid(process.pid)
        os.kill(worker, signal.SIGSTOP)                   # frames stop coming out
        try:
            _receive_for(sock, 2.0)                       # the frames already past refine
            stalled = _receive_for(sock, 4)
            assert "WATCHDOG=1" not in stalled, stalled
        finally:
            os.kill(worker, signal.SIGCONT)
        resumed = _receive_for(sock, 20)
        assert resumed.count("WATCHDOG=1") >= 3, resumed  # and they start again with them

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
        assert "STOPPING=1" in _receive_for(sock, 1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        sock.close()


def test_no_notify_socket_means_no_notify_sink(tmp_path):
    from edge.live.notify import SystemdNotifySink

    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    assert SystemdNotifySink.from_environment(env) is None
    if importlib.util.find_spec("sdnotify") is not None:  # with a socket there is one
        notify = SystemdNotifySink.from_environment({**env, "NOTIFY_SOCKET": str(tmp_path)})
        assert notify is not None and not notify.is_output  # a view: not tallied, keeps nothing
    done = _rustseg("run", "--source", "synthetic://?width=160&height=120&frames=3&seed=3",
                    "--headless", "--quiet", "--log", str(tmp_path / "f.jsonl"), env=env)
    assert done.returncode == 0, done.stderr

"""The systemd unit that runs the live loop on a rig: written by `rustseg service install`, and
shipped as deploy/rustseg.service for people who prefer to read it first.

Why each line is there is said in the unit itself, so that whoever opens it on the rig reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SAFE_ARG = re.compile(r"[A-Za-z0-9_@+=:,./?&~-]+")   # never split or expanded by systemd


@dataclass(frozen=True)
class UnitSettings:
    """Everything the unit depends on; rendering is a pure function of it."""

    command: tuple[str, ...]        # how to start rustseg: (/opt/venv/bin/rustseg,) or python -m
    source: str
    record_root: str
    user: str
    outputs: tuple[str, ...] = ()
    config_file: str | None = None  # an absolute path (the service runs from /)
    watchdog_s: int = 30
    restart_s: int = 5


def exec_start(settings: UnitSettings) -> list[str]:
    """The argv the unit runs: the live loop, headless and quiet (a line per frame would flood
    the journal on the rig's card), recording every run under the record root."""
    argv = [*settings.command, "run", "--source", settings.source,
            "--record-root", settings.record_root, "--headless", "--quiet"]
    for uri in settings.outputs:
        argv += ["--output", uri]
    if settings.config_file:
        argv += ["--config", settings.config_file]
    return argv


def render_unit(settings: UnitSettings) -> str:
    command_line = " ".join(quote_argument(arg) for arg in exec_start(settings))
    return f"""\
# RustSEG Edge: the live corrosion loop as a service, started at boot.
# Written by `rustseg service install` (run it again to change the source, the record root or
# the user); `rustseg service status` says what it is doing; logs: journalctl -u <this unit>.
[Unit]
Description=RustSEG Edge live corrosion segmentation
# Not network-online: a rig often flies with no network, and waiting for it would hold the
# camera back a minute at boot. A stream (rtsp://) that is not reachable yet is retried.
After=network.target

[Service]
# The loop says READY=1 once the model is loaded and the source is open.
Type=notify
# Only the loop itself may notify (its refine worker is a child process).
NotifyAccess=main
ExecStart={command_line}
User={settings.user}
# The loop sends WATCHDOG=1 while frames come out of it: a hung camera, invoke or refine
# worker stops them, and systemd then kills the service and starts it again.
WatchdogSec={settings.watchdog_s}
Restart=on-failure
RestartSec={settings.restart_s}
# Exit 2 is a bad option, config or model: starting again cannot fix it.
RestartPreventExitStatus=2
# SIGTERM (systemctl stop, shutdown) finishes the frames in flight, closes the video so it
# stays playable and writes summary.json; the loop then exits 143, a clean stop (or 5 when the
# video had stopped at the card's free-space reserve and the run went on without it).
SuccessExitStatus=143 5
TimeoutStopSec=30
# Everything the loop prints goes to the journal.
StandardOutput=journal
StandardError=journal
SyslogIdentifier=rustseg
Environment=PYTHONUNBUFFERED=1

[Install]
WantedBy=multi-user.target
"""


def quote_argument(arg: str) -> str:
    """One ExecStart argument as systemd reads it back: `%` would start a specifier and `$` a
    variable, so they are doubled; anything beyond plain characters is double-quoted with C
    escapes (an rtsp:// URL with a password, a path with a space)."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _SAFE_ARG.fullmatch(arg):
        return escaped
    escaped = escaped.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'

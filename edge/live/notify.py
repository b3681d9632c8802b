"""Tells systemd how a run started by a unit is doing, through sd_notify (the `sdnotify` library).

- `READY=1` once the model is loaded and the source is open: the run calls every sink's
  `start()` only then, so this sink sends it from `start()`. A unit of `Type=notify` counts as
  started from that moment, and a camera that never opens keeps it "activating" until systemd
  gives up (TimeoutStartSec) and restarts it.
- `WATCHDOG=1` while frames reach the outputs: `write()` runs at the very end of the frame
  recipe, so a camera that hangs, an invoke that never returns or a refine worker that stops
  all stop the pings, and systemd kills and restarts the service after `WatchdogSec`.
- `STATUS=...`: one line `systemctl status` shows (frames, FPS, notices such as a video stopped
  at the free-space reserve).
- `STOPPING=1` when the run closes its outputs.

Outside systemd (no NOTIFY_SOCKET) the run has no such sink at all.
"""

from __future__ import annotations

import os
import time

from edge.errors import MissingDependencyError
from edge.outputs import FrameSink, OutputFrame

_PINGS_PER_WATCHDOG_PERIOD = 4   # systemd's advice: notify at half the period or more often
_STATUS_EVERY_S = 5.0            # STATUS= is for people: every few seconds is enough


def watchdog_period_s(environ=os.environ) -> float | None:
    """The watchdog period systemd gave this process (WATCHDOG_USEC), or None when it has none
    for us (unset, or WATCHDOG_PID names another process, as in a child that inherited it)."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6


class SystemdNotifySink(FrameSink):
    """READY, WATCHDOG, STATUS and STOPPING for systemd; see the module docstring."""

    name = "systemd notify"
    # Not an output: it keeps no frame, so the report does not tally it, and the run does not
    # go on for it alone once every real output has failed.
    is_output = False

    def __init__(self, watchdog_s: float | None) -> None:
        try:
            from sdnotify import SystemdNotifier
        except ImportError:
            raise MissingDependencyError("running under systemd (NOTIFY_SOCKET is set) needs "
                                         "sdnotify: pip install sdnotify") from None
        self._notifier = SystemdNotifier()
        self._ping_every_s = None if watchdog_s is None else \
            watchdog_s / _PINGS_PER_WATCHDOG_PERIOD
        self._last_ping = self._last_status = float("-inf")
        self._frames = 0

    @classmethod
    def from_environment(cls, environ=os.environ) -> "SystemdNotifySink | None":
        """The sink when systemd started this process with a notify socket, else None."""
        if not environ.get("NOTIFY_SOCKET"):
            return None
        return cls(watchdog_period_s(environ))

    def start(self) -> None:
        self._notifier.notify("READY=1\nSTATUS=model loaded, source open; waiting for frames")

    def write(self, frame: OutputFrame) -> None:
        self._frames += 1
        now = time.monotonic()
        if self._ping_every_s is not None and now - self._last_ping >= self._ping_every_s:
            self._notifier.notify("WATCHDOG=1")
            self._last_ping = now
        if now - self._last_status >= _STATUS_EVERY_S:
            fps = frame.record.fps
            line = f"live: {self._frames} frames" + (f", {fps:.1f} FPS" if fps else "")
            self._notifier.notify("STATUS=" + "; ".join([line, *frame.notices]))
            self._last_status = now

    def close(self) -> None:
        self._notifier.notify("STOPPING=1\nSTATUS=stopping: closing the outputs")

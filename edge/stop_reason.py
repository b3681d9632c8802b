"""How a run ended, named once: the loop sets it, the record writes it, the CLI maps it to an
exit code. A leaf: it imports no edge module, so every role may read it.

The values are what summary.json's "ended" and the run report say, so they stay readable.
`StopRequest` is the event a run is stopped with; whoever stops it says why.
"""

from __future__ import annotations

import threading
from enum import Enum


class StopReason(str, Enum):
    """Why a run stopped. A str, so it is written to JSON and compared as its text."""

    END_OF_SOURCE = "end of source"
    FRAME_LIMIT = "frame limit"               # --frames N (loop.frames) reached
    STOP_REQUEST = "stop request"             # a caller in Python (a batch driver) asked
    WINDOW_CLOSED = "display window closed"
    NO_OUTPUT_LEFT = "no output left"         # every output failed (sink_error_policy=drop)
    OUTPUT_FAILURE = "output failure"         # an output failed (sink_error_policy=stop)
    SIGINT = "SIGINT"
    SIGTERM = "SIGTERM"
    # Only the record says these: it looks at the disk and at the run's exception.
    DISK_FULL = "disk full"
    OUTPUT_LOST = "output lost"
    ERROR = "error"
    RUNNING = "running"     # still running, or died without a word (power loss, kill -9)
    # Only `rustseg report` says this, of a record whose summary still said "running".
    CUT_SHORT = "cut short (no final summary: the process died or the disk was full)"

    def __str__(self) -> str:
        return self.value

    @property
    def normal(self) -> bool:
        """The run ended as asked: its source ended or its frame limit was reached."""
        return self in (StopReason.END_OF_SOURCE, StopReason.FRAME_LIMIT)

    @property
    def signal(self) -> bool:
        return self in (StopReason.SIGINT, StopReason.SIGTERM)


class StopRequest(threading.Event):
    """A stop event that carries its reason: the first `request` wins."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: StopReason | None = None

    def request(self, reason: StopReason) -> None:
        if self.reason is None:
            self.reason = reason
        self.set()

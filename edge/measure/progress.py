"""A small progress bar on stderr: redrawn in place on a terminal, every 10 % otherwise."""

from __future__ import annotations

import sys
import time

_REDRAW_S = 0.2
_BAR_WIDTH = 28


class Progress:
    def __init__(self, total: int | None, label: str, stream=None) -> None:
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = self._last_draw = time.perf_counter()
        self._last_decile = -1
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, step: int = 1) -> None:
        self.done += step
        now = time.perf_counter()
        if self._tty and now - self._last_draw >= _REDRAW_S:
            self._draw("\r")
            self._last_draw = now
        elif not self._tty and self.total:
            decile = 10 * self.done // self.total
            if decile != self._last_decile:
                self._last_decile = decile
                self._draw("")
                self.stream.write("\n")

    def close(self) -> None:
        if self._tty:
            self._draw("\r")
            self.stream.write("\n")
        self.stream.flush()

    def _draw(self, prefix: str) -> None:
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            filled = int(_BAR_WIDTH * min(self.done, self.total) / self.total)
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            text = f"{self.label} [{bar}] {self.done}/{self.total} {rate:.1f}/s"
        else:
            text = f"{self.label} {self.done} {rate:.1f}/s"
        self.stream.write(prefix + text)
        self.stream.flush()

"""Frames done so far, read from the records being written, for the batch's progress bar.

Workers run in other processes (or on other nodes, over the shared `--out`), so the driver
counts the lines each record's frames.jsonl has gained (the log is flushed per frame). Each
file is read from where the last poll stopped, so a poll costs only the new lines.
"""

from __future__ import annotations

import threading
from pathlib import Path

from edge.record.layout import RecordLayout

_POLL_S = 0.5


class FrameWatcher:
    def __init__(self, records: list[str], on_frames) -> None:
        self._logs = {r: RecordLayout(Path(r)).frames_log for r in records}
        self._offsets = {r: 0 for r in records}
        self.counted = {r: 0 for r in records}
        self._on_frames = on_frames
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-watcher", daemon=True)

    def __enter__(self) -> "FrameWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def finished(self, record: str, frames: int) -> None:
        """The input ended with `frames`: count what the polls had not, stop watching it."""
        with self._lock:
            self._logs.pop(record, None)
            missing = frames - self.counted.get(record, 0)
            self.counted[record] = frames
        if missing:
            self._on_frames(missing)

    def _run(self) -> None:
        while not self._stop.wait(_POLL_S):
            with self._lock:
                new = sum(self._poll(record, log) for record, log in list(self._logs.items()))
            if new:
                self._on_frames(new)

    def _poll(self, record: str, log: Path) -> int:
        try:
            with open(log, "rb") as file:
                file.seek(self._offsets[record])
                chunk = file.read()
        except FileNotFoundError:
            return 0
        lines = chunk.count(b"\n")
        # Only whole lines count; a partial last line is read again next time.
        self._offsets[record] += chunk.rfind(b"\n") + 1 if lines else 0
        self.counted[record] += lines
        return lines

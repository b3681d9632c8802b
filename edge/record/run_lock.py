"""The sign that a run is still recording into a folder: a lock its process holds.

The recorder holds an exclusive `flock` on DIR/run.lock (RecordLayout.run_lock) from `begin`
to `finish`, with its PID written in for people. The kernel drops the lock when the process
ends however it ends (kill -9, power loss), so a lock nobody holds means no run, and a
summary.json still saying "running" then means the run died. `rustseg report` asks with
`holder()` before it touches a record, and reports on a live one read-only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from edge.errors import ConfigError


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; ConfigError when another live run holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"--record {self.path.parent}: a run (pid "
                              f"{holder(self.path) or '?'}) is still recording into it") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file, then let go of the lock (a reader that opens the file in
        between finds it unheld, which is true by then)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only or full disk: an unheld lock file says "no run" all the same
        os.close(self._fd)
        self._fd = None


def holder(path: Path) -> int | None:
    """The PID of the live process holding the lock at `path` (0 when it wrote none), or None
    when no process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None  # no lock file (or a link, which no recorder makes): no run
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)

""""This folder is being written by a process that is still alive": one lock file, and who
holds it.

`rustseg batch --out DIR` holds `DIR/batch.lock` for the whole batch, so a second batch on the
same folder is refused at once instead of deleting the first one's records. `rustseg run
--record DIR` holds `DIR/run.lock` (`RecordLayout.run_lock`) from the moment the folder is
claimed until summary.json says how the run ended, so a reader can tell a run still going from
one whose process died (both leave summary.json saying "running").

API:
    FolderLock(path, label, what).acquire() -> the lock, held; raises LockBusy when another
        open file holds it. `label` names the folder in messages (`--out results/`), `what`
        the holder (`rustseg batch`). Also a context manager (`with FolderLock(...):`).
        `release()` removes the file and frees the lock; it is idempotent. `took_over` is the
        dead holder's facts when a lock left behind was taken over, else None.
    lock_holder(path) -> dict | None: who holds the lock at `path` now ({"pid", "host",
        "what", "since"}; {"pid": None} in the instant before the holder writes them), or
        None when nobody does. It never blocks, never creates the file and never takes the
        lock from its holder: safe to call from a reader such as `rustseg report`.
    describe_holder(holder) -> str: the holder in words, for messages.
    LockBusy(RustsegError): exit code 75 (EX_TEMPFAIL, "try again later"); `holder` as above.

How: `fcntl.flock` on the lock file, and the holder's pid, host, what and start time written
into it as JSON (for messages; the lock itself is the kernel's). The kernel frees a flock when
the process holding it dies, however it dies (kill -9, OOM), so a lock left by a dead process
is free: the next holder takes it over and logs the dead holder's pid. A normal release
removes the file. A flock belongs to an open file, not to a process, so two FolderLocks in one
process exclude each other too. On NFS, Linux carries flock as a POSIX byte-range lock that
the server keeps, so nodes of a cluster see each other's locks.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from edge.errors import RustsegError

_log = logging.getLogger(__name__)
_MAX_HOLDER_BYTES = 4096   # the holder's JSON is about 100 bytes


class LockBusy(RustsegError):
    """The folder is in use by another live process (`holder` says which)."""

    exit_code = 75  # sysexits EX_TEMPFAIL: not a bad option, the same command works later

    def __init__(self, message: str, holder: dict) -> None:
        super().__init__(message)
        self.holder = holder


class FolderLock:
    """An exclusive, non-blocking lock on the file `path`; `label` names it in messages
    (`--out results/`)."""

    def __init__(self, path: str | os.PathLike, label: str, what: str) -> None:
        self.path, self.label, self.what = Path(path), label, what
        self.took_over: dict | None = None
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise LockBusy(f"{self.label}: in use by {describe_holder(holder)}; wait for "
                               "it to end or choose another folder", holder) from None
            except BaseException:
                os.close(fd)
                raise
            if _still_named(fd, self.path):
                break
            # The holder released (and removed) the file between our open and our lock: the
            # lock we got is on a file nobody else will look at. Open the path afresh.
            os.close(fd)
        left = _read_holder(fd)
        if left:  # a normal release removes the file: its holder died
            self.took_over = left
            _log.warning("%s: took over the lock left by %s, which is no longer running",
                         self.label, describe_holder(left))
        facts = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                 "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(facts).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            # Removed while still locked: whoever opens the path next makes a new file and
            # does not mistake us for a dead holder.
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def lock_holder(path: str | os.PathLike) -> dict | None:
    """Who holds the lock at `path` now, or None (module docstring)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            # A shared lock conflicts only with the holder's exclusive one, so two readers
            # asking at once do not see each other as the holder.
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or {"pid": None}  # held, its facts not written yet
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # the file is there but nobody holds it: its holder died
    finally:
        os.close(fd)


def describe_holder(holder: dict) -> str:
    """`rustseg batch (pid 4242 on rig-2, since 2026-12-03 10:15:02)`, or what is known of it."""
    if not holder.get("pid"):
        return "another process"
    since = holder.get("since")
    when = time.strftime(", since %Y-%m-%d %H:%M:%S", time.localtime(since)) \
        if isinstance(since, (int, float)) else ""
    return (f"{holder.get('what') or 'another process'} (pid {holder['pid']} on "
            f"{holder.get('host') or 'an unknown host'}{when})")


def _read_holder(fd: int) -> dict:
    """The facts a holder wrote, or {} when there are none (yet) or they are not readable."""
    try:
        facts = json.loads(os.pread(fd, _MAX_HOLDER_BYTES, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return facts if isinstance(facts, dict) else {}


def _still_named(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

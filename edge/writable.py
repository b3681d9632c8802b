"""Checks, made before any work, that a result can be written where the user asked for it.

They raise OSError carrying the operating system's own reason ("Permission denied", "Not a
directory", ...); each caller wraps it in its own error naming the option.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from edge.errors import ConfigError


def make_folder(folder: Path) -> None:
    """mkdir -p. A file standing where the folder should be is reported as "Not a directory";
    mkdir itself would say "File exists", which sends the user looking for the wrong thing."""
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    folder.mkdir(parents=True, exist_ok=True)


def check_writable(path: Path) -> None:
    """Raise OSError unless `path` can be created or written. An existing file is opened for
    append and left as it was; a file created by the probe is removed again."""
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent))
    existed = path.exists()
    if existed and path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    os.close(fd)
    if not existed:
        path.unlink()


def check_option_writable(path: str | os.PathLike | None, option: str) -> None:
    """Before a long eval or bench: ConfigError naming the option and the OS's reason unless
    the result file it names can be written (its folder is created if missing)."""
    if path is None:
        return
    target = Path(path)
    try:
        make_folder(target.parent)
        check_writable(target)
    except OSError as exc:
        raise ConfigError(f"{option} {target}: cannot write ({exc.strerror})") from None


_LOW_DISK_BYTES = 1 << 20   # less than this left free: the disk counts as full


def disk_full(folder: Path) -> bool:
    """Whether the filesystem holding `folder` is (nearly) full. Writers that report no errors
    themselves (OpenCV's VideoWriter) and the end-of-run summary use it to tell "disk full"
    from other failures; an unreadable folder counts as not full."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < _LOW_DISK_BYTES


def write_atomic(path: Path, data: str | bytes, fsync: bool = False) -> None:
    """Replace `path` whole: write a temporary file beside it, then rename it over `path`, so a
    reader (or a run cut short) never sees half a file. Concurrent writers each get their own
    temporary name. The file gets the mode any new file gets here (0666 less the umask,
    typically 0644), not mkstemp's 0600: a record is read by other people and tools.
    `fsync` makes the result survive a power cut (the batch manifest needs that): the data is
    synced before the rename and the folder after it, so the new name itself is on disk."""
    temporary, handle = _create_beside(path)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if fsync:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _create_beside(path: Path) -> tuple[Path, int]:
    """A new temporary file in `path`'s folder, opened for writing. Made with os.open and mode
    0o666 so the kernel applies the umask (reading the umask means setting it, which is not
    thread-safe); O_EXCL with a random name keeps concurrent writers apart, as mkstemp does."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return temporary, os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue  # another writer drew the same name: draw again

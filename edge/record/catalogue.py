"""The record root of a rig: one new record per run, named by its start time, and the list of
what is there (`rustseg records`). Nothing here deletes a record: the inspector decides."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edge.errors import ConfigError, DataError
from edge.record.layout import RecordLayout, flight_stats
from edge.stop_reason import StopReason
from edge.writable import make_folder

_NAME_FORMAT = "%Y-%m-%d_%H-%M-%S"   # sorts by time; no ':' (FAT cards, Windows readers)


def new_record_folder(root: Path, now: float | None = None) -> Path:
    """A folder for a new record under `root`, named by the local start time; a second run in
    the same second (a quick restart) gets `-2`, `-3`, ... The folder is created here, so two
    runs can never pick the same one."""
    try:
        make_folder(root)
    except OSError as exc:
        raise ConfigError(f"--record-root {root}: cannot create the folder "
                          f"({exc.strerror})") from None
    stem = time.strftime(_NAME_FORMAT, time.localtime(time.time() if now is None else now))
    for n in range(1, 1000):
        folder = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(f"--record-root {root}: cannot create {folder.name} "
                              f"({exc.strerror})") from None
        return folder
    raise ConfigError(f"--record-root {root}: a thousand records started in one second?")


@dataclass(frozen=True)
class RecordEntry:
    """One line of `rustseg records`."""

    name: str
    size_bytes: int
    duration_s: float | None
    frames: int | None
    findings: int | None
    ended: str            # how the run ended (summary.json), or why it cannot be said
    video: str            # all / part / none / - (older records say nothing)


def list_records(root: Path) -> list[RecordEntry]:
    """Every record directly under `root`, oldest first (by name, which is the start time)."""
    if not root.is_dir():
        raise DataError(f"record root {root}: no such folder")
    return [_entry(folder) for folder in sorted(root.iterdir())
            if folder.is_dir() and RecordLayout(folder).is_record()]


def _entry(folder: Path) -> RecordEntry:
    layout = RecordLayout(folder)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    try:
        summary = layout.read_summary() or {}
    except DataError:
        summary = {}
    ended = summary.get("ended", "unknown")
    flight = summary.get("flight")
    if ended == StopReason.RUNNING or not flight:
        # Running now, or the process died (power loss): the log still tells the story.
        try:
            flight = flight_stats(layout.read_frames())
        except DataError:
            flight = None
    findings = summary.get("findings")
    if findings is None or ended == StopReason.RUNNING:
        findings = len(layout.read_findings())
    video = (summary.get("video") or {}).get("recorded", "-")
    return RecordEntry(folder.name, size, flight["duration_s"] if flight else None,
                       flight["frames"] if flight else None, findings, ended, video)


def format_records(entries: list[RecordEntry], root: Path) -> str:
    if not entries:
        return f"no records in {root}"
    lines = [f"{'record':<22}{'size':>10}{'duration':>10}{'frames':>8}{'findings':>9}  "
             f"{'video':<6}ended"]
    for e in entries:
        duration = "-" if e.duration_s is None else _duration(e.duration_s)
        frames = "-" if e.frames is None else str(e.frames)
        lines.append(f"{e.name:<22}{_size(e.size_bytes):>10}{duration:>10}{frames:>8}"
                     f"{e.findings if e.findings is not None else '-':>9}  {e.video:<6}{e.ended}")
    total = sum(e.size_bytes for e in entries)
    lines.append(f"{len(entries)} records, {_size(total)} in {root}")
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"

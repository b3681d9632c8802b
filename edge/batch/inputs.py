"""What a batch INPUT names: a video file, an image folder, a glob, or `@list.txt`.

Each expands to `BatchInput`s: one per video, one per folder or glob (its stills are one run).
A path that does not exist, an empty list file or a glob that matches nothing is a one-line
`DataError` naming it, raised before any work starts (a typo should not cost a night).
A path that exists is always taken literally (`DJI [1].mp4` is that file, not a glob that
matches `DJI 1.mp4`); only an argument that is not an existing path is read as a glob. A FIFO,
socket or device is refused: hashing it for the manifest would wait forever.
A file that exists but turns out to be corrupt is not caught here: it fails in its worker and
is recorded there, and the batch goes on.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from edge.data.imageio import IMAGE_SUFFIXES
from edge.errors import DataError
from edge.sources import VIDEO_SUFFIXES, file_problem, is_glob
from edge.sources.telemetry.dji_srt import sidecar_for

_SLUG_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_SLUG_MAX_CHARS = 48
_TRAILING_COMMENT = re.compile(r"\s+#")


@dataclass(frozen=True)
class BatchInput:
    """One unit of work. `uri` is what the source opener reads; `files` what it fingerprints."""

    uri: str
    kind: str                 # "video" | "stills"
    files: tuple[Path, ...]

    @property
    def record_name(self) -> str:
        """The record's folder name: readable, and unique even for two `clip.mp4` in
        different folders (a short hash of the full path)."""
        path = Path(self.uri.rstrip("/"))
        slug = _SLUG_CHARS.sub("_", path.name or "input")[:_SLUG_MAX_CHARS]
        # fsencode: the bytes of the name as on disk, UTF-8 or not
        return f"{slug}-{hashlib.sha1(os.fsencode(self.uri)).hexdigest()[:8]}"


def expand_inputs(args: list[str]) -> list[BatchInput]:
    """Every INPUT argument expanded, in order, without duplicates."""
    if not args:
        raise DataError("rustseg batch: no INPUT given; expected video files, image folders, "
                        "globs or @list.txt")
    found: dict[str, BatchInput] = {}
    for arg in args:
        for item in _expand(arg):
            found.setdefault(item.uri, item)
    return list(found.values())


def _expand(arg: str) -> list[BatchInput]:
    if arg.startswith("@"):
        return _from_list(Path(arg[1:]))
    path = Path(arg).expanduser()
    if not path.exists() and is_glob(arg):
        return _from_glob(arg)
    if path.is_dir():
        return [_folder(path)]
    problem = file_problem(path)  # the same words as `run --source`
    if problem:
        raise DataError(f"input {arg}: {problem}; expected a video file, an image folder, a "
                        "glob or @list.txt")
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return [_video(path.resolve())]
    if suffix in IMAGE_SUFFIXES:
        return [BatchInput(str(path.resolve()), "stills", (path.resolve(),))]
    raise DataError(f"input {arg}: unsupported file type {suffix or '(none)'}; expected a video "
                    f"({', '.join(VIDEO_SUFFIXES)}), an image folder, a glob or @list.txt")


def _from_list(list_path: Path) -> list[BatchInput]:
    try:
        data = list_path.read_bytes()
    except OSError as exc:
        raise DataError(f"input @{list_path}: cannot read ({exc.strerror})") from None
    if b"\0" in data:  # no file name holds a NUL byte: this is not a list of names
        raise DataError(f"input @{list_path}: not a text file (binary data); expected one "
                        "input per line")
    # The names' bytes as they are (a Latin-1 name in the list names a Latin-1 file).
    lines = os.fsdecode(data).splitlines()
    entries = [entry for entry in map(lambda line: _list_entry(line, list_path.parent), lines)
               if entry]
    if not entries:
        raise DataError(f"input @{list_path}: lists no inputs")
    items = []
    for entry in entries:
        if entry.startswith("@"):
            raise DataError(f"input @{list_path}: nested list {entry} is not allowed")
        items += _expand(_beside(list_path.parent, entry))
    return items


def _beside(folder: Path, entry: str) -> str:
    """A list entry as a path or glob: relative entries are relative to the list file, so a
    list travels with its archive. The list's own folder is never read as a glob."""
    if Path(entry).expanduser().is_absolute():
        return entry
    literal = folder / entry
    if literal.exists() or not is_glob(entry):
        return str(literal)
    return str(Path(globlib.escape(str(folder))) / entry)


def _list_entry(line: str, folder: Path) -> str:
    """One line of an @list without its comment: a `#` at the start of the (indented) line or
    after whitespace begins a comment, as in a shell. A line that is an existing path as a
    whole is taken literally, so `clip #3.mp4` still names that file."""
    entry = line.strip()
    if not entry or entry.startswith("#"):
        return ""
    if (folder / Path(entry).expanduser()).exists():  # an absolute entry ignores `folder`
        return entry
    return _TRAILING_COMMENT.split(entry, maxsplit=1)[0].strip()


def _from_glob(pattern: str) -> list[BatchInput]:
    """Videos in a glob are one input each; the stills it matches together are one input."""
    matches = sorted(Path(p).resolve() for p in globlib.glob(str(Path(pattern).expanduser()))
                     if Path(p).is_file())
    videos = [p for p in matches if p.suffix.lower() in VIDEO_SUFFIXES]
    stills = tuple(p for p in matches if p.suffix.lower() in IMAGE_SUFFIXES)
    if not videos and not stills:
        raise DataError(f"input {pattern}: the glob matches no video or image")
    items = [_video(p) for p in videos]
    if stills:
        image_glob = str(Path(pattern).expanduser().absolute())
        items.append(BatchInput(image_glob, "stills", stills))
    return items


def _video(path: Path) -> BatchInput:
    """A video, with its DJI .SRT sidecar among its files when it has one: a changed sidecar
    changes the positions, so the input is redone."""
    sidecar = sidecar_for(path)
    return BatchInput(str(path), "video", (path,) + ((sidecar.resolve(),) if sidecar else ()))


def _folder(path: Path) -> BatchInput:
    stills = tuple(sorted(p.resolve() for p in path.iterdir()
                          if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
    if not stills:
        raise DataError(f"input {path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return BatchInput(str(path.resolve()), "stills", stills)

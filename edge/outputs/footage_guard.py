"""Refuse, before the first frame, a run whose outputs would write over its own source files.

An inspection video or photo is evidence: `--source flight.mp4 --output flight.mp4`, or an
overlay folder equal to the photo folder, must never replace the original.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from edge.errors import ConfigError
from edge.outputs import FrameSink


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)  # also catches hard links and symlinks
    return a.resolve() == b.resolve()


def check_no_overwrite(source_files: Iterable[tuple[Path, str | None]],
                       sinks: Iterable[FrameSink]) -> None:
    """ConfigError naming both paths if a sink would write to a source file.

    `source_files` pairs each input file with the name of the frame it becomes (None when that
    is not known up front, as for the frames of a video)."""
    sinks = list(sinks)
    for source_file, frame_name in source_files:
        for sink in sinks:
            target = sink.writes_to(frame_name)
            if target is not None and _same_file(target, source_file):
                raise ConfigError(f"output {target} would write over the source file "
                                  f"{source_file}; choose another output")
            folder = sink.owned_folder()
            if folder is not None and _inside(source_file, folder):
                raise ConfigError(f"output folder {folder} holds the source file {source_file}"
                                  "; choose a folder apart from the footage")


def _inside(path: Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())

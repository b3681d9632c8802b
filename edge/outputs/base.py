"""What every output is: the `OutputFrame` the loop hands over and the `FrameSink` interface.

Building a sink checks that it can write (and fails at start with the OS's reason) but writes
nothing: `start()` does the first write (the log is truncated there), after the run has checked
with `writes_to` that no output would replace a source file. A sink raises SinkError when it
cannot write; the loop then applies loop.sink_error_policy (drop that sink and go on, or stop
cleanly). A sink that stops on purpose raises OutputStopped: it is dropped and the run goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import SinkError
from edge.outputs.frame_record import FrameRecord


@dataclass
class OutputFrame:
    """What the loop hands every sink for one frame."""

    index: int
    name: str                    # image stem or zero-padded index
    overlay_bgr: np.ndarray      # uint8 [H, W, 3] frame with mask, heatmap and HUD drawn
    mask: np.ndarray             # bool [H, W]
    record: FrameRecord          # what the loop says about this frame (the log line)
    frame_bgr: np.ndarray | None = None          # uint8 [H, W, 3] the frame as captured
    notices: tuple[str, ...] = ()  # what the run wants the operator to know (live page, STATUS)


class FrameSink(ABC):
    """One output. What the run does with a sink it reads from these attributes, never from
    the sink's class or name."""

    name = "sink"
    wants_stop = False           # a sink may ask the loop to stop (display window closed)
    # An output of the run: the report tallies the frames it kept, and its failure is handled
    # by loop.sink_error_policy. A view that keeps nothing (the terminal's per-frame line)
    # sets False: it is not tallied, and its failure (its reader gone) ends the run.
    is_output = True
    url: str | None = None       # a page a person opens to watch the run, announced at start
    warnings: tuple[str, ...] = ()  # what the user must be told at start (an open page)
    notes: tuple[str, ...] = ()     # what the user may want to know at start (an SDP file)

    def __enter__(self) -> "FrameSink":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Acquire what writes files (called once the run knows no source gets overwritten)."""

    def writes_to(self, frame_name: str | None) -> Path | None:
        """The file this sink writes for the frame named `frame_name` (None: a frame whose name
        is not known up front), or None when it writes no file."""
        return None

    def owned_folder(self) -> Path | None:
        """A folder this sink writes files of its own choosing into (a run record), so no
        source file may lie inside it; None for sinks that name each file via `writes_to`."""
        return None

    @abstractmethod
    def write(self, frame: OutputFrame) -> None: ...

    def close(self) -> None:
        """Flush and release; safe to call twice."""


def write_image(path: Path, image: np.ndarray, params: list) -> None:
    """Encode by `path`'s suffix and write; SinkError (one line) when that fails."""
    ok, encoded = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise SinkError(f"output {path}: could not encode the image")
    try:
        encoded.tofile(str(path))
    except OSError as exc:
        raise SinkError(f"output {path}: write failed ({exc.strerror or exc})") from None

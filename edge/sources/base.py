"""What every frame source is: a `Frame`, the `FrameSource` interface, and the frame-size check.

The sources themselves live beside this module (files, live, synthetic); `open_source` in
the package turns a URI into one of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import SourceError

MAX_SIDE_PX = 16384          # larger frames are refused rather than exhausting memory


@dataclass(frozen=True)
class Frame:
    index: int                # 0-based position in the source
    image: np.ndarray         # frame_bgr uint8 [H, W, 3]
    captured_at: float        # time.time() when it was captured or read
    name: str                 # image stem for image sources, else the zero-padded index
    media_time_s: float | None = None   # video files: the frame's time in the video (s)


class FrameSource(ABC):
    """Context manager; `read()` gives the next Frame, or None when a live source has nothing
    new yet; `ended` turns True when the stream is over (files end, cameras do not)."""

    live = False
    stills = False    # True: each frame is its own photo (no time order, time for tiles;
                      # nothing is carried from one to the next)

    def __init__(self) -> None:
        self.ended = False
        self.dropped = 0          # frames captured but never handed out (live sources only)
        self.skipped = 0          # unreadable inputs passed over (image folders)
        self.warnings: list[str] = []       # why each one was skipped, one line each
        self.expected_frames: int | None = None  # what the source announces (None: unknown)
        self.latest_index = -1    # newest frame captured so far (for lag measurement)
        self.warnings: list[str] = []  # inputs passed over, one line each (image folders)

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def read(self) -> Frame | None: ...

    def input_files(self) -> list[tuple[Path, str | None]]:
        """The files this source reads, each with the name of the frame it becomes (None when
        not known up front); the run checks that no output writes over them."""
        return []

    def close(self) -> None:
        self.ended = True


def checked_frame(image: np.ndarray, describe: str) -> np.ndarray:
    height, width = image.shape[:2]
    if height < 1 or width < 1 or max(height, width) > MAX_SIDE_PX:
        raise SourceError(f"source {describe}: frame of {width}x{height} px is outside "
                          f"1..{MAX_SIDE_PX} px")
    return image


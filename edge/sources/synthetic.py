"""`synthetic://`: the built-in scene generator's moving-camera clip, read frame by frame or
paced like a live camera (with `fps`)."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs

from edge.data.synthetic import iter_clip
from edge.errors import SourceError
from edge.sources.base import MAX_SIDE_PX, Frame, FrameSource
from edge.sources.live import LiveSource

_SYNTHETIC_KEYS = {"width": int, "height": int, "frames": int, "seed": int, "fps": float}


class SyntheticClipSource(FrameSource):
    """The scene generator's moving-camera clip; `frames=0` repeats it without end."""

    def __init__(self, width: int, height: int, frames: int, seed: int) -> None:
        super().__init__()
        self.frames = frames
        self._make = lambda: iter_clip(width, height, frames or 600, seed)
        self._clip = self._make()
        self.count = 0

    def read(self) -> Frame | None:
        try:
            image, _ = next(self._clip)
        except StopIteration:
            if self.frames:
                self.ended = True
                return None
            self._clip = self._make()
            image, _ = next(self._clip)
        index = self.count
        self.count += 1
        self.latest_index = index
        return Frame(index, image, time.time(), f"{index:06d}")


class PacedSyntheticSource(LiveSource):
    """The synthetic clip delivered like a camera at `fps` (for live-behaviour tests/benches)."""

    def __init__(self, width: int, height: int, frames: int, seed: int, fps: float) -> None:
        self._args = (width, height, frames, seed)
        self.period_s = 1.0 / fps
        super().__init__(f"synthetic://?fps={fps:g}", 1.0, 0.1)

    def open_device(self):
        return _PacedClip(SyntheticClipSource(*self._args), self.period_s, self._stop)

    def finished(self) -> bool:
        device = self._device
        return device is not None and device.clip.ended  # frames=N was given and delivered


class _PacedClip:
    def __init__(self, clip: SyntheticClipSource, period_s: float, stop: threading.Event):
        self.clip, self.period_s, self.stop = clip, period_s, stop
        self.next_at = time.monotonic()

    def read(self):
        self.stop.wait(max(0.0, self.next_at - time.monotonic()))
        self.next_at = max(self.next_at + self.period_s, time.monotonic() - self.period_s)
        frame = self.clip.read()
        return (frame is not None), (frame.image if frame else None)

    def release(self) -> None:
        self.clip.close()


def open_synthetic(uri: str, parsed) -> FrameSource:
    params = {"width": 640, "height": 480, "frames": 600, "seed": 1, "fps": 0.0}
    for key, values in parse_qs(parsed.query, keep_blank_values=True).items():
        if key not in _SYNTHETIC_KEYS:
            raise SourceError(f"source {uri!r}: unknown parameter {key!r}; expected "
                              f"{', '.join(_SYNTHETIC_KEYS)}")
        try:
            params[key] = _SYNTHETIC_KEYS[key](values[-1])
        except ValueError:
            raise SourceError(f"source {uri!r}: {key}={values[-1]!r} is not a number") from None
    if not (1 <= params["width"] <= MAX_SIDE_PX and 1 <= params["height"] <= MAX_SIDE_PX):
        raise SourceError(f"source {uri!r}: width and height must be 1..{MAX_SIDE_PX}")
    if params["frames"] < 0 or params["fps"] < 0:
        raise SourceError(f"source {uri!r}: frames and fps must be >= 0")
    size = (params["width"], params["height"], params["frames"], params["seed"])
    if params["fps"]:
        return PacedSyntheticSource(*size, params["fps"])
    return SyntheticClipSource(*size)


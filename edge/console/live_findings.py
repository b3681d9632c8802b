"""The live console's strip of recent findings, kept in memory and bounded.

The rule: the run is cut into windows of _WINDOW_S seconds; a window's finding is its frame
with the largest corroded area, when at least _MIN_AREA of that frame is corroded. The strip
keeps the last _KEEP findings. So a long stretch of rust gives one finding per window, not one
per frame, and memory stays at _KEEP + 1 overlays whatever the run's length.

`offer` runs on the loop's thread and only compares numbers and keeps a reference to the
overlay (the loop draws a new array for every frame); the JPEGs are encoded when a viewer asks,
on the viewer's thread, and cached.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

_WINDOW_S = 3.0          # at most one finding per this many seconds of the run
_MIN_AREA = 0.01         # share of the frame that must be corroded to count as a finding
_KEEP = 8                # findings shown in the strip
_THUMB_WIDTH_PX = 240    # width of a thumbnail; "full" serves the overlay as drawn
SIZES = ("thumb", "full")


@dataclass
class Finding:
    id: int                       # the frame index: unique within a run
    name: str
    corroded_fraction: float
    score: float
    found_at: float               # perf_counter seconds
    overlay_bgr: np.ndarray
    jpegs: dict[str, bytes] = field(default_factory=dict)

    def summary(self, now: float) -> dict:
        return {"id": self.id, "name": self.name,
                "corroded_fraction": round(self.corroded_fraction, 5),
                "score": round(self.score, 4), "age_s": round(now - self.found_at, 1)}


class RecentFindings:
    def __init__(self, jpeg_quality: int) -> None:
        self.jpeg_quality = jpeg_quality
        self._kept: deque[Finding] = deque(maxlen=_KEEP)
        self._candidate: Finding | None = None   # best frame of the window still open
        self._window_start: float | None = None
        self._lock = threading.Lock()

    def offer(self, record: dict, overlay_bgr: np.ndarray) -> None:
        """Consider one output frame (its loop record and overlay)."""
        now = time.perf_counter()
        area = float(record.get("corroded_fraction") or 0.0)
        with self._lock:
            if self._window_start is None or now - self._window_start >= _WINDOW_S:
                self._close_window()
                self._window_start = now
            if area >= _MIN_AREA and record.get("valid", True) and \
                    (self._candidate is None or area > self._candidate.corroded_fraction):
                self._candidate = Finding(int(record.get("index", 0)), str(record.get("name", "")),
                                          area, float(record.get("score") or 0.0), now,
                                          overlay_bgr)

    def summaries(self) -> list[dict]:
        """Newest first."""
        now = time.perf_counter()
        return [finding.summary(now) for finding in reversed(self._shown())]

    def jpeg(self, finding_id: int, size: str) -> bytes | None:
        """The finding's overlay as JPEG (`size` in SIZES), or None when it is no longer kept."""
        finding = next((f for f in self._shown() if f.id == finding_id), None)
        if finding is None:
            return None
        if size not in finding.jpegs:
            image = finding.overlay_bgr
            if size == "thumb" and image.shape[1] > _THUMB_WIDTH_PX:
                height = max(1, round(image.shape[0] * _THUMB_WIDTH_PX / image.shape[1]))
                image = cv2.resize(image, (_THUMB_WIDTH_PX, height), interpolation=cv2.INTER_AREA)
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY,
                                                       self.jpeg_quality])
            if not ok:
                return None
            finding.jpegs[size] = encoded.tobytes()
        return finding.jpegs[size]

    def _shown(self) -> list[Finding]:
        """The findings of closed windows only: the open window's best frame may still be
        replaced by a larger one, and a viewer who clicked its thumbnail would then get a 404.
        A window whose time is up is closed here too, so the last one of a run that has
        stopped sending frames is shown."""
        with self._lock:
            if self._window_start is not None and \
                    time.perf_counter() - self._window_start >= _WINDOW_S:
                self._close_window()
                self._window_start = None
            return list(self._kept)

    def _close_window(self) -> None:
        if self._candidate is not None:
            self._kept.append(self._candidate)
            self._candidate = None

"""`full` without its lag: the full CRF runs in the background, its mask follows the camera.

The full dense CRF costs several frames of a 30 FPS camera. Run in line, every overlay would
show a frame that old. Here the refine stage instead hands the newest frame to the refine
worker whenever the worker is free, and never waits for it:

- each frame's mask is the last full mask, carried onto this frame by the camera motion of every
  frame since the one it was refined on (edge/method/motion.py), so it is drawn aligned with the
  frame it is drawn on;
- a full mask that arrives is first carried over the frames that passed while it was refined;
- where there is no full mask yet, where the motion chain broke since (a cut, a drop,
  unreliable flow), or where the camera has moved more than `carry.full_max_shift` of the frame
  width since its frame, the frame gets the light path, refined here on this frame.

It is used where the source's frames follow one another, evidence is carried
(`carry.enabled`) and there is a refine worker: on live sources (`carry.full_without_lag:
live`), or on every such source (`always`). Elsewhere it is the plain full path. `auto` learns
its cost per frame like any path's: what the refine stage spends on it, the CRF running apart.
"""

from __future__ import annotations

import numpy as np

from edge.config import CarryConfig
from edge.method.refine.base import RefineResult, Refiner


class LaglessFullRefiner(Refiner):
    name = "full"
    holds_gil = False   # the CRF runs in the worker; this part only warps and hands over

    def __init__(self, settings, full: Refiner, light: Refiner, worker,
                 carry: CarryConfig) -> None:
        super().__init__(settings)
        self.full, self.light, self.worker, self.carry = full, light, worker, carry
        self.active = False
        self._index: int | None = None
        self._held: np.ndarray | None = None     # float32 [H, W] last full mask, on this frame
        self._held_from: int | None = None       # the frame it was refined on
        self._held_shift = 0.0                   # camera motion since then, share of the width
        self._pending: int | None = None         # the frame the worker is refining
        self._pending_moves: list | None = []    # motions since it; None: the chain broke

    def start_source(self, live: bool, consecutive: bool) -> None:
        mode = self.carry.full_without_lag
        self.active = consecutive and (mode == "always" or (mode == "live" and live))
        self._held = self._held_from = self._pending = None
        self._pending_moves = []

    def follow_motion(self, index: int | None, motion) -> None:
        self._index = index
        if motion is None:  # nothing earlier may be carried onto this frame
            self._held = self._held_from = None
            self._pending_moves = None
            return
        if self._held is not None:
            self._held = motion.moved(self._held)
            self._held_shift += motion.shift
        if self._pending_moves is not None:
            self._pending_moves.append(motion)

    def refine_clean(self, evidence01: np.ndarray, frame_bgr: np.ndarray) -> RefineResult:
        if not self.active or self._index is None:
            return self.full.refine_clean(evidence01, frame_bgr)
        self._take_finished(frame_bgr.shape[:2])
        if not self.worker.busy:
            self.worker.submit(self.full.name, evidence01, frame_bgr)
            self._pending, self._pending_moves = self._index, []
        if self._held is not None and self._held_shift <= self.carry.full_max_shift:
            return RefineResult(self._held > 0.5, self.full.name, self._held_from)
        return self.light.refine_clean(evidence01, frame_bgr)

    def _take_finished(self, frame_hw: tuple[int, int]) -> None:
        """A full mask the worker finished becomes the held one, carried up to this frame."""
        finished = self.worker.collect()
        if finished is None:
            return
        moves, self._pending_moves = self._pending_moves, []
        if moves is None or finished.mask.shape != tuple(frame_hw):
            return  # the chain broke while it was refined: it cannot be placed on this frame
        held = finished.mask.astype(np.float32)
        for motion in moves:
            held = motion.moved(held)
        self._held, self._held_from = held, self._pending
        self._held_shift = sum(motion.shift for motion in moves)

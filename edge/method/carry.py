"""Evidence carried across the frames of a video or live source (DESIGN.md, "Over time").

Each frame's evidence (the model's `seg`, else its CAM) is blended with the previous frame's
blended evidence, warped onto the new frame by the measured camera motion:

    evidence_t = (1 - weight) * new_t + weight * warp(evidence_t-1)   where the point was in view
    evidence_t = new_t                                                elsewhere

so noise that comes and goes between frames averages out while rust that moves with the camera
stays put. This happens before refinement, so every path gains. Nothing is carried (the chain
starts again from the new evidence) at the first frame, after more than `max_gap_frames` dropped
frames (the indices tell; a live source keeping only its newest frame skips a frame or two as a
matter of course, and the flow is measured between the frames shown, so a short gap is checked
like any step), at a scene cut and where the flow is unreliable (edge/method/motion.py), and
never between stills: their frames carry no index here.

The mask gate gets hysteresis along the same chain: once open, it stays open until the evidence
has been too low for `gate_off_after` frames in a row, so a single weak frame does not blink
the mask off while rust is in plain view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.config import CarryConfig
from edge.method.motion import Motion, MotionEstimator

START, STILL, DROP = "start", "still", "drop"   # reasons a chain starts again (besides motion's)


@dataclass(frozen=True)
class CarryStep:
    """One frame's evidence after carrying, and where it came from."""

    evidence01: np.ndarray      # float32 [h, w], the blend (or the new evidence on a reset)
    carried_from: int | None    # index of the frame whose evidence was carried in, or None
    reset: str | None           # why nothing was carried (start, still, drop, scene cut, ...)
    motion: Motion | None       # the motion from the previous frame (None on start/still/drop)


class GateHold:
    """Hysteresis for the mask gate: on at once, off only after `off_after` low frames in a row."""

    def __init__(self, off_after: int) -> None:
        self.off_after = off_after
        self.is_open = False
        self.low_frames = 0

    def update(self, opens: bool, continuing: bool) -> bool:
        """The gate's decision for this frame, given the plain gate's `opens`; `continuing` is
        False where the chain started again (a cut, a drop, a still), which forgets the past."""
        if not continuing:
            self.is_open, self.low_frames = False, 0
        if opens:
            self.is_open, self.low_frames = True, 0
        elif self.is_open:
            self.low_frames += 1
            if self.low_frames >= self.off_after:
                self.is_open, self.low_frames = False, 0
        return self.is_open


class EvidenceCarrier:
    """The chain of blended evidence of one source, fed frame by frame in order."""

    def __init__(self, settings: CarryConfig) -> None:
        self.settings = settings
        self.motion = MotionEstimator(settings)
        self.gate = GateHold(settings.gate_off_after)
        self._evidence: np.ndarray | None = None
        self._index: int | None = None

    def step(self, index: int | None, frame_bgr: np.ndarray,
             evidence01: np.ndarray) -> CarryStep:
        """`index` is the frame's position in its source, or None for a still."""
        new = np.asarray(evidence01, np.float32)
        reset, motion = self._continuity(index, frame_bgr)
        previous, previous_index = self._evidence, self._index
        self._index = index
        if reset is None and previous is not None and previous.shape == new.shape:
            carried, valid = motion.warp(previous)
            weight = self.settings.weight
            blended = np.where(valid, (1.0 - weight) * new + weight * carried, new)
            self._evidence = blended.astype(np.float32)
            return CarryStep(self._evidence, previous_index, None, motion)
        self._evidence = None if index is None else new
        return CarryStep(new, None, reset or START, motion if reset is None else None)

    def _continuity(self, index: int | None, frame_bgr: np.ndarray
                    ) -> tuple[str | None, Motion | None]:
        """(why the chain starts again or None, the motion from the previous frame)."""
        if index is None:
            self.motion.forget()
            return STILL, None
        if self._index is None:
            self.motion.forget()
            self.motion.estimate(frame_bgr)
            return START, None
        if not 0 < index - self._index <= 1 + self.settings.max_gap_frames:
            self.motion.forget()
            self.motion.estimate(frame_bgr)
            return DROP, None
        motion = self.motion.estimate(frame_bgr)
        if motion is None:  # the frame size changed
            return START, None
        return motion.unreliable, motion

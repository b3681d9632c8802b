"""`full`: the dense CRF over the whole (reduced) frame, seeded by the CAM probability."""

from __future__ import annotations

import numpy as np

from edge.method.refine.base import (RefineResult, Refiner, foreground_probability,
                              probability_to_mask, resize_cam, resize_frame, working_size)
from edge.method.refine.crf import crf_foreground, require_densecrf


class FullCrfRefiner(Refiner):
    name = "full"
    holds_gil = True   # pydensecrf keeps the GIL for the whole inference

    def __init__(self, settings, target_fps: float = 0.0) -> None:
        super().__init__(settings, target_fps)
        require_densecrf(settings.full)

    def refine_clean(self, evidence01: np.ndarray, frame_bgr: np.ndarray) -> RefineResult:
        crf = self.settings.full
        size = working_size(frame_bgr.shape[:2], crf.scale_px)
        small = resize_frame(frame_bgr, size)
        prior = foreground_probability(resize_cam(evidence01, size), small, crf)
        posterior = crf_foreground(small, prior, crf)
        return RefineResult(probability_to_mask(posterior, frame_bgr.shape[:2]), self.name)

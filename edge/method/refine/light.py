"""`light`: k-means colour clusters vetted by the CAM, then a short dense CRF, all at low res.

The RustSEG paper's real-time alternative to the full CRF. Colour clustering finds regions of
like appearance cheaply; the CAM says which of them hold the heat:
- a cluster whose mean CAM is >= light_sure_fg is sure rust (where the CAM is not cold),
- a cluster whose mean CAM is <= light_sure_bg is sure background,
- the rest keep the CAM's own probability and the short CRF settles them by colour and
  proximity.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.method.refine.base import (RefineResult, Refiner, foreground_probability,
                              probability_to_mask, resize_cam, resize_frame, working_size)
from edge.method.refine.crf import crf_foreground, require_densecrf

_COLOUR_CONVERSIONS = {"lab": cv2.COLOR_BGR2LAB, "hsv": cv2.COLOR_BGR2HSV_FULL, "bgr": None}
_KMEANS_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 8, 1.0)
_KMEANS_SEED = 12345  # fixed so the same frame always gives the same clusters


def colour_clusters(frame_bgr: np.ndarray, clusters: int, colour_space: str) -> np.ndarray:
    """k-means cluster index of every pixel, int32 [h, w] (cv2.kmeans, k-means++ seeding)."""
    conversion = _COLOUR_CONVERSIONS[colour_space]
    colours = frame_bgr if conversion is None else cv2.cvtColor(frame_bgr, conversion)
    samples = colours.reshape(-1, 3).astype(np.float32)
    k = min(clusters, len(samples))
    if k < 2:
        return np.zeros(frame_bgr.shape[:2], np.int32)
    cv2.setRNGSeed(_KMEANS_SEED)
    _, labels, _ = cv2.kmeans(samples, k, None, _KMEANS_CRITERIA, 1, cv2.KMEANS_PP_CENTERS)
    return labels.reshape(frame_bgr.shape[:2])


class LightRefiner(Refiner):
    name = "light"
    holds_gil = True   # pydensecrf keeps the GIL for the whole inference

    def __init__(self, settings, target_fps: float = 0.0) -> None:
        super().__init__(settings, target_fps)
        require_densecrf(settings.light)

    def refine_clean(self, evidence01: np.ndarray, frame_bgr: np.ndarray) -> RefineResult:
        s = self.settings
        size = working_size(frame_bgr.shape[:2], s.light.scale_px)
        small = resize_frame(frame_bgr, size)
        cam = resize_cam(evidence01, size)
        prior = self.seeded_prior(cam, small, colour_clusters(small, s.light_clusters,
                                                              s.light_colour_space))
        prior = crf_foreground(small, prior, s.light)
        return RefineResult(probability_to_mask(prior, frame_bgr.shape[:2]), self.name)

    def seeded_prior(self, cam: np.ndarray, small_bgr: np.ndarray,
                     labels: np.ndarray) -> np.ndarray:
        """P(corrosion) per pixel: the CAM's, overridden in clusters the CAM vouches for."""
        s = self.settings
        prior = foreground_probability(cam, small_bgr, s.light)
        count = int(labels.max()) + 1
        sizes = np.bincount(labels.ravel(), minlength=count)
        heat = np.bincount(labels.ravel(), weights=cam.ravel(), minlength=count) \
            / np.maximum(sizes, 1)
        sure_fg = (heat >= s.light_sure_fg)[labels] & (cam > s.light_sure_bg)
        sure_bg = (heat <= s.light_sure_bg)[labels]
        prior = np.where(sure_fg, np.maximum(prior, s.light.fg_ceiling), prior)
        prior = np.where(sure_bg, np.minimum(prior, s.light.fg_floor), prior)
        return prior.astype(np.float32)

"""The dense CRF (pydensecrf2, imported as `pydensecrf`) over two or more labels.

Unary: -log P of each label. Pairwise: a Gaussian smoothness kernel (sxy, compat) and a
bilateral appearance kernel (sxy, srgb, compat) on the RGB image, as in Kraehenbuehl & Koltun.
The cost grows with pixel count, so callers run it at a reduced scale.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.config import CrfSettings
from edge.errors import MissingDependencyError

_EPS = 1e-6

try:
    import pydensecrf.densecrf as _densecrf
except ImportError:  # reported when a CRF path is actually built, not at import
    _densecrf = None


def require_densecrf(settings: CrfSettings | None = None) -> None:
    """MissingDependencyError unless pydensecrf is importable (or `settings` runs no CRF)."""
    if settings is not None and not settings.iterations:
        return
    if _densecrf is None:
        raise MissingDependencyError("the light/full refine paths need pydensecrf2: "
                                     "pip install pydensecrf2 (or use --refine none)")


def crf_foreground(frame_bgr: np.ndarray, prob_fg: np.ndarray,
                   settings: CrfSettings) -> np.ndarray:
    """Mean-field posterior P(corrosion), float32 [h, w], for a frame and prior of equal size.

    With `settings.iterations == 0` there is no CRF: the prior is returned as it is."""
    if not settings.iterations:
        return prob_fg
    return crf_posteriors(frame_bgr, np.stack([1 - prob_fg, prob_fg]), settings)[1]


def crf_posteriors(frame_bgr: np.ndarray, priors: np.ndarray, settings: CrfSettings
                   ) -> np.ndarray:
    """Mean-field posteriors float32 [L, h, w] of L labels whose priors [L, h, w] (summing to 1
    per pixel) are given at the frame's size. Two labels serve the refine paths; the states
    teacher (converter/state_teacher.py) settles background, Fair, Poor and Severe at once."""
    require_densecrf()
    labels, height, width = priors.shape
    priors = np.clip(priors, _EPS, 1 - _EPS).astype(np.float32)
    unary = -np.log(priors.reshape(labels, -1))
    crf = _densecrf.DenseCRF2D(width, height, labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, np.float32))
    crf.addPairwiseGaussian(sxy=settings.gauss_sxy, compat=settings.gauss_compat)
    rgb = np.ascontiguousarray(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
    crf.addPairwiseBilateral(sxy=settings.bilateral_sxy, srgb=settings.bilateral_srgb,
                             rgbim=rgb, compat=settings.bilateral_compat)
    q = np.asarray(crf.inference(settings.iterations), np.float32)
    return q.reshape(labels, height, width)

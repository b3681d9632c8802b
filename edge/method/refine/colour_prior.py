"""How rust-coloured each pixel is: a soft score in [0, 1] from hue, saturation and value.

Corrosion products are orange to dark brown (OpenCV hue ~0-25 of 180), clearly saturated and
neither black nor blown out. A hard HSV threshold of that kind scores pooled IoU 0.357 on
vt_corrosion on its own; the soft version below ramps each condition linearly instead of
cutting, so it can be blended with the CAM (refine.colour_prior_weight; 0 = CAM only, as in
the RustSEG paper). It knows nothing about red paint; the CAM is what argues against that.
"""

from __future__ import annotations

import cv2
import numpy as np

_RUST_HUE = 10.0          # OpenCV hue (0..180) at the centre of the rust band
_HUE_FULL = 10.0          # within this hue distance: full score
_HUE_FADE = 15.0          # ... fading to 0 over this much more
_SAT_START, _SAT_FULL = 40.0, 120.0
_VAL_DARK, _VAL_DARK_FULL = 25.0, 55.0
_VAL_BRIGHT_FULL, _VAL_BRIGHT = 205.0, 245.0


def rust_colour_score(frame_bgr: np.ndarray) -> np.ndarray:
    """float32 [H, W] in [0, 1]: 1 for clearly rust-coloured pixels, 0 for grey/blue/green."""
    hsv = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2HSV).astype(np.float32)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    distance = np.abs(hue - _RUST_HUE)
    distance = np.minimum(distance, 180.0 - distance)  # the hue circle wraps at red
    hue_score = np.clip(1.0 - (distance - _HUE_FULL) / _HUE_FADE, 0.0, 1.0)
    sat_score = np.clip((sat - _SAT_START) / (_SAT_FULL - _SAT_START), 0.0, 1.0)
    val_score = (np.clip((val - _VAL_DARK) / (_VAL_DARK_FULL - _VAL_DARK), 0.0, 1.0) *
                 np.clip((_VAL_BRIGHT - val) / (_VAL_BRIGHT - _VAL_BRIGHT_FULL), 0.0, 1.0))
    return hue_score * sat_score * val_score

"""Tiled inference for stills: the full frame plus overlapping half-size crops.

A photo survey has time per photo that live video has not. The model reads the whole frame
and a GRID x GRID set of half-size crops (their corners spread evenly, so neighbours overlap);
each crop's `seg` and `state` are pasted back in place on a canvas twice as fine as the
model's own grid and averaged with the full frame's. Each crop sees its part of the steel at
twice the resolution, which sharpens the evidence (DESIGN.md, "A measured hint for stills").
Averaging keeps the state channels in order: a mean of ordered triples is ordered.

The score stays the full frame's: it answers "does this photo show corrosion", which a crop
cannot answer for the whole.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.method.model import CorrosionModel, Prediction


def crop_boxes(height: int, width: int, grid: int) -> list[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) of GRID x GRID half-size crops spread evenly over the frame."""
    crop_h, crop_w = height // 2, width // 2
    starts_y = np.linspace(0, height - crop_h, grid).round().astype(int)
    starts_x = np.linspace(0, width - crop_w, grid).round().astype(int)
    return [(int(y), int(x), int(y) + crop_h, int(x) + crop_w)
            for y in starts_y for x in starts_x]


def tiled_prediction(model: CorrosionModel, frame_bgr: np.ndarray, grid: int) -> Prediction:
    """The full frame's prediction with `seg` and `state` fused from GRID x GRID crops.

    Models without `seg` (contract v1) get the full frame's prediction unchanged: their CAM
    is an explanation of the score, not a map to average across crops."""
    full = model.predict(frame_bgr)
    if full.seg01 is None or grid < 1 or not full.valid:
        return full
    height, width = frame_bgr.shape[:2]
    has_state = full.state is not None

    def maps(prediction: Prediction) -> np.ndarray:
        """seg and, for v3 models, the state channels stacked: [h, w, 1 or 4]."""
        return np.concatenate([prediction.seg01[..., None]]
                              + ([prediction.state] if has_state else []), axis=-1)

    crops = []
    for box in crop_boxes(height, width, grid):
        y0, x0, y1, x1 = box
        crop = model.predict(frame_bgr[y0:y1, x0:x1])
        if crop.valid:                    # a crop the model failed on adds nothing
            crops.append((box, maps(crop)))
    fused = fuse_crops(maps(full), crops, (height, width))
    return Prediction(full.score, full.cam01, valid=True, seg01=fused[..., 0],
                      state=fused[..., 1:] if has_state else None)


def fuse_crops(full: np.ndarray, crops: list[tuple[tuple[int, int, int, int], np.ndarray]],
               frame_hw: tuple[int, int]) -> np.ndarray:
    """The full frame's maps [h, w, c] and each crop's maps, pasted back in place on a canvas
    twice as fine and averaged: float32 [2h, 2w, c]. Crops are (box in frame px, maps).

    One fusion for the device's stills and the states teacher (converter/state_teacher.py),
    so the teacher's views are fused exactly as the device fuses them."""
    height, width = frame_hw
    canvas_hw = (2 * full.shape[0], 2 * full.shape[1])
    total = _resized(full, canvas_hw)
    weight = np.ones((*canvas_hw, 1), np.float32)
    for (y0, x0, y1, x1), maps in crops:
        # The crop's box on the canvas, rounded outward so neighbouring boxes meet.
        top, left = y0 * canvas_hw[0] // height, x0 * canvas_hw[1] // width
        bottom = -(-y1 * canvas_hw[0] // height)
        right = -(-x1 * canvas_hw[1] // width)
        total[top:bottom, left:right] += _resized(maps, (bottom - top, right - left))
        weight[top:bottom, left:right] += 1.0
    return total / weight


def _resized(maps: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """float32 [h, w, c] -> [H, W, c], bilinear (probabilities are smooth)."""
    out = cv2.resize(np.ascontiguousarray(maps, np.float32), (size_hw[1], size_hw[0]),
                     interpolation=cv2.INTER_LINEAR)
    return out.reshape(*size_hw, maps.shape[-1])

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
    canvas_hw = (2 * full.seg01.shape[0], 2 * full.seg01.shape[1])
    layers = {"seg": full.seg01[..., None]}
    if full.state is not None:
        layers["state"] = full.state
    total = {name: _resized(value, canvas_hw) for name, value in layers.items()}
    weight = np.ones((*canvas_hw, 1), np.float32)
    for y0, x0, y1, x1 in crop_boxes(height, width, grid):
        crop = model.predict(frame_bgr[y0:y1, x0:x1])
        if not crop.valid:
            continue                      # a crop the model failed on adds nothing
        # The crop's box on the canvas, rounded outward so neighbouring boxes meet.
        top, left = y0 * canvas_hw[0] // height, x0 * canvas_hw[1] // width
        bottom = -(-y1 * canvas_hw[0] // height)
        right = -(-x1 * canvas_hw[1] // width)
        box_hw = (bottom - top, right - left)
        total["seg"][top:bottom, left:right] += _resized(crop.seg01[..., None], box_hw)
        if "state" in total:
            total["state"][top:bottom, left:right] += _resized(crop.state, box_hw)
        weight[top:bottom, left:right] += 1.0
    fused = {name: value / weight for name, value in total.items()}
    return Prediction(full.score, full.cam01, valid=True, seg01=fused["seg"][..., 0],
                      state=fused.get("state"))


def _resized(maps: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """float32 [h, w, c] -> [H, W, c], bilinear (probabilities are smooth)."""
    out = cv2.resize(np.ascontiguousarray(maps, np.float32), (size_hw[1], size_hw[0]),
                     interpolation=cv2.INTER_LINEAR)
    return out.reshape(*size_hw, maps.shape[-1])

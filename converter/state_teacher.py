"""The states teacher: per-pixel condition-state pseudo labels from a tag-trained head.

The v2 recipe for the binary mask (converter/teacher.py) turns a coarse localiser into pixel
pseudo labels by fusing many views and settling them with a dense CRF on the photo's colours,
then distils them into the student. This module does the same for the condition states:

1. **The localiser** is the state head learnt from tile tags alone (converter/states.py, round
   one), with the model's own `seg` map saying where the corrosion is.
2. **Multi-view fusion.** The whole photo and a 3x3 grid of half-size crops, each also
   mirrored, fused in place exactly as the device fuses stills (edge/method/tiles.fuse_crops):
   the crops see the steel at twice the resolution, so the fused map is about twice as fine.
3. **Calibration at the chosen thresholds.** The head's P(>= Poor) and P(>= Severe) are not
   calibrated probabilities; the device compares them with thresholds chosen on the check
   photos. A logistic around each threshold (logit(p) - logit(t), times a sharpness) puts the
   CRF's even odds exactly where the device's decision is.
4. **A four-label dense CRF** (background, Fair, Poor, Severe) on the photo's colours: P(bg) =
   1 - seg, and the corroded share is split by the calibrated state probabilities.
5. **Tags bound the labels.** No pixel is labelled worse than the tag of any tile that holds
   it: an inspector said that tile's worst state, and the teacher may not contradict it.
6. **An ignore band.** Pixels whose CRF posterior is unsure are left out of the loss.

The student is a fresh state head trained on these labels (dense, per cell) together with the
tile tags (multiple instances), so the tags still have the last word where the teacher is
silent. No pixel of an expert mask is ever a target: only the tags derived from them, as in
round one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import keras
import numpy as np

from converter.student import SEG_LAYER, targets_at_stride
from converter.teacher import IGNORE
from edge.config import CrfSettings
from edge.data.imageio import read_image_bgr, read_state_mask
from edge.method.refine.crf import crf_posteriors
from edge.method.states import STATE_NAMES, StateThresholds
from edge.method.tiles import crop_boxes, fuse_crops

_EPS = 1e-4


@dataclass(frozen=True)
class TeacherSettings:
    crop_grid: int = 3          # half-size crops per side, fused as the device fuses stills
    label_px: int = 512         # side of the square pseudo labels (= the v2 teacher's CRF scale)
    sharpness: float = 2.0      # logistic slope around each threshold, in logit units
    sure: float = 0.6           # CRF posterior below this (for its own label): ignored


def fused_views(heads: keras.Model, image_rgb: np.ndarray, side: int, crop_grid: int
                ) -> np.ndarray:
    """seg and the three state maps of the whole photo and its crops, each with its mirror,
    fused in place: float32 [2g, 2g, 4] (channels seg, >= Fair, >= Poor, >= Severe)."""
    height, width = image_rgb.shape[:2]
    boxes = crop_boxes(height, width, crop_grid) if crop_grid else []
    views = [image_rgb] + [image_rgb[y0:y1, x0:x1] for y0, x0, y1, x1 in boxes]
    batch = np.stack([cv2.resize(v, (side, side), interpolation=cv2.INTER_AREA) for v in views])
    batch = np.concatenate([batch, batch[:, :, ::-1]]).astype(np.float32)
    seg, state = heads.predict(batch, batch_size=len(batch), verbose=0)
    maps = np.concatenate([seg, state], axis=-1)
    maps = (maps[:len(views)] + maps[len(views):, :, ::-1]) / 2     # mirrors flipped back
    return fuse_crops(maps[0], list(zip(boxes, maps[1:])), (height, width))


def calibrated(probability: np.ndarray, threshold: float, sharpness: float) -> np.ndarray:
    """P' = sigmoid(sharpness * (logit(p) - logit(threshold))): even odds at the threshold."""
    def logit(x):
        x = np.clip(x, _EPS, 1 - _EPS)
        return np.log(x / (1 - x))
    return 1 / (1 + np.exp(-sharpness * (logit(probability) - logit(threshold))))


def state_priors(fused: np.ndarray, thresholds: StateThresholds, sharpness: float
                 ) -> np.ndarray:
    """Fused maps [h, w, 4] -> priors [4, h, w] of background, Fair, Poor, Severe (sum 1)."""
    corroded = np.clip(fused[..., 0], 0, 1)
    poor = calibrated(fused[..., 2], thresholds.poor, sharpness)
    severe = np.minimum(calibrated(fused[..., 3], thresholds.severe, sharpness), poor)
    return np.stack([1 - corroded, corroded * (1 - poor), corroded * (poor - severe),
                     corroded * severe]).astype(np.float32)


def tag_ceiling(states: np.ndarray, tile_fractions: tuple[float, ...], min_share: float
                ) -> np.ndarray:
    """uint8 [S, S]: the lowest tag of the tiles holding each pixel, over every tile size.

    A tile's tag is the worst state covering at least `min_share` of it (the tagging rule of
    converter/states.py); tile_fractions are tile sides as fractions of the photo side."""
    side = states.shape[0]
    ceiling = np.full(states.shape, len(STATE_NAMES), np.uint8)
    for fraction in tile_fractions:
        tiles = max(1, round(1 / fraction))
        tag = np.zeros((tiles, tiles), np.uint8)
        for level in range(1, len(STATE_NAMES) + 1):
            share = cv2.resize((states >= level).astype(np.float32), (tiles, tiles),
                               interpolation=cv2.INTER_AREA)
            tag[share >= min_share] = level
        ceiling = np.minimum(ceiling, cv2.resize(tag, (side, side),
                                                 interpolation=cv2.INTER_NEAREST))
    return ceiling


def pseudo_states(image_bgr: np.ndarray, fused: np.ndarray, ceiling: np.ndarray,
                  thresholds: StateThresholds, settings: TeacherSettings, crf: CrfSettings
                  ) -> np.ndarray:
    """uint8 [S, S] at the ceiling's size: 0 background, 1..3 a state, IGNORE where unsure."""
    side = ceiling.shape[0]
    small = cv2.resize(image_bgr, (side, side), interpolation=cv2.INTER_AREA)
    priors = state_priors(cv2.resize(fused, (side, side), interpolation=cv2.INTER_LINEAR),
                          thresholds, settings.sharpness)
    priors /= priors.sum(axis=0, keepdims=True)
    posterior = crf_posteriors(small, priors, crf)
    label = np.argmax(posterior, axis=0).astype(np.uint8)
    label = np.minimum(label, ceiling)
    label[np.max(posterior, axis=0) < settings.sure] = IGNORE
    return label


def teach(model: keras.Model, pairs, side: int, thresholds: StateThresholds,
          tile_fractions: tuple[float, ...], min_share: float, settings: TeacherSettings,
          crf: CrfSettings) -> list[np.ndarray]:
    """Pseudo state labels [label_px, label_px] (photo squashed) for each (image, mask) pair;
    the mask is read for its tile tags only."""
    from converter.states import STATE_LAYER

    heads = keras.Model(model.input, [model.get_layer(SEG_LAYER).output,
                                      model.get_layer(STATE_LAYER).output])
    labels = []
    for pair in pairs:
        image_bgr = read_image_bgr(pair.image)
        fused = fused_views(heads, cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), side,
                            settings.crop_grid)
        states = cv2.resize(read_state_mask(pair.mask), (settings.label_px,) * 2,
                            interpolation=cv2.INTER_NEAREST)
        labels.append(pseudo_states(image_bgr, fused,
                                    tag_ceiling(states, tile_fractions, min_share),
                                    thresholds, settings, crf))
    return labels


def dense_targets(labels: np.ndarray, grid: int) -> np.ndarray:
    """Pseudo labels [N, S, S] -> float32 [N, g, g, 4]: per cell the share of known pixels at
    or above each state, and the share of known pixels (the cell's weight)."""
    parts = []
    for level in range(1, len(STATE_NAMES) + 1):
        at_least = np.where(labels == IGNORE, IGNORE, labels >= level).astype(np.uint8)
        parts.append(targets_at_stride(at_least, IGNORE, (grid, grid)))
    return np.concatenate([p[..., :1] for p in parts] + [parts[0][..., 1:]], axis=-1)

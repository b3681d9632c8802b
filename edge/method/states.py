"""Condition states on the device (model contract v3): how bad each marked pixel is.

Refinement decides *where* the corrosion is; the model's `state` output decides *how bad*. It
holds cumulative probabilities P(>= Fair) >= P(>= Poor) >= P(>= Severe) per cell. A marked
pixel is Fair, raised to Poor where P(>= Poor) reaches the card's Poor threshold, and to Severe
where P(>= Severe) also reaches the Severe threshold. The thresholds come from the model card
(chosen on the tune split when the state head was trained). States follow AASHTO's bridge
element inspection, steel defect 1000 "Corrosion": CS2 Fair, CS3 Poor, CS4 Severe.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

BACKGROUND, FAIR, POOR, SEVERE = 0, 1, 2, 3
STATE_NAMES = ("fair", "poor", "severe")       # index + 1 = the state's value in a state map
STATE_LABELS = {"fair": "Fair (CS2)", "poor": "Poor (CS3)", "severe": "Severe (CS4)"}


@dataclass(frozen=True)
class StateThresholds:
    poor: float      # P(>= Poor) at or above which a marked pixel is at least Poor
    severe: float    # P(>= Severe) at or above which a Poor pixel is Severe

    @classmethod
    def from_card(cls, states: dict) -> "StateThresholds":
        return cls(float(states["thresholds"]["poor"]), float(states["thresholds"]["severe"]))


def states_in_mask(cumulative: np.ndarray, mask: np.ndarray, thresholds: StateThresholds
                   ) -> np.ndarray:
    """cumulative float32 [h, w, 3] at model resolution, mask bool [H, W] at frame resolution
    -> uint8 [H, W]: 0 outside the mask, else 1 Fair, 2 Poor or 3 Severe."""
    return levels_in_mask(upper_states_at(cumulative, mask.shape), mask, thresholds)


def upper_states_at(cumulative: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """P(>= Poor), P(>= Severe) float32 [H, W, 2] upsampled bilinearly (probabilities are
    smooth) from cumulative [h, w, 3]; P(>= Fair) is not needed: the mask says where."""
    return cv2.resize(np.ascontiguousarray(cumulative[..., 1:3], np.float32),
                      (frame_hw[1], frame_hw[0]), interpolation=cv2.INTER_LINEAR)


def levels_in_mask(upper: np.ndarray, mask: np.ndarray, thresholds: StateThresholds
                   ) -> np.ndarray:
    """The device rule on frame-sized P(>= Poor), P(>= Severe) [..., 2] and a mask: uint8 with
    0 outside the mask, 1 Fair, 2 Poor, 3 Severe (Severe needs Poor: the channels are ordered)."""
    poor = mask & (upper[..., 0] >= thresholds.poor)
    severe = poor & (upper[..., 1] >= thresholds.severe)
    return (mask.astype(np.uint8) + poor.astype(np.uint8) + severe.astype(np.uint8))


def area_by_state(levels: np.ndarray | None) -> dict[str, float] | None:
    """Share of the frame (0..1) in each state, or None without states (v1/v2 models)."""
    if levels is None:
        return None
    # count_nonzero per state: about 6x faster than a bincount of a frame, once per frame
    return {name: np.count_nonzero(levels == i + 1) / levels.size
            for i, name in enumerate(STATE_NAMES)}


def worst_state(levels: np.ndarray, min_share: float = 0.0) -> int:
    """The worst state (0..3) whose pixels, with those of worse states, cover at least
    `min_share` of the frame (and at least one pixel); 0 if none. The same rule tags tiles
    for training (converter/states.py), so tags and reports speak the same language."""
    counts = np.bincount(levels.ravel(), minlength=4)
    for level in (SEVERE, POOR, FAIR):
        covered = counts[level:].sum()
        if covered and covered >= min_share * levels.size:
            return level
    return BACKGROUND


def worst_state_name(area: dict[str, float] | None) -> str | None:
    """The worst state present in an area-by-state record ('fair', 'poor', 'severe'), or None
    when there are no states (v1/v2 models) or none is present."""
    if not area:
        return None
    present = [name for name in STATE_NAMES if area.get(name, 0) > 0]
    return present[-1] if present else None

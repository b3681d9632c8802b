"""The mask gate: which frames get a mask at all.

A v1 model has only the image score, so a frame gets a mask when its score reaches the model
card's threshold. That hides visible rust whenever the score lands just under it. A v2 model
also returns `seg`, per-pixel evidence of its own, so the gate may open below the threshold
when that evidence covers enough of the frame:

    open = score >= card threshold
           or (seg present and score >= gate.score_floor and area(seg >= 0.5) >= gate.seg_min_area)

The values were chosen by `benchmarks/gate_choice.py`, trading empty-mask misses on rusty photos
against the area marked on clean ones. The card threshold keeps its meaning for classification
(`rustseg eval` on class folders).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.config import GateConfig
from edge.method.model import Prediction

SEG_LEVEL = 0.5  # seg >= this counts as corroded area


@dataclass(frozen=True)
class MaskGate:
    score_threshold: float       # the model card's decision threshold
    score_floor: float = 1.0     # below the threshold, the seg rule needs at least this score
    seg_min_area: float = 1.0    # ... and at least this share of the frame with seg >= 0.5

    @classmethod
    def from_config(cls, score_threshold: float, config: GateConfig) -> "MaskGate":
        return cls(score_threshold, config.score_floor, config.seg_min_area)

    def opens(self, prediction: Prediction) -> bool:
        if prediction.score >= self.score_threshold:
            return True
        if prediction.seg01 is None or prediction.score < self.score_floor:
            return False
        return seg_area(prediction.seg01) >= self.seg_min_area


def seg_area(seg01: np.ndarray) -> float:
    """Share of the map at or above SEG_LEVEL."""
    return float(np.count_nonzero(seg01 >= SEG_LEVEL)) / seg01.size if seg01.size else 0.0

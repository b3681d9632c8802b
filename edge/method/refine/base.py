"""What every refinement path shares: the evidence -> probability mapping and the Refiner interface.

The evidence is the model's best per-pixel map: the distilled `seg` (P(corrosion), contract v2)
when the model has one, else the Grad-CAM++ heatmap (DESIGN.md: "Refinement uses the best
evidence present"). Names and settings below still say "CAM" where they were tuned on it.

A refiner turns that map at model resolution (`evidence01`, float32 [h, w], 0..1) and the frame
(`frame_bgr`, uint8 [H, W, 3]) into a boolean mask at frame resolution. New paths subclass
`Refiner`, override `refine`, and are named in `registry.py` and listed in `factory.py`; the loop
is not edited.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import CrfSettings, RefineConfig
from edge.data.imageio import to_bgr_u8
from edge.method.refine.colour_prior import rust_colour_score


@dataclass(frozen=True)
class RefineResult:
    mask: np.ndarray   # bool [H, W], True = corrosion
    path: str          # the path that produced it (auto reports light or full)
    mask_from: int | None = None  # a mask carried from an earlier frame: that frame's index


class Refiner(ABC):
    """One way of turning a heatmap into a mask. Subclasses override `refine_clean` only;
    `refine` hands it a finite heatmap and a uint8 BGR frame whatever it was given."""

    name = "base"
    holds_gil = False      # True: worth running in a worker process (edge/method/refine/worker.py)
    uses_paths = False     # True: delegates to other paths (`auto`), named in path_names
    path_names: tuple[str, ...] = ()

    def __init__(self, settings: RefineConfig, target_fps: float = 0.0) -> None:
        self.settings = settings
        self.target_fps = target_fps  # the loop's frame budget; only `auto` acts on it

    def refine(self, evidence01: np.ndarray, frame_bgr: np.ndarray) -> RefineResult:
        """evidence01 float [h, w] (NaN/Inf tolerated), frame [H, W] or [H, W, 3|4] -> mask [H, W]."""
        return self.refine_clean(clean_cam(evidence01), to_bgr_u8(frame_bgr, "frame"))

    @abstractmethod
    def refine_clean(self, evidence01: np.ndarray, frame_bgr: np.ndarray) -> RefineResult:
        """evidence01 float32 [h, w] in 0..1, frame_bgr uint8 [H, W, 3] -> mask bool [H, W]."""

    def observe_frame_time(self, other_stages_s: float) -> None:
        """Told after each frame how long the rest of the pipeline took (auto uses it)."""

    def start_source(self, live: bool, consecutive: bool) -> None:
        """Told what the frames to come are: from a live source (only the newest frame is
        shown), and whether each follows the previous one (video, cameras) or not (stills)."""

    def follow_motion(self, index: int | None, motion) -> None:
        """Told before each frame of a consecutive source how the camera moved since the
        previous frame (edge/method/motion.py `Motion`; None where that chain broke: a cut, a
        drop, unreliable flow). Paths that carry masks act on it."""


def clean_cam(evidence01: np.ndarray) -> np.ndarray:
    """A heatmap safe to use: float32, NaN/Inf -> 0, clipped to [0, 1], at least 1x1."""
    if np.asarray(evidence01).size == 0 or np.asarray(evidence01).ndim != 2:
        return np.zeros((1, 1), np.float32)
    cam = np.nan_to_num(np.asarray(evidence01, np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.clip(cam, 0.0, 1.0)


def working_size(frame_hw: tuple[int, int], longest_px: int) -> tuple[int, int]:
    """(height, width) with the longest side at most `longest_px`, aspect kept, >= 1 px."""
    height, width = frame_hw
    scale = min(1.0, longest_px / max(height, width))
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize_cam(evidence01: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Heatmaps are smooth: bilinear."""
    return cv2.resize(evidence01, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR)


def resize_frame(frame_bgr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    if frame_bgr.shape[:2] == tuple(size_hw):
        return frame_bgr
    return cv2.resize(frame_bgr, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_AREA)


def probability_to_mask(prob_fg: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Upsample a working-scale foreground probability bilinearly, then threshold at 0.5.

    Thresholding after the upsample gives smooth outlines instead of the staircase a
    nearest-neighbour upsample of labels would leave at 4-5x.
    """
    if prob_fg.shape != tuple(frame_hw):
        prob_fg = cv2.resize(prob_fg, (frame_hw[1], frame_hw[0]), interpolation=cv2.INTER_LINEAR)
    return prob_fg > 0.5


def foreground_probability(evidence01: np.ndarray, frame_bgr: np.ndarray,
                           settings: CrfSettings) -> np.ndarray:
    """P(corrosion) per pixel from the CAM (and the colour prior), both at the same size.

    evidence = (1 - w) * cam ** cam_gamma + w * rust_colour_score, w = colour_prior_weight;
    it maps linearly onto [fg_floor, fg_ceiling]. The floor keeps cold pixels from being
    certain background, so the CRF's colour terms can still pull in rust the coarse CAM
    missed; the ceiling does the same for hot pixels.
    """
    evidence = np.power(evidence01, settings.cam_gamma, dtype=np.float32)
    weight = settings.colour_prior_weight
    if weight > 0:
        evidence = (1.0 - weight) * evidence + weight * rust_colour_score(frame_bgr)
    return settings.fg_floor + (settings.fg_ceiling - settings.fg_floor) * evidence


class ThresholdRefiner(Refiner):
    """`none`: the CAM itself, upsampled and thresholded. The baseline the others must beat."""

    name = "none"

    def refine_clean(self, evidence01: np.ndarray, frame_bgr: np.ndarray) -> RefineResult:
        cam = resize_cam(evidence01, frame_bgr.shape[:2])
        return RefineResult(cam >= self.settings.cam_threshold, self.name)

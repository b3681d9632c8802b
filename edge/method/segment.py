"""One frame through the method: preprocess -> model (score, CAM, seg, state) -> gate -> refine
-> mask -> condition states inside the mask.

Shared by `rustseg eval`, `rustseg run` and `rustseg bench`, so all three measure and produce
exactly the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.config import Config, resolve_resource
from edge.method.carry import EvidenceCarrier
from edge.method.gate import MaskGate
from edge.method.model import CorrosionModel
from edge.method.paths import SKIPPED_PATH
from edge.method.profiler import StageTimes
from edge.method.refine.base import Refiner
from edge.method.refine.factory import gil_holding_paths, make_refiner
from edge.method.refine.worker import RefineWorker
from edge.method.grades import surface_mask, surface_share
from edge.method.states import StateThresholds, area_by_state, states_in_mask
from edge.method.tiles import tiled_prediction

_NOT_IN_BUDGET = ("refine", "capture")   # stages left out of `auto`'s per-frame budget


@dataclass
class FrameResult:
    score: float
    cam01: np.ndarray            # float32 [h, w] at model resolution
    mask: np.ndarray             # bool [H, W] at frame resolution
    path: str                    # none | light | full | skipped
    valid: bool                  # False when the model produced NaN/Inf for this frame
    times: StageTimes
    # uint8 [H, W]: 0 outside the mask, 1 Fair, 2 Poor, 3 Severe; None for v1/v2 models
    state: np.ndarray | None = None
    evidence_from: int | None = None   # frame whose evidence was carried into this one
    carry_reset: str | None = None     # why nothing was carried (None: carried, or no carrying)
    mask_from: int | None = None       # a carried mask: the frame it was refined on; None: fresh
    surface: np.ndarray | None = None  # bool [H, W]: the coated steel (grades.surface); None: all

    @property
    def corroded_fraction(self) -> float:
        return float(np.count_nonzero(self.mask)) / self.mask.size if self.mask.size else 0.0

    @property
    def grades_over(self) -> str:
        return "frame" if self.surface is None else "surface"

    @property
    def rusted_percent(self) -> float:
        """Percent of the coated surface (or, without one, of the frame) the mask covers: the
        share the rust grades are read from."""
        return surface_share(self.mask, self.surface)

    @property
    def area_by_state(self) -> dict[str, float] | None:
        """Share of the frame (0..1) in each condition state; None without states."""
        return area_by_state(self.state)


class Segmenter:
    """Model + gate + refiner; `segment(frame_bgr)` times each stage it runs.

    The refiner gets the best evidence the model has: `seg` from a v2 model, else the CAM.
    Without a `gate`, the model card's threshold alone decides (the v1 behaviour).
    """

    def __init__(self, model: CorrosionModel, refiner: Refiner,
                 gate: MaskGate | None = None, refine_worker=None, tile_grid: int = 0,
                 carrier: EvidenceCarrier | None = None,
                 surface: tuple[tuple[float, float], ...] = ()) -> None:
        self.model, self.refiner = model, refiner
        # The coated steel's outline (grades.surface; () = the whole frame), and its mask for
        # the last frame size seen: a fixed camera's frames all have one size.
        self.surface = surface
        self._surface_mask: tuple[tuple[int, int], np.ndarray | None] | None = None
        self.tile_grid = tile_grid    # stills only: crops per side for tiled inference, 0 = off
        self.gate = gate if gate is not None else MaskGate(model.threshold)
        card = getattr(model, "card", None)
        self.state_thresholds = (StateThresholds.from_card(card.states)
                                 if card is not None and card.contract >= 3 else None)
        # Carries evidence along the camera motion between consecutive frames (None: off).
        self.carrier = carrier
        # The worker process the refiner's GIL-holding paths run in (None: they run here).
        # Whoever runs frames starts and closes it (edge/live/stages.py does, around the run).
        self.refine_worker = refine_worker

    def infer(self, frame_bgr: np.ndarray, times: StageTimes, still: bool = False):
        """The model's prediction; a still (a photo, not a video frame) gets tiled inference
        when `tile_grid` is set: the full frame plus GRID x GRID crops (edge/method/tiles)."""
        if still and self.tile_grid:
            with times.stage("invoke"):
                return tiled_prediction(self.model, frame_bgr, self.tile_grid)
        with times.stage("preprocess"):
            image_rgb = self.model.preprocess(frame_bgr)
        with times.stage("invoke"):
            return self.model.infer(image_rgb)

    def warm_up(self) -> None:
        """One invoke on a black frame, on the calling thread: builds this thread's interpreter
        and lets the runtime settle, so the first real frame is not charged for either."""
        self.model.infer(np.zeros((*self.model.input_hw, 3), np.uint8))

    def refine(self, frame_bgr: np.ndarray, prediction, times: StageTimes,
               index: int | None = None) -> FrameResult:
        """Gate and refine one frame. `index` is its position in a source whose frames follow
        one another (video, camera), so evidence may be carried; None for a still."""
        evidence_from = reset = None
        if self.carrier is not None:
            with times.stage("carry"):
                step = self.carrier.step(index, frame_bgr, prediction.evidence01)
            prediction = prediction.with_evidence(step.evidence01)
            evidence_from, reset = step.carried_from, step.reset
            self.refiner.follow_motion(index, step.motion)
            opens = self.carrier.gate.update(self.gate.opens(prediction), reset is None)
        else:
            opens = self.gate.opens(prediction)
        if not opens:
            # No corrosion in this frame: an empty mask, and no time spent refining.
            mask = np.zeros(frame_bgr.shape[:2], bool)
            path, mask_from = SKIPPED_PATH, None
        else:
            with times.stage("refine"):
                result = self.refiner.refine(prediction.evidence01, frame_bgr)
            mask, path, mask_from = result.mask, result.path, result.mask_from
        state = None
        if prediction.state is not None and self.state_thresholds is not None:
            # Refinement said where; the state head says how bad, pixel by pixel in the mask.
            with times.stage("states"):
                state = states_in_mask(prediction.state, mask, self.state_thresholds)
        return FrameResult(prediction.score, prediction.cam01, mask, path, prediction.valid,
                           times, state, evidence_from, reset, mask_from,
                           self._surface_at(mask.shape))

    def _surface_at(self, frame_hw: tuple[int, int]) -> np.ndarray | None:
        if self._surface_mask is None or self._surface_mask[0] != frame_hw:
            self._surface_mask = (frame_hw, surface_mask(self.surface, frame_hw))
        return self._surface_mask[1]

    def start_source(self, live: bool, consecutive: bool) -> None:
        """Before the first frame of a source: what its frames are (the refiner may act on it:
        the full path runs without its lag on live sources)."""
        if self.carrier is not None:
            self.carrier = EvidenceCarrier(self.carrier.settings)   # a new chain
        self.refiner.start_source(live, consecutive)

    def observe_frame(self, times: StageTimes) -> None:
        """Tell the refiner what the rest of this frame cost, for `auto`'s budget.

        The budget bounds how old the overlay is, not only the frame rate: a frame's age is the
        sum of its stages (overlap helps throughput, not age), so it gets the sum of every stage
        but refine itself; capture is mostly waiting for the camera, not work, so it does not
        count either."""
        others_ms = sum(ms for name, ms in times.ms.items() if name not in _NOT_IN_BUDGET)
        self.refiner.observe_frame_time(others_ms / 1000.0)

    def segment(self, frame_bgr: np.ndarray, times: StageTimes | None = None,
                still: bool = False) -> FrameResult:
        times = times if times is not None else StageTimes()
        return self.refine(frame_bgr, self.infer(frame_bgr, times, still), times)


def build_segmenter(config: Config, allow_worker: bool = False) -> Segmenter:
    """The configured model, refine path and mask gate (shared by run, eval and bench).

    With `allow_worker` (run, bench) and refine.worker = process, the paths that hold the GIL
    run in a RefineWorker (not started yet); eval refines photo by photo and keeps them here."""
    model = CorrosionModel(resolve_resource(config.model.path), config.model.threads,
                           config.model.runtime)
    worker = None
    in_worker = gil_holding_paths(config.refine.mode)
    if allow_worker and config.refine.worker == "process" and in_worker:
        worker = RefineWorker(config.refine, in_worker)
    carrier = EvidenceCarrier(config.carry) if config.carry.enabled else None
    return Segmenter(model, make_refiner(config.refine.mode, config.refine,
                                         config.loop.target_fps, worker,
                                         config.carry if carrier is not None else None),
                     MaskGate.from_config(model.threshold, config.gate), worker,
                     config.stills.tile_grid, carrier, config.grades.surface_points)

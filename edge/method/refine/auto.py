"""`auto`: per frame, the full CRF when it fits the frame budget, else the light path.

Budget: 1 / target_fps. The scheduler knows how long the rest of the pipeline took on the last
frame (`observe_frame_time`) and keeps a running estimate of each path's own cost. It picks
full when rest + full cost fits the budget with `auto_hysteresis` to spare, drops to light as
soon as rest + full cost exceeds the budget, and holds any choice for `auto_hold_frames`
frames, so a noisy frame time does not make it flap. It starts on light and spends a single
probe frame on full to learn its cost, so a slow device never backs up on its first frames.

Where the full path runs without its lag (lagless.py: a live source with carrying on), `full`
costs the refine stage only the carrying of its last mask (and light where it has none), the
CRF running in the worker meanwhile; auto measures that cost as it measures the others, and so
picks it whenever it fits the budget.
"""

from __future__ import annotations

import time

import numpy as np

from edge.method.refine.base import RefineResult, Refiner
from edge.method.refine.full import FullCrfRefiner
from edge.method.refine.light import LightRefiner

_COST_SMOOTHING = 0.2   # weight of the newest measurement in the running cost estimates


class AutoRefiner(Refiner):
    name = "auto"
    uses_paths = True
    path_names = (LightRefiner.name, FullCrfRefiner.name)

    def __init__(self, settings, target_fps: float, paths: dict[str, Refiner] | None = None) -> None:
        super().__init__(settings, target_fps)
        # The factory passes the paths (through the refine worker when there is one, so each
        # cost measured below includes the hop); by default they run here.
        self.paths = paths if paths is not None else \
            {cls.name: cls(settings, 0.0) for cls in (LightRefiner, FullCrfRefiner)}
        self.budget_s = 1.0 / target_fps
        self.cost_s: dict[str, float | None] = {"light": None, "full": None}
        self.other_s = 0.0
        self.current = "light"     # safe start; full is probed on one frame to learn its cost
        # Frames the current path has served since it was chosen; starting "full" lets the
        # first decision come right after the probe.
        self.served = settings.auto_hold_frames

    def observe_frame_time(self, other_stages_s: float) -> None:
        self.other_s = max(0.0, float(other_stages_s))

    def start_source(self, live: bool, consecutive: bool) -> None:
        for path in self.paths.values():
            path.start_source(live, consecutive)

    def follow_motion(self, index: int | None, motion) -> None:
        for path in self.paths.values():
            path.follow_motion(index, motion)

    def choose(self) -> str:
        """The path for the next frame; a path serves at least auto_hold_frames frames."""
        full_cost = self.cost_s["full"]
        if full_cost is None:
            return "full"  # never measured: one probe frame, then decide on its cost
        if self.served < self.settings.auto_hold_frames:
            self.served += 1
            return self.current
        frame_s = self.other_s + full_cost
        if self.current == "full":
            wanted = "full" if frame_s <= self.budget_s else "light"
        else:
            spare = self.budget_s * (1.0 - self.settings.auto_hysteresis)
            wanted = "full" if frame_s <= spare else "light"
        if wanted != self.current:
            self.current, self.served = wanted, 0
        self.served += 1
        return self.current

    def refine_clean(self, evidence01: np.ndarray, frame_bgr: np.ndarray) -> RefineResult:
        path = self.choose()
        started = time.perf_counter()
        result = self.paths[path].refine_clean(evidence01, frame_bgr)
        elapsed = time.perf_counter() - started
        previous = self.cost_s[path]
        self.cost_s[path] = elapsed if previous is None else \
            (1 - _COST_SMOOTHING) * previous + _COST_SMOOTHING * elapsed
        return result

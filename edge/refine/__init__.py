"""Heatmap -> mask refinement paths, and the one registry that builds them.

`_REGISTRY` drives construction (`make_refiner`), the CLI's `--refine` choices and the config
validation (`REFINE_MODES`); a new path is a new Refiner subclass plus one line here. Classes
are imported on first use so reading the choices costs no OpenCV or CRF import.
"""

from __future__ import annotations

import importlib

from edge.errors import ConfigError

_REGISTRY = {
    "none": ("edge.refine.base", "ThresholdRefiner"),
    "light": ("edge.refine.light", "LightRefiner"),
    "full": ("edge.refine.full", "FullCrfRefiner"),
    "auto": ("edge.refine.auto", "AutoRefiner"),
}
REFINE_MODES = tuple(_REGISTRY)


def refiner_class(mode: str):
    if mode not in _REGISTRY:
        raise ConfigError(f"--refine {mode!r}: expected one of {', '.join(REFINE_MODES)}")
    module, name = _REGISTRY[mode]
    return getattr(importlib.import_module(module), name)


def make_refiner(mode: str, settings, target_fps: float, worker=None):
    """The refiner for `mode` built from the refine settings and the loop's frame budget.

    With a `worker` (edge.refine.worker.RefineWorker), a path that holds the GIL runs there
    behind a ProcessRefiner; `auto` gets its light and full paths the same way."""
    cls = refiner_class(mode)
    if worker is not None and cls.holds_gil:
        from edge.refine.worker import ProcessRefiner
        return ProcessRefiner(mode, settings, worker)
    return cls(settings, target_fps, worker) if cls.uses_paths else cls(settings, target_fps)


def gil_holding_paths(mode: str) -> tuple[str, ...]:
    """The paths `mode` runs that hold the GIL (they are worth a worker process)."""
    cls = refiner_class(mode)
    names = cls.path_names if cls.uses_paths else (mode,)
    return tuple(name for name in names if refiner_class(name).holds_gil)

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


def make_refiner(mode: str, settings, target_fps: float):
    """The refiner for `mode` built from the refine settings and the loop's frame budget."""
    if mode not in _REGISTRY:
        raise ConfigError(f"--refine {mode!r}: expected one of {', '.join(REFINE_MODES)}")
    module, name = _REGISTRY[mode]
    return getattr(importlib.import_module(module), name)(settings, target_fps)

"""Builds the refiner a mode names (`make_refiner`), from the names in registry.py.

With a `worker` (edge.method.refine.worker.RefineWorker), a path that holds the GIL runs there
behind the worker's proxy refiner; `auto` gets its light and full paths the same way. With a
worker and carrying settings (`carry`), `full` is wrapped so that it can run without its lag
(lagless.py) where the source allows it.
"""

from __future__ import annotations

from edge.errors import ConfigError
from edge.method.refine.auto import AutoRefiner
from edge.method.refine.base import Refiner, ThresholdRefiner
from edge.method.refine.full import FullCrfRefiner
from edge.method.refine.lagless import LaglessFullRefiner
from edge.method.refine.light import LightRefiner
from edge.method.refine.registry import REFINE_MODES

_CLASSES: dict[str, type[Refiner]] = {cls.name: cls for cls in
                                      (ThresholdRefiner, LightRefiner, FullCrfRefiner, AutoRefiner)}
if tuple(_CLASSES) != REFINE_MODES:  # one list of names: the registry's
    raise ImportError(f"refine classes {tuple(_CLASSES)} do not match REFINE_MODES {REFINE_MODES}")


def refiner_class(mode: str) -> type[Refiner]:
    if mode not in _CLASSES:
        raise ConfigError(f"--refine {mode!r}: expected one of {', '.join(REFINE_MODES)}")
    return _CLASSES[mode]


def make_refiner(mode: str, settings, target_fps: float, worker=None, carry=None) -> Refiner:
    """The refiner for `mode` built from the refine settings and the loop's frame budget;
    `carry` (CarryConfig, None when carrying is off) lets `full` run without its lag."""
    cls = refiner_class(mode)
    if worker is not None and cls.holds_gil:
        if cls is FullCrfRefiner and carry is not None and carry.full_without_lag != "never":
            # its fallback, light, runs here: the worker is busy with the CRF meanwhile
            return LaglessFullRefiner(settings, worker.refiner(mode), LightRefiner(settings),
                                      worker, carry)
        return worker.refiner(mode)
    if cls.uses_paths:
        paths = {name: make_refiner(name, settings, 0.0, worker, carry)
                 for name in cls.path_names}
        return cls(settings, target_fps, paths)
    return cls(settings, target_fps)


def gil_holding_paths(mode: str) -> tuple[str, ...]:
    """The paths `mode` runs that hold the GIL (they are worth a worker process)."""
    cls = refiner_class(mode)
    names = cls.path_names if cls.uses_paths else (mode,)
    return tuple(name for name in names if refiner_class(name).holds_gil)

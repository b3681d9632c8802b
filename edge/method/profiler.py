"""Stage timing: one perf_counter context manager per stage, and summaries of the samples."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

SUMMARY_PERCENTILES = (50, 90, 95, 99)


@dataclass
class StageTimes:
    """Milliseconds per stage for one frame, filled by `stage(name)` blocks."""

    ms: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - started) * 1000.0

    def total(self) -> float:
        return sum(self.ms.values())


def summarize(samples_ms) -> dict:
    """count, mean, std, min, p50, p90, p95, p99, max of a list of milliseconds.

    Percentiles use linear interpolation between closest ranks (numpy's default), the same
    definition TFLite's benchmark tool and most dashboards use.
    """
    values = np.asarray(list(samples_ms), np.float64)
    if values.size == 0:
        return {"count": 0, **{k: None for k in ("mean", "std", "min", "p50", "p90", "p95",
                                                  "p99", "max")}}
    summary = {"count": int(values.size), "mean": float(values.mean()),
               "std": float(values.std()), "min": float(values.min())}
    for pct in SUMMARY_PERCENTILES:
        summary[f"p{pct}"] = float(np.percentile(values, pct))
    summary["max"] = float(values.max())
    return summary

"""Helpers shared by the benchmark scripts: timing, machine description, results, plots."""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_KERAS = ROOT / "models" / "rustseg_default.keras"
DEFAULT_TFLITE = ROOT / "models" / "rustseg_default.tflite"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def median_ms(fn, repeats: int = 50, warmup: int = 5) -> float:
    """Median wall time of fn() in ms, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return float(np.median(samples))


def machine() -> dict:
    from edge.bench import cpu_model
    import os
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}


def save(name: str, report: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **report}, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def write_report(out_stem: str | Path, report: dict, table_lines: list[str]) -> None:
    """OUT.json (the full report) and OUT.md (a human table), also printed."""
    out = Path(out_stem)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(table_lines) + "\n")
    print("\n".join(table_lines))


def bar_plot(name: str, labels: list[str], values: list[float], ylabel: str, title: str,
             log: bool = False) -> Path | None:
    """RESULTS/NAME.png, or None with a note when matplotlib (the bench extra) is absent: the
    JSON report is the result, the plot only pictures it."""
    try:
        import matplotlib
    except ImportError:
        print(f"plot {name}.png skipped: matplotlib is not installed (pip install '.[bench]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(labels, values, color="#c0532b")
    ax.bar_label(bars, fmt="%.3g")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("log")
    fig.autofmt_xdate(rotation=20)
    fig.tight_layout()
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def real_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB images squashed to size: real validation photos, else synthetic scenes."""
    from converter.export import sample_images
    folder = SHARED_DATA / "corrosion_cls" / "validation"
    return sample_images(str(folder) if folder.is_dir() else None, size, count, seed)

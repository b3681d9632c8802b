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
    return interleaved_median_ms({"fn": fn}, repeats, warmup)["fn"]


def interleaved_median_ms(fns: dict, repeats: int = 300, warmup: int = 30) -> dict:
    """Median wall time in ms of each fn in `fns` (name -> fn), timed in turns: every round
    calls each fn once, in a rotating order, so a slow spell of a shared machine hits all of
    them alike and their ratios stay fair."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            fns[name]()
            samples[name].append((time.perf_counter() - started) * 1000)
    return {name: float(np.median(times)) for name, times in samples.items()}


def invoke_functions(interpreter_class, models: dict, threads: int, image: np.ndarray) -> dict:
    """name -> a function that runs one invoke of that .tflite on `image` (uint8 [1, S, S, 3]),
    each with its own interpreter at `threads`, for interleaved_median_ms."""
    invokes = {}
    for name, path in models.items():
        interpreter = interpreter_class(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        index = interpreter.get_input_details()[0]["index"]

        def invoke(i=interpreter, k=index):
            i.set_tensor(k, image)
            i.invoke()
        invokes[name] = invoke
    return invokes


def machine() -> dict:
    from edge.measure.bench import cpu_model
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

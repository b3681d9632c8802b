"""What condition states cost on the device: a v3 model against the v2 model it grew from.

- invoke time, v3 (score + cam + seg + state) vs v2 (score + cam + seg), interleaved in the same
  run at 1 and 2 threads (target: <= 1.10x);
- `rustseg bench` with the light path at 640x480, the two models back to back in five rounds, in
  the same run; the median of the rounds' FPS ratios (target: v3 no more than 10 % below v2).

    python benchmarks/states_cost.py [--model models/rustseg_default.tflite]
        [--baseline build/v2/rustseg_default.tflite] [--frames 200]
Writes results/states_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import (DEFAULT_TFLITE, RESULTS, ROOT, interleaved_median_ms, invoke_functions,
                    machine, real_images, write_report)

_ROUNDS = 5   # rounds of the two models back to back: the machine drifts between rounds


def invoke_times(models: dict[str, str]) -> dict:
    from edge.method.model import load_interpreter_class

    interpreter_class, runtime = load_interpreter_class("auto")
    image = real_images(1, 320)[0:1]
    out = {"runtime": runtime}
    for threads in (1, 2):
        invokes = invoke_functions(interpreter_class, models, threads, image)
        medians = interleaved_median_ms(invokes, repeats=300, warmup=30)
        out[f"threads_{threads}"] = {**{k: round(v, 3) for k, v in medians.items()},
                                     "ratio_v3_v2": round(medians["v3"] / medians["v2"], 3)}
    return out


def bench_fps(models: dict[str, str], frames: int) -> dict:
    runs = {name: [] for name in models}
    with tempfile.TemporaryDirectory() as scratch:
        for round_index in range(_ROUNDS):
            for name, path in models.items():
                json_out = Path(scratch) / f"{name}_{round_index}.json"
                subprocess.run([sys.executable, "-m", "edge.cli", "bench", "--model", path,
                                "--refine", "light", "--frames", str(frames), "--json",
                                str(json_out)], cwd=ROOT, check=True,
                               stdout=subprocess.DEVNULL)
                runs[name].append(json.loads(json_out.read_text()))
    fps = {name: [r["fps"] for r in results] for name, results in runs.items()}
    medians = {name: float(np.median(values)) for name, values in fps.items()}
    # Each round's two runs follow each other, so their ratio sees the same machine; the
    # median of those ratios is the figure, steadier than a ratio of medians taken apart.
    paired = [v3 / v2 for v2, v3 in zip(fps["v2"], fps["v3"])]
    return {"fps_runs": fps, "fps_median": medians,
            "v3_vs_v2": round(float(np.median(paired)), 3),
            "v3_vs_v2_per_round": [round(r, 3) for r in paired],
            "stages_last_run": {name: results[-1].get("stages")
                                         for name, results in runs.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(DEFAULT_TFLITE))
    parser.add_argument("--baseline", default="build/v2/rustseg_default.tflite")
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    models = {"v2": args.baseline, "v3": args.model}
    report = {"machine": machine(), "models": models, "invoke": invoke_times(models),
              "bench_light_640x480": bench_fps(models, args.frames)}
    invoke, bench = report["invoke"], report["bench_light_640x480"]
    lines = ["# What condition states cost (v3 vs v2, same run)", "",
             "`python benchmarks/states_cost.py`", "",
             "| figure | v2 | v3 | v3 / v2 | target |", "|---|---|---|---|---|"]
    for threads in (1, 2):
        row = invoke[f"threads_{threads}"]
        lines.append(f"| invoke ms, {threads} thread(s), median of 300 interleaved | "
                     f"{row['v2']:.2f} | {row['v3']:.2f} | {row['ratio_v3_v2']:.3f}x | <= 1.10x |")
    lines.append(f"| `rustseg bench --refine light` FPS, {_ROUNDS} rounds of the two back to "
                 "back: medians, and the median of the rounds' ratios | "
                 f"{bench['fps_median']['v2']:.1f} | {bench['fps_median']['v3']:.1f} | "
                 f"{bench['v3_vs_v2']:.3f} | >= 0.90 |")
    lines += ["", "ratio per round: " + ", ".join(f"{r:.3f}" for r in bench["v3_vs_v2_per_round"])]
    write_report(RESULTS / "states_cost", report, lines)


if __name__ == "__main__":
    main()

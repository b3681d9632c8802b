"""A small-device profile: `rustseg bench --cpus N` for each refine path (none, light, full,
auto at 15 FPS) on 1 and 2 cores at 320x240 and 640x480, on the demo's synthetic clip (seed 3).

Each cell is its own `rustseg bench` process, because pinning (sched_setaffinity) lasts for the
process. Frames run one after the other (the bench's stage runner with overlap off), so FPS is
1000 / mean total and every stage is its own cost; `refine` includes the hop to the refine
worker process (refine.worker = process). The machine is shared: the load average before and
after each cell is recorded with it.

Writes results/device_profile.md and .json; `--frames` and `--warmup` shorten a try.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, ROOT, machine, write_report

PATHS = ("none", "light", "full", "auto")
CPUS = (1, 2)
SIZES = ((320, 240), (640, 480))
STAGES = ("capture", "preprocess", "invoke", "refine", "draw", "total")  # as bench names them
# Device scaling, an ESTIMATE (benchmarks/README.md gives the sources): a Raspberry Pi 4 core
# is 4-5x slower than one of these (the estimate); a Pi 5 is 2-3x a Pi 4 (Raspberry Pi's
# launch figure); a Jetson Nano's CPU (4x Cortex-A57, 1.43 GHz) is taken as a Pi 4 (4x
# Cortex-A72, 1.5-1.8 GHz) down to 1.2x slower (our assumption). Sequential stages all scale.
PI4_SLOWER = (5.0, 4.0)
PI5_OVER_PI4 = (2.0, 3.0)
NANO_UNDER_PI4 = (1.2, 1.0)


def _cell(path: str, cpus: int, width: int, height: int, frames: int, warmup: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "bench.json"
        load_before = os.getloadavg()[0]
        command = [sys.executable, "-m", "edge.cli", "bench", "--cpus", str(cpus),
                   "--refine", path, "--target-fps", "15", "--frames", str(frames),
                   "--warmup", str(warmup), "--json", str(out), "--source",
                   f"synthetic://?width={width}&height={height}&frames=0&seed=3"]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        if result.returncode != 0:
            raise SystemExit(f"bench failed for {path} {cpus} cpu {width}x{height}:\n"
                             f"{result.stderr[-2000:]}")
        report = json.loads(out.read_text())
    stages = report["stages"]
    return {"refine": path, "cpus": cpus, "size": f"{width}x{height}", "fps": report["fps"],
            "paths_used": report["paths_used"], "pinned_to": report["cpus"],
            "refine_worker": report["refine_worker"],
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "stages": {name: {"p50": stages[name]["p50"], "p95": stages[name]["p95"]}
                       for name in STAGES}}


def _ms(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _table(rows: list[dict], frames: int, warmup: int) -> list[str]:
    lines = ["# Small-device profile: `rustseg bench --cpus N`", "",
             f"{frames} frames after {warmup} warm-up per cell, frames one after the other; "
             "FPS = 1000 / mean total; stage cells are p50 / p95 ms. `auto` at --target-fps 15. "
             "Refine includes the hop to the refine worker process. Load = 1-minute load "
             "average of this shared machine before / after the cell.", "",
             "| size | cores | refine | FPS | " + " | ".join(STAGES) + " | paths | load |",
             "|---|---|---|---|" + "---|" * len(STAGES) + "---|---|"]
    for r in rows:
        stages = " | ".join(f"{_ms(r['stages'][s]['p50'])} / {_ms(r['stages'][s]['p95'])}"
                            for s in STAGES)
        paths = ", ".join(f"{k} {v}" for k, v in sorted(r["paths_used"].items()))
        lines.append(f"| {r['size']} | {r['cpus']} | {r['refine']} | {r['fps']:.1f} | "
                     f"{stages} | {paths} | {r['load_before']} / {r['load_after']} |")
    return lines


def estimates(rows: list[dict]) -> list[dict]:
    """FPS ranges on the small devices from the 1- and 2-core rows (see the constants)."""
    out = []
    for r in rows:
        pi4 = tuple(r["fps"] / f for f in PI4_SLOWER)
        out.append({"size": r["size"], "cpus": r["cpus"], "refine": r["refine"],
                    "here_fps": r["fps"], "pi4_fps": pi4,
                    "pi5_fps": tuple(v * f for v, f in zip(pi4, PI5_OVER_PI4)),
                    "jetson_nano_fps": tuple(v / f for v, f in zip(pi4, NANO_UNDER_PI4))})
    return out


def _estimate_table(rows: list[dict]) -> list[str]:
    lines = ["", "## Estimate for small devices (not measured on them)", "",
             f"Pi 4 = here / {PI4_SLOWER[1]:g}-{PI4_SLOWER[0]:g} (the issue's per-core "
             f"estimate); Pi 5 = Pi 4 x {PI5_OVER_PI4[0]:g}-{PI5_OVER_PI4[1]:g} (Raspberry Pi's "
             f"launch figure); Jetson Nano CPU = Pi 4 / {NANO_UNDER_PI4[1]:g}-"
             f"{NANO_UNDER_PI4[0]:g} (assumption). FPS ranges, frames one after the other.", "",
             "| size | cores | refine | here FPS | Pi 4 | Pi 5 | Jetson Nano (CPU) |",
             "|---|---|---|---|---|---|---|"]
    for e in rows:
        cells = " | ".join(f"{lo:.1f}-{hi:.1f}" for lo, hi in
                           (e["pi4_fps"], e["pi5_fps"], e["jetson_nano_fps"]))
        lines.append(f"| {e['size']} | {e['cpus']} | {e['refine']} | {e['here_fps']:.1f} | "
                     f"{cells} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for width, height in SIZES:
        for cpus in CPUS:
            for path in PATHS:
                rows.append(_cell(path, cpus, width, height, args.frames, args.warmup))
                print(json.dumps({k: rows[-1][k] for k in ("size", "cpus", "refine", "fps")}),
                      flush=True)
    estimated = estimates(rows)
    write_report(RESULTS / "device_profile", {"machine": machine(), "frames": args.frames,
                                              "warmup": args.warmup, "rows": rows,
                                              "estimates": estimated},
                 _table(rows, args.frames, args.warmup) + _estimate_table(estimated))


if __name__ == "__main__":
    main()

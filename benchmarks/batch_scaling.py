"""`rustseg batch` scaling: the same synthetic archive with 1 and 2 workers, for each engine.

Reports frames/s (all frames of the archive over the batch's wall time, start-up included) and
the 2-worker / 1-worker ratio per engine (target >= 1.7x), the per-core rate behind the
cluster arithmetic in benchmarks/README.md, and each input's fixed cost (its wall time minus
its frames at its own pipeline FPS: interpreter, model and writer start-up, the report), which
decides whether splitting long videos into frame ranges pays here.

    python benchmarks/batch_scaling.py                 # 4 clips x 300 frames, 640x480
    python benchmarks/batch_scaling.py --clips 2 --frames 30 --width 320 --height 240 --out /tmp/b

The machine's load average is written beside the figures: on a shared machine the ratios are
disturbed and must be re-run on a quiet one. So is how many cores were busy during each batch
(psutil, machine-wide): a ratio of 2 workers over 1 cannot beat cores / (cores one worker
keeps busy), since one worker already runs its stages on threads of their own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, machine, write_report

from edge.batch import BatchRequest, run_batch
from edge.config import load_config
from edge.data.synthetic import write_clip_video
from edge.errors import RustsegError
from edge.record.layout import RecordLayout

_TARGET_RATIO = 1.7


def _engines() -> list[str]:
    try:
        import ray  # noqa: F401
    except ImportError:
        print("ray not installed (pip install -e '.[cluster]'): measuring local only",
              file=sys.stderr)
        return ["local"]
    return ["local", "ray"]


def measure(engine: str, workers: int, inputs: list[str], scratch: Path) -> dict:
    import psutil

    out = scratch / f"{engine}-{workers}"
    load_before = os.getloadavg()[0]
    psutil.cpu_percent()                      # starts the interval the next call reads
    started = time.perf_counter()
    result = run_batch(load_config(), BatchRequest(tuple(inputs), str(out), engine,
                                                   workers=workers, show_progress=False))
    wall_s = time.perf_counter() - started
    cores_busy = psutil.cpu_percent() / 100 * (os.cpu_count() or 1)
    if not result.all_done:
        raise SystemExit(f"batch {engine} x{workers} did not finish: {result.format()}")
    frames = sum(o["frames"] for o in result.outcomes)
    fixed = []
    for o in result.outcomes:
        fps = RecordLayout(Path(o["record"])).read_summary()["run"]["fps"]
        fixed.append(o["wall_s"] - o["frames"] / fps)
    return {"engine": engine, "workers": workers, "frames": frames, "wall_s": round(wall_s, 2),
            "frames_per_s": round(frames / wall_s, 1),
            "per_input_fixed_s_median": round(sorted(fixed)[len(fixed) // 2], 2),
            "cores_busy": round(cores_busy, 2),
            "load_avg_1min_before": round(load_before, 2),
            "load_avg_1min_after": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=300, help="frames per clip")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--out", default=str(RESULTS / "batch_scaling"),
                        help="output stem (.json and .md)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rustseg-batch-bench-") as scratch_name:
        scratch = Path(scratch_name)
        inputs = [str(write_clip_video(scratch / "archive" / f"flight{i}.avi", args.width,
                                       args.height, args.frames, seed=i))
                  for i in range(args.clips)]
        rows = []
        for engine in _engines():
            for workers in (1, 2):
                try:
                    rows.append(measure(engine, workers, inputs, scratch))
                except RustsegError as exc:  # e.g. Ray timing out on an overloaded machine
                    print(f"{engine} x{workers}: {exc}", file=sys.stderr)
                    rows.append({"engine": engine, "workers": workers, "error": str(exc)})

    ratios = {}
    measured = [r for r in rows if "error" not in r]
    for engine in sorted({r["engine"] for r in measured}):
        pair = {r["workers"]: r["frames_per_s"] for r in measured if r["engine"] == engine}
        if len(pair) == 2:
            ratios[engine] = round(pair[2] / pair[1], 2)
    best_two = max((r["frames_per_s"] for r in measured if r["workers"] == 2), default=0.0)
    cores = os.cpu_count() or 1
    report = {"machine": machine(), "archive": vars(args) | {"out": None},
              "rows": rows, "ratio_2_over_1": ratios, "target_ratio": _TARGET_RATIO,
              "per_core_frames_per_s": round(best_two / cores, 1)}
    lines = [f"# batch scaling ({args.clips} clips x {args.frames} frames, "
             f"{args.width}x{args.height}; {machine()['cpu']}, {cores} cores)", "",
             "| engine | workers | frames | wall s | frames/s | fixed s per input | cores busy "
             "| load before/after |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['engine']} | {r['workers']} | - | - | - | - | - | {r['error']} |")
            continue
        lines.append(f"| {r['engine']} | {r['workers']} | {r['frames']} | {r['wall_s']} | "
                     f"{r['frames_per_s']} | {r['per_input_fixed_s_median']} | "
                     f"{r['cores_busy']} | "
                     f"{r['load_avg_1min_before']} / {r['load_avg_1min_after']} |")
    ceilings = {r["engine"]: round(cores / r["cores_busy"], 2) for r in measured
                if r["workers"] == 1 and r["cores_busy"] > 0}
    report["ratio_ceiling"] = ceilings
    lines += ["", "ratio 2 workers / 1 worker (target >= 1.7): " + ", ".join(
        f"{e} {v}x" for e, v in ratios.items()),
        "ceiling of that ratio, cores / cores one worker keeps busy: " + ", ".join(
            f"{e} {v}x" for e, v in ceilings.items()),
        f"per-core rate: {report['per_core_frames_per_s']} frames/s"]
    write_report(args.out, report, lines)


if __name__ == "__main__":
    main()

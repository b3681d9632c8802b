"""The loop's own targets at 640x480 with the shipped model (issue: the on-device loop).

1. Throughput: the synthetic clip at full speed (every frame) through the pipelined loop with
   --refine light / full / auto (target 15 FPS), a JSONL log and an mp4 as outputs.
2. Lag: a paced 30 FPS live source (newest frame only); how many frames the overlay trails
   the newest captured frame, and how many the source had to drop. `full` and `auto` run with
   the refine worker process (refine.worker = process, the default) and, for comparison in the
   same run, in the loop's own refine thread (`_thread` rows), where pydensecrf holds the GIL.

The machine may be shared: each row records the 1-minute load average before it ran.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from common import bar_plot, save

FRAMES = 300


def _run(mode: str, source: str, target_fps: float = 15.0, worker: str = "process") -> dict:
    from edge.config import load_config
    from edge.live.app import RunRequest, run_loop

    config = load_config(overrides={"refine.mode": mode, "loop.target_fps": target_fps,
                                    "loop.frames": FRAMES, "refine.worker": worker})
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        report = run_loop(config, RunRequest(source, (str(Path(scratch) / "v.mp4"),),
                                             str(Path(scratch) / "l.jsonl"), None, True, False))
    stages = report.summary()["stages"]
    return {"refine": mode, "refine_worker": worker, "load_1min": round(load, 2),
            "fps": report.fps, "frames_processed": report.frames_processed,
            "dropped": report.dropped, "paths": report.paths,
            **_lag(report.lag_frames),
            "stage_p50_ms": {k: v["p50"] for k, v in stages.items()}}


def _lag(lags: list[int]) -> dict:
    if not lags:  # every-frame sources: frames are read ahead on purpose, lag means nothing
        return {}
    return {"lag_frames_p50": float(np.median(lags)),
            "lag_frames_p95": float(np.percentile(lags, 95)), "lag_frames_max": int(max(lags))}


def main() -> None:
    full_speed = "synthetic://?width=640&height=480&frames=0&seed=3"
    live = "synthetic://?width=640&height=480&frames=0&seed=3&fps=30"
    rows = {f"{mode}_full_speed": _run(mode, full_speed) for mode in ("light", "full", "auto")}
    rows.update({f"{mode}_live30": _run(mode, live) for mode in ("light", "full", "auto")})
    rows.update({f"{mode}_live30_thread": _run(mode, live, worker="thread")
                 for mode in ("full", "auto")})
    for name, row in rows.items():
        print(name, row)
    save("live_loop", {"frames": FRAMES, "frame_size": "640x480", "runs": rows,
                       "targets": "light >= 30 FPS, full >= 10 FPS, auto@15 >= 15 FPS, "
                                  "live lag p95: auto@15 <= 2 frames, full <= 3 frames"})
    bar_plot("live_loop", list(rows), [r["fps"] for r in rows.values()], "FPS (end to end)",
             "Live loop at 640x480 (pipelined stages)")


if __name__ == "__main__":
    main()

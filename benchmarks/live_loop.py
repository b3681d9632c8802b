"""The loop's own targets at 640x480 with the shipped model (issue: the on-device loop).

1. Throughput: the synthetic clip at full speed (every frame) through the pipelined loop with
   --refine light / full / auto (target 15 FPS), a JSONL log and an mp4 as outputs.
2. Lag: a paced 30 FPS live source (newest frame only); how many frames the overlay trails
   the newest captured frame, and how many the source had to drop. `full` and `auto` run with
   the refine worker process (refine.worker = process, the default) and, for comparison in the
   same run, in the loop's own refine thread (`_thread` rows), where pydensecrf holds the GIL.
   With carrying on (the default), live `full` runs without its lag (the CRF in the worker on
   the newest frame, each frame drawing the last full mask carried onto it by the motion); the
   `_sync` row is the full path refining every frame it shows (`carry.full_without_lag: never`).
3. Alignment: the scene generator knows the true rust of every frame it captured, so each
   live row also gives the pooled IoU of every drawn mask against the truth of the frame it is
   drawn on, and how many masks were carried from an earlier frame (`mask` in frames.jsonl).

The machine may be shared: each row records the 1-minute load average before it ran.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from common import bar_plot, save

FRAMES = 300
_CLIP_FRAMES = 600          # synthetic://...&frames=0 repeats a 600-frame clip


def _run(mode: str, source: str, target_fps: float = 15.0, worker: str = "process",
         overrides: dict | None = None) -> dict:
    from edge.config import load_config
    from edge.live.app import RunRequest, run_loop

    config = load_config(overrides={"refine.mode": mode, "loop.target_fps": target_fps,
                                    "loop.frames": FRAMES, "refine.worker": worker,
                                    **(overrides or {})})
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        log, masks = Path(scratch) / "l.jsonl", Path(scratch) / "masks"
        report = run_loop(config, RunRequest(source, (str(Path(scratch) / "v.mp4"),),
                                             str(log), str(masks), True, False))
        alignment = _alignment(source, log, masks) if "fps=" in source else {}
    stages = report.summary()["stages"]
    return {"refine": mode, "refine_worker": worker, "load_1min": round(load, 2),
            "overrides": overrides or {},
            "fps": report.fps, "frames_processed": report.frames_processed,
            "dropped": report.dropped, "paths": report.paths,
            **_lag(report.lag_frames), **alignment,
            "stage_p50_ms": {k: v["p50"] for k, v in stages.items()}}


def _alignment(source: str, log: Path, masks: Path) -> dict:
    """Pooled IoU of each drawn mask with the true rust of the frame it is drawn on (the
    synthetic camera's clip, frame by frame), and how many masks were carried."""
    from edge.data.synthetic import iter_clip

    records = [json.loads(line) for line in log.read_text().splitlines()]
    wanted: dict[int, list[dict]] = {}
    for record in records:  # the clip repeats: frame i shows clip frame i % _CLIP_FRAMES
        wanted.setdefault(record["index"] % _CLIP_FRAMES, []).append(record)
    inter = union = 0
    for index, (_, truth) in enumerate(iter_clip(640, 480, _CLIP_FRAMES, 3)):
        for record in wanted.get(index, []):
            mask = cv2.imread(str(masks / f"{record['name']}.png"), cv2.IMREAD_GRAYSCALE) > 127
            inter += np.count_nonzero(mask & truth)
            union += np.count_nonzero(mask | truth)
    carried = [r["index"] - r["mask_from"] for r in records if r.get("mask") == "carried"]
    return {"iou_drawn_frame": inter / union if union else 0.0,
            "masks_carried": len(carried),
            "carried_from_frames_back_p50": float(np.median(carried)) if carried else None}


def _lag(lags: list[int]) -> dict:
    if not lags:  # every-frame sources: frames are read ahead on purpose, lag means nothing
        return {}
    return {"lag_frames_p50": float(np.median(lags)),
            "lag_frames_p95": float(np.percentile(lags, 95)), "lag_frames_max": int(max(lags))}


def _plan() -> dict:
    """Row name -> the arguments of its run, in the order they run."""
    full_speed = "synthetic://?width=640&height=480&frames=0&seed=3"
    live = "synthetic://?width=640&height=480&frames=0&seed=3&fps=30"
    plan = {f"{mode}_full_speed": (mode, full_speed, {}) for mode in ("light", "full", "auto")}
    plan.update({f"{mode}_live30": (mode, live, {}) for mode in ("light", "full", "auto")})
    plan["full_live30_sync"] = ("full", live, {"overrides": {"carry.full_without_lag": "never"}})
    plan.update({f"{mode}_live30_thread": (mode, live, {"worker": "thread"})
                 for mode in ("full", "auto")})
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description="the live loop's throughput, lag, alignment")
    parser.add_argument("--rows", nargs="+", choices=list(_plan()), default=None,
                        help="run only these rows, saved as results/live_loop_rows.json")
    args = parser.parse_args()
    plan = {name: run for name, run in _plan().items() if not args.rows or name in args.rows}
    rows = {}
    for name, (mode, source, options) in plan.items():
        rows[name] = _run(mode, source, **options)
        print(name, rows[name], flush=True)
    name = "live_loop_rows" if args.rows else "live_loop"
    save(name, {"frames": FRAMES, "frame_size": "640x480", "runs": rows,
                "targets": "light >= 30 FPS, full >= 10 FPS, auto@15 >= 15 FPS, live lag p95: "
                           "auto@15 <= 2 frames, full <= 2 frames with the mask aligned to the "
                           "frame it is drawn on (issue 18)"})
    bar_plot(name, list(rows), [r["fps"] for r in rows.values()], "FPS (end to end)",
             "Live loop at 640x480 (pipelined stages)")


if __name__ == "__main__":
    main()

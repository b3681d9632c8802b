"""Search the refine settings of each path on real masks, and report them on held-back images.

Masks steer the settings only; the model never sees them. The `tune` part of the folder
(edge.data.datasets split) is divided again: the search runs on its `search` half and the best
settings of each path are confirmed on the other half (`check`). The `holdout` part is not
touched here; `rustseg eval --split holdout` reports on it with the chosen defaults.

    python benchmarks/tune_refine.py --model models/rustseg_default.tflite \
        --data ../shared/data/vt_corrosion/train --trials 60 --out benchmarks/results/refine_tuning

Writes OUT.json (every trial) and OUT.md (best per path, with the HSV and all-rust baselines).
Runs with the edge extra only (no TensorFlow).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_report  # noqa: E402

from edge.config import load_config  # noqa: E402
from edge.data.datasets import find_masked_images  # noqa: E402
from edge.data.imageio import read_image_bgr, read_mask  # noqa: E402
from edge.measure.metrics import SegmentationTally  # noqa: E402
from edge.method.gate import MaskGate  # noqa: E402
from edge.method.model import CorrosionModel, Prediction  # noqa: E402
from edge.method.refine.factory import make_refiner  # noqa: E402

# What each path's search may change, as (low, high) ranges or choices. The two paths keep
# their roles: full is the many-iteration CRF at 2-3x the light path's resolution (when there
# is headroom), light a 1-2 iteration CRF at 128 px or less (the real-time path).
def _crf_space(scale_choices: list, iteration_choices: list) -> dict:
    return {"scale_px": scale_choices, "iterations": iteration_choices,
            "fg_floor": (0.02, 0.45), "fg_ceiling": (0.55, 0.98), "cam_gamma": (0.3, 2.0),
            "colour_prior_weight": (0.0, 0.8), "gauss_sxy": (1.0, 6.0),
            "gauss_compat": (0.5, 6.0), "bilateral_sxy": (5.0, 120.0),
            "bilateral_srgb": (4.0, 30.0), "bilateral_compat": (1.0, 15.0)}


SPACE = {
    "none": {"refine.cam_threshold": (0.15, 0.7)},
    # full must hold 10 FPS end to end at 640x480 on 2 cores: 320 px and <= 6 iterations.
    "full": {f"refine.full.{k}": v for k, v in _crf_space([256, 320], [4, 5, 6]).items()},
    "light": {**{f"refine.light.{k}": v for k, v in _crf_space([96, 128], [1, 2]).items()},
              "refine.light_clusters": [4, 6, 8, 10],
              "refine.light_colour_space": ["lab", "hsv", "bgr"],
              "refine.light_sure_fg": (0.2, 0.8), "refine.light_sure_bg": (0.02, 0.3)},
}


@dataclasses.dataclass
class Sample:
    frame: np.ndarray
    truth: np.ndarray
    prediction: Prediction


def load_samples(model: CorrosionModel, pairs) -> list[Sample]:
    return [Sample(frame, read_mask(pair.mask), model.predict(frame))
            for pair in pairs for frame in [read_image_bgr(pair.image)]]


def evaluate(samples, config, mode: str, threshold: float) -> dict:
    """Pooled IoU and ms per image of one path with one config (gated like the loop), on the
    model's best evidence (seg, else cam)."""
    refiner = make_refiner(mode, config.refine, 15.0)
    gate = MaskGate.from_config(threshold, config.gate)
    tally, times = SegmentationTally(), []
    for s in samples:
        started = time.perf_counter()
        if not gate.opens(s.prediction):
            mask = np.zeros(s.truth.shape, bool)
        else:
            mask = refiner.refine(s.prediction.evidence01, s.frame).mask
        times.append((time.perf_counter() - started) * 1000)
        tally.add(mask, s.truth)
    return {**tally.summary(), "ms_per_image": float(np.mean(times))}


def baselines(samples) -> dict:
    everything, hsv = SegmentationTally(), SegmentationTally()
    for s in samples:
        everything.add(np.ones_like(s.truth), s.truth)
        h, sat, val = cv2.split(cv2.cvtColor(s.frame, cv2.COLOR_BGR2HSV))
        rust = ((h <= 20) | (h >= 170)) & (sat >= 80) & (val >= 40) & (val <= 220)
        hsv.add(rust, s.truth)
    return {"all_rust": everything.summary()["pooled_iou"],
            "hsv_rust_hue": hsv.summary()["pooled_iou"]}


def draw(rng: np.random.Generator, space: dict) -> dict:
    params = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            params[key] = spec[int(rng.integers(len(spec)))]
        else:
            params[key] = float(rng.uniform(*spec))
    return params


def perturb(rng: np.random.Generator, params: dict, space: dict, scale: float) -> dict:
    """A neighbour of `params`: continuous values moved by up to `scale` of their range,
    choices switched to another option with probability `scale`."""
    new = dict(params)
    for key, spec in space.items():
        if key not in new:
            continue
        if isinstance(spec, list):
            if rng.random() < scale:
                new[key] = spec[int(rng.integers(len(spec)))]
        else:
            low, high = spec
            new[key] = float(np.clip(new[key] + rng.normal(0, scale * (high - low)), low, high))
    return new


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/rustseg_default.tflite")
    parser.add_argument("--data", default="../shared/data/vt_corrosion/train")
    parser.add_argument("--trials", type=int, default=60, help="random trials per path")
    parser.add_argument("--local", type=int, default=20,
                        help="then this many local steps around the best per path")
    parser.add_argument("--paths", nargs="+", default=["none", "light", "full"])
    parser.add_argument("--limit", type=int, default=0, help="use at most N search images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/refine_tuning")
    args = parser.parse_args()

    config = load_config()
    model = CorrosionModel(args.model, threads=2)
    pairs = find_masked_images(args.data, "tune", config.data.holdout_fraction)
    search_pairs, check_pairs = pairs[0::2], pairs[1::2]
    if args.limit:
        search_pairs = search_pairs[:args.limit]
    search, check = load_samples(model, search_pairs), load_samples(model, check_pairs)
    print(f"search {len(search)} images, check {len(check)} images", flush=True)
    rng = np.random.default_rng(args.seed)
    trials, best = [], {}
    for mode in args.paths:
        candidates = [{}] + [draw(rng, SPACE[mode]) for _ in range(args.trials)]
        for step in range(len(candidates) + args.local):
            if step < len(candidates):
                params = candidates[step]
            else:  # local search: shrink the step as it goes
                scale = 0.15 * (1 - (step - len(candidates)) / max(args.local, 1)) + 0.03
                params = perturb(rng, best[mode]["params"] or draw(rng, SPACE[mode]),
                                 SPACE[mode], scale)
            trial = config.replace(params)
            if trial.refine.light_sure_bg >= trial.refine.light_sure_fg:
                continue
            result = evaluate(search, trial, mode, model.threshold)
            trials.append({"path": mode, "params": params, **result})
            print(json.dumps({"path": mode, "iou": round(result["pooled_iou"], 4),
                              "ms": round(result["ms_per_image"], 1), "params": params}),
                  flush=True)
            if result["pooled_iou"] > best.get(mode, {}).get("search_iou", -1):
                best[mode] = {"params": params, "search_iou": result["pooled_iou"],
                              "search_ms": result["ms_per_image"]}
        best[mode]["check"] = evaluate(check, config.replace(best[mode]["params"]), mode,
                                       model.threshold)
    report = {"model": args.model, "data": args.data, "search_images": len(search),
              "check_images": len(check), "baselines_check": baselines(check),
              "best": best, "trials": trials}
    lines = [f"Refine tuning on {args.data} (tune part: {len(search)} search / {len(check)} "
             f"check images), model {args.model}", "",
             f"Baselines on the check images: all-rust IoU "
             f"{report['baselines_check']['all_rust']:.3f}, HSV rust hue "
             f"{report['baselines_check']['hsv_rust_hue']:.3f}", "",
             "| path | search IoU | check IoU | check F1 | ms/image | settings |",
             "|---|---|---|---|---|---|"]
    for mode, b in best.items():
        lines.append(f"| {mode} | {b['search_iou']:.3f} | {b['check']['pooled_iou']:.3f} | "
                     f"{b['check']['pooled_f1']:.3f} | {b['check']['ms_per_image']:.1f} | "
                     f"{json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in b['params'].items()})} |")
    write_report(args.out, report, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

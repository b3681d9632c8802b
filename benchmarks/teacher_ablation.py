"""The teacher's ablation: each ingredient's gain in pooled IoU, chosen on tune, reported on holdout.

Ingredients are added one at a time (converter/teacher.py explains each). For every variant the
fused CAM is thresholded at the level that scores best on the tune split of vt_corrosion, and the
dense CRF settings are picked from a small grid on a tune subset; the holdout split only
measures. Fused maps are cached per variant under --cache so re-runs are cheap.

    python benchmarks/teacher_ablation.py [--cache /tmp/rustseg_teacher_cache]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from common import DEFAULT_KERAS, RESULTS, SHARED_DATA, write_report

VARIANTS = {
    # name: overrides of config.teacher's view settings, cumulative in this order
    "single view (CAM at 320 px)": dict(scales=(320,), crop_grid=0, flip=False, fine_layer=""),
    "+ mirrored views": dict(scales=(320,), crop_grid=0, flip=True, fine_layer=""),
    "+ second scale (448 px)": dict(scales=(320, 448), crop_grid=0, flip=True, fine_layer=""),
    "+ 3x3 half-size crops": dict(scales=(320, 448), crop_grid=3, flip=True, fine_layer=""),
    "+ block_13 layer fusion": dict(scales=(320, 448), crop_grid=3, flip=True,
                                    fine_layer="block_13_expand_relu"),
    # The maps above, walked over the affinities `rustseg distill` learnt (--affinity).
    "+ affinity random walk": dict(scales=(320, 448), crop_grid=3, flip=True,
                                   fine_layer="block_13_expand_relu", walk=True),
}
_THRESHOLDS = np.round(np.arange(0.1, 0.75, 0.05), 2)
_CRF_GRID = dict(cam_gamma=(0.5, 1.0), fg_floor=(0.15, 0.3), fg_ceiling=(0.7, 0.85))
_CRF_TUNE_IMAGES = 80


def fused_maps(name: str, settings, pairs, cache: Path) -> np.ndarray:
    """[N, work, work] fused CAMs for `pairs`, computed once per variant and cached."""
    import cv2

    from converter.export import load_keras_model
    from converter.teacher import MultiViewCam, view_key
    from edge.data.imageio import read_image_bgr

    key = hashlib.sha256(json.dumps(view_key(settings)).encode()).hexdigest()[:16]
    path = cache / f"{key}.npz"
    stems = np.array([p.image.stem for p in pairs])
    if path.is_file():
        stored = np.load(path)
        if list(stored["stems"]) == list(stems):
            return stored["cams"]
    teacher = MultiViewCam(load_keras_model(DEFAULT_KERAS), settings)
    started = time.perf_counter()
    cams = np.stack([teacher.fused(cv2.cvtColor(read_image_bgr(p.image), cv2.COLOR_BGR2RGB))[0]
                     for p in pairs])
    print(f"{name}: {(time.perf_counter() - started) / len(pairs):.2f} s per photo", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, cams=cams, stems=stems)
    return cams


def walked(cams: np.ndarray, pairs, embedding_path: Path, settings) -> np.ndarray:
    """Each fused CAM after the random walk over the learnt affinities of its photo."""
    import cv2
    import keras

    from converter.affinity import random_walk
    from converter.export import load_keras_model
    from converter.model import at_input_size
    from converter.student import feature_model
    from edge.data.imageio import read_image_bgr

    classifier = load_keras_model(DEFAULT_KERAS)
    features = feature_model(at_input_size(classifier, 320))
    embedding = keras.models.load_model(embedding_path, compile=False)
    out = []
    for cam, pair in zip(cams, pairs):
        rgb = cv2.resize(cv2.cvtColor(read_image_bgr(pair.image), cv2.COLOR_BGR2RGB), (320, 320),
                         interpolation=cv2.INTER_AREA)
        maps = features.predict(rgb[None].astype(np.float32), verbose=0)
        out.append(random_walk(embedding.predict(maps, verbose=0)[0], cam,
                               settings.affinity_beta, settings.affinity_steps,
                               settings.affinity_bg_power))
    return np.stack(out)


def pooled_iou(masks, truths) -> float:
    inter = sum(int(np.count_nonzero(m & t)) for m, t in zip(masks, truths))
    union = sum(int(np.count_nonzero(m | t)) for m, t in zip(masks, truths))
    return inter / union if union else 0.0


def upsampled(cams, size_hw):
    import cv2
    return [cv2.resize(c, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR) for c in cams]


def crf_masks(frames, cams, settings):
    from converter.teacher import crf_posterior
    return [crf_posterior(f, c, settings) >= 0.5 for f, c in zip(frames, cams)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="/tmp/rustseg_teacher_cache", type=Path)
    parser.add_argument("--out", default=str(RESULTS / "teacher_ablation"))
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS),
                        help="measure these variants and update their rows in --out's JSON")
    parser.add_argument("--affinity", type=Path, default=Path("build/pseudo/affinity.keras"),
                        help="the embedding `rustseg distill` saved (its --cache folder)")
    args = parser.parse_args()

    from edge.config import load_config
    from edge.data.datasets import find_masked_images
    from edge.data.imageio import read_image_bgr, read_mask

    data = SHARED_DATA / "vt_corrosion" / "train"
    if not data.is_dir():
        raise SystemExit(f"skipped: {data} is not available")
    config = load_config()
    splits = {split: find_masked_images(data, split, config.data.holdout_fraction)
              for split in ("tune", "holdout")}
    frames = {k: [read_image_bgr(p.image) for p in v] for k, v in splits.items()}
    truths = {k: [read_mask(p.mask) for p in v] for k, v in splits.items()}
    out_json = Path(args.out).with_suffix(".json")
    rows = json.loads(out_json.read_text())["rows"] if args.only and out_json.is_file() else []
    for name, overrides in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        rows = [r for r in rows if r["variant"] != name]
        overrides = dict(overrides)
        walk = overrides.pop("walk", False)
        if walk and not args.affinity.is_file():
            print(f"skipped {name}: no {args.affinity} (run rustseg distill first)")
            continue
        variant = replace(config.teacher, **overrides)
        cams = {k: fused_maps(name, variant, v, args.cache) for k, v in splits.items()}
        if walk:
            cams = {k: walked(cams[k], splits[k], args.affinity, variant) for k in cams}
        up = {k: upsampled(cams[k], truths[k][0].shape) for k in cams}
        tune_scores = {t: pooled_iou([c >= t for c in up["tune"]], truths["tune"])
                       for t in _THRESHOLDS}
        threshold = max(tune_scores, key=tune_scores.get)
        row = {"variant": name, "cam_threshold": float(threshold),
               "cam_iou_tune": tune_scores[threshold],
               "cam_iou_holdout": pooled_iou([c >= threshold for c in up["holdout"]],
                                             truths["holdout"])}
        best, best_iou = None, -1.0
        sub = slice(0, _CRF_TUNE_IMAGES)
        for values in itertools.product(*_CRF_GRID.values()):
            crf = replace(variant.crf, **dict(zip(_CRF_GRID, values)))
            settings = replace(variant, crf=crf)
            iou = pooled_iou(crf_masks(frames["tune"][sub], cams["tune"][sub], settings),
                             truths["tune"][sub])
            if iou > best_iou:
                best, best_iou = settings, iou
        row.update(crf=dict(zip(_CRF_GRID, (getattr(best.crf, k) for k in _CRF_GRID))),
                   crf_iou_tune_subset=best_iou,
                   crf_iou_holdout=pooled_iou(crf_masks(frames["holdout"], cams["holdout"], best),
                                              truths["holdout"]))
        print(row, flush=True)
        rows.append(row)
    rows.sort(key=lambda r: list(VARIANTS).index(r["variant"]))
    lines = ["| teacher variant (cumulative) | CAM thr (tune) | CAM IoU holdout | + full-res CRF, IoU holdout |",
             "|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['cam_threshold']:.2f} | {r['cam_iou_holdout']:.3f} | "
              f"{r['crf_iou_holdout']:.3f} |" for r in rows]
    write_report(args.out, {"data": str(data), "rows": rows}, lines)


if __name__ == "__main__":
    main()

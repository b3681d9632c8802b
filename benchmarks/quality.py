"""Mask quality of the shipped model, per refine path, on photos nothing was trained or tuned on.

For each path (none = the thresholded evidence, light, full), with the configured mask gate:
- on the holdout split of vt_corrosion/train: pooled IoU, mean per-image IoU and its
  distribution, empty-mask misses (photos with >= 2 % and >= 5 % rust that get no mask), and
  the pointing game of the evidence (the centre of the hottest evidence cell lies within 15 px
  of a true rust pixel, the tolerance of Zhang et al., "Top-down neural attention by
  excitation backprop", 2016);
- on the no_corrosion photos of corrosion_cls/validation: the mean share of pixels marked
  (false area), which should be about zero;
- on a synthetic failure set (red/brown paint that is not rust and hard shadows, no rust at
  all): the false area too.

It writes results/quality.{json,md} and two contact sheets: the 12 worst holdout photos (photo,
truth, evidence, mask) and 12 corrosion photos of corrosion_cls/validation (photo, evidence,
mask), to show by eye whether the masks cover rust or paint.

    python benchmarks/quality.py [--model M.tflite] [--paths none light full]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import DEFAULT_TFLITE, RESULTS, SHARED_DATA, machine, write_report

_POINTING_TOLERANCE_PX = 15
_MISS_FRACTIONS = (0.02, 0.05)
_SHEET_ROWS = 12
_SYNTHETIC_DECOYS = 40
_MASK_RGB = (0, 220, 255)


def pointing_hit(evidence01: np.ndarray, truth: np.ndarray) -> bool:
    """Is the centre of the hottest evidence cell within the tolerance of a rust pixel?"""
    import cv2

    row, col = np.unravel_index(int(np.argmax(evidence01)), evidence01.shape)
    height, width = truth.shape
    y = min(height - 1, int((row + 0.5) * height / evidence01.shape[0]))
    x = min(width - 1, int((col + 0.5) * width / evidence01.shape[1]))
    if not truth.any():
        return False
    distance = cv2.distanceTransform((~truth).astype(np.uint8), cv2.DIST_L2, 5)
    return bool(distance[y, x] <= _POINTING_TOLERANCE_PX)


def holdout_quality(segmenter, pairs) -> tuple[dict, list[dict]]:
    """Pixel metrics over the holdout pairs, and one record per photo for the sheet."""
    from edge.data.imageio import read_image_bgr, read_mask
    from edge.measure.metrics import SegmentationTally

    tally = SegmentationTally()
    misses = {f: 0 for f in _MISS_FRACTIONS}
    eligible = {f: 0 for f in _MISS_FRACTIONS}
    hits, records = 0, []
    for pair in pairs:
        frame, truth = read_image_bgr(pair.image), read_mask(pair.mask)
        prediction = segmenter.infer(frame, _times())
        result = segmenter.refine(frame, prediction, _times())
        iou = tally.add(result.mask, truth)
        rust = float(truth.mean())
        for fraction in _MISS_FRACTIONS:
            if rust >= fraction:
                eligible[fraction] += 1
                misses[fraction] += not result.mask.any()
        hits += pointing_hit(prediction.evidence01, truth)
        records.append({"image": pair.image, "iou": iou, "truth": truth,
                        "evidence": prediction.evidence01, "mask": result.mask,
                        "score": prediction.score})
    ious = np.array(tally.per_image_iou)
    summary = tally.summary()
    summary.update(
        iou_quantiles={q: float(np.quantile(ious, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)},
        empty_mask_misses={f"rust>={f:.0%}": f"{misses[f]} of {eligible[f]}"
                           for f in _MISS_FRACTIONS},
        empty_mask_misses_5pct=misses[0.05],
        pointing_game=hits / len(pairs))
    return summary, records


def false_area(segmenter, frames) -> float:
    """Mean share of pixels marked on frames that hold no corrosion."""
    return float(np.mean([segmenter.segment(frame).corroded_fraction for frame in frames]))


def synthetic_decoys(count: int) -> list[np.ndarray]:
    """Rust-free scenes, each with red/brown paint and a hard shadow (the CAM's usual traps)."""
    from edge.data.synthetic import SceneOptions, make_scene

    options = SceneOptions(rust=False, decoy_paint_prob=1.0, shadow_prob=1.0)
    return [make_scene(320, 427, seed=9000 + i, options=options)[0] for i in range(count)]


def _times():
    from edge.method.profiler import StageTimes
    return StageTimes()


def contact_sheet(rows: list[dict], path: Path, title: str, with_truth: bool) -> None:
    """One row per photo: photo | truth | evidence | mask over the photo (matplotlib)."""
    import cv2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.data.imageio import read_image_bgr

    columns = ["photo"] + (["truth"] if with_truth else []) + ["evidence", "mask"]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.2 * len(columns),
                                                                 2.0 * len(rows)))
    for r, row in enumerate(rows):
        rgb = cv2.cvtColor(read_image_bgr(row["image"]), cv2.COLOR_BGR2RGB)
        rgb = cv2.resize(rgb, (256, int(256 * rgb.shape[0] / rgb.shape[1])),
                         interpolation=cv2.INTER_AREA)
        size = (rgb.shape[1], rgb.shape[0])
        panels = [rgb]
        if with_truth:
            panels.append(cv2.resize(row["truth"].astype(np.uint8) * 255, size,
                                     interpolation=cv2.INTER_NEAREST))
        panels.append(cv2.resize(row["evidence"], size, interpolation=cv2.INTER_LINEAR))
        mask = cv2.resize(row["mask"].astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        overlay = rgb.copy()  # cyan, so the mask stands out on orange rust
        overlay[mask > 0] = (0.55 * np.array(_MASK_RGB) + 0.45 * overlay[mask > 0]).astype(
            np.uint8)
        panels.append(overlay)
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, cmap="gray" if panel.ndim == 2 and columns[c] == "truth" else
                      "inferno", vmin=0, vmax=1 if columns[c] == "evidence" else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=9)
        label = f"{Path(row['image']).name}\nscore {row['score']:.2f}"
        if "iou" in row:
            label += f"\nIoU {row['iou']:.2f}"
        axes[r, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_TFLITE))
    parser.add_argument("--paths", nargs="+", default=["none", "light", "full"])
    parser.add_argument("--out", default=str(RESULTS / "quality"))
    parser.add_argument("--sheets", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    from edge.config import load_config
    from edge.data.datasets import find_labelled_images, find_masked_images
    from edge.data.imageio import read_image_bgr
    from edge.method.gate import MaskGate
    from edge.method.model import CorrosionModel
    from edge.method.refine.factory import make_refiner
    from edge.method.segment import Segmenter

    vt = SHARED_DATA / "vt_corrosion" / "train"
    cls = SHARED_DATA / "corrosion_cls" / "validation"
    if not vt.is_dir() or not cls.is_dir():
        raise SystemExit(f"skipped: {vt} or {cls} is not available")
    config = load_config()
    model = CorrosionModel(args.model, config.model.threads)
    gate = MaskGate.from_config(model.threshold, config.gate)
    holdout = find_masked_images(vt, "holdout", config.data.holdout_fraction)
    labelled = find_labelled_images(cls)
    clean = [read_image_bgr(i.path) for i in labelled if i.label == 0]
    rusty = [i.path for i in labelled if i.label == 1]
    decoys = synthetic_decoys(_SYNTHETIC_DECOYS)
    report = {"machine": machine(), "model": args.model, "contract": model.contract,
              "gate": vars(gate), "holdout": f"{len(holdout)} photos of {vt} (split holdout)",
              "false_area_on": f"{len(clean)} no_corrosion photos of {cls}", "paths": {}}
    worst_records = None
    for mode in args.paths:
        segmenter = Segmenter(model, make_refiner(mode, config.refine, config.loop.target_fps),
                              gate)
        summary, records = holdout_quality(segmenter, holdout)
        summary["false_area_no_corrosion"] = false_area(segmenter, clean)
        summary["false_area_synthetic_decoys"] = false_area(segmenter, decoys)
        report["paths"][mode] = summary
        print(mode, {k: summary[k] for k in ("pooled_iou", "mean_iou", "pointing_game",
                                               "empty_mask_misses", "false_area_no_corrosion")},
              flush=True)
        if mode == "light" or worst_records is None:
            worst_records, worst_segmenter = records, segmenter
    lines = ["| path | pooled IoU | mean IoU | median IoU | misses >=2 % / >=5 % | pointing | "
             "false area (no_corrosion) | false area (synthetic decoys) |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, s in report["paths"].items():
        misses = " / ".join(s["empty_mask_misses"].values())
        lines.append(f"| {mode} | {s['pooled_iou']:.3f} | {s['mean_iou']:.3f} | "
                     f"{s['iou_quantiles'][0.5]:.3f} | {misses} | {s['pointing_game']:.2f} | "
                     f"{s['false_area_no_corrosion']:.4f} | "
                     f"{s['false_area_synthetic_decoys']:.4f} |")
    write_report(args.out, report, lines)
    if args.sheets:
        worst = sorted(worst_records, key=lambda r: r["iou"])[:_SHEET_ROWS]
        contact_sheet(worst, RESULTS / "quality_worst_holdout.png",
                      f"12 worst vt_corrosion holdout photos ({worst_segmenter.refiner.name})",
                      with_truth=True)
        rng = np.random.default_rng(0)
        web = []
        for path in rng.permutation(np.array(rusty, dtype=object))[:_SHEET_ROWS]:
            frame = read_image_bgr(path)
            prediction = worst_segmenter.infer(frame, _times())
            result = worst_segmenter.refine(frame, prediction, _times())
            web.append({"image": path, "evidence": prediction.evidence01, "mask": result.mask,
                        "score": prediction.score})
        contact_sheet(web, RESULTS / "quality_web_photos.png",
                      f"12 corrosion photos of corrosion_cls/validation "
                      f"({worst_segmenter.refiner.name})", with_truth=False)


if __name__ == "__main__":
    main()

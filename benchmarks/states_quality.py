"""Condition states and masks of a v3 model on the holdout split, beside the v2 model it grew from.

On the holdout split of vt_corrosion/train (never trained, tuned or selected on), with the
light path and the configured gate, for frames (one invoke) and for stills (tiled inference):
- binary pooled IoU, misses and mean IoU, for the v3 model and the v2 baseline;
- for the v3 model: IoU and recall per state, the pixel confusion matrix, the quadratic weighted
  kappa, and the worst state per photo (balanced accuracy, within one), all from `rustseg eval`'s
  own code (edge/measure/evaluate.py);
- classification on corrosion_cls/validation for both models (the backbone is frozen, so the
  figures should be identical);
- a contact sheet: photo, truth states, predicted states (results/states_holdout.png).

    python benchmarks/states_quality.py [--model models/rustseg_default.tflite]
        [--baseline build/v2/rustseg_default.tflite]
Writes results/states_quality.{json,md} and results/states_holdout.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import DEFAULT_TFLITE, RESULTS, SHARED_DATA, machine, write_report

_SHEET_ROWS = 10
_STATE_RGB = {1: (255, 225, 25), 2: (0, 160, 250), 3: (180, 0, 110)}  # = config.yaml overlay


def evaluate(model: str, data: Path, tile_grid: int, split: str = "holdout") -> dict:
    from edge.config import load_config
    from edge.measure.evaluate import EvalRequest, evaluate as run_eval
    from edge.method.segment import build_segmenter

    config = load_config(None).replace({"model.path": model, "refine.mode": "light",
                                        "stills.tile_grid": tile_grid})
    return run_eval(build_segmenter(config), EvalRequest(str(data), None, split,
                                                         config.data.holdout_fraction))


def contact_sheet(model: str, data: Path, path: Path, tile_grid: int) -> None:
    """Rows of holdout photos: the photo, the expert's states, the model's states."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.config import load_config
    from edge.data.datasets import find_masked_images
    from edge.data.imageio import read_image_bgr, read_state_mask
    from edge.method.segment import build_segmenter

    config = load_config(None).replace({"model.path": model, "refine.mode": "light",
                                        "stills.tile_grid": tile_grid})
    segmenter = build_segmenter(config)
    pairs = find_masked_images(data, "holdout", config.data.holdout_fraction)
    rows = pairs[::max(1, len(pairs) // _SHEET_ROWS)][:_SHEET_ROWS]
    figure, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.5 * len(rows)))
    for (photo_axis, truth_axis, ours_axis), pair in zip(axes, rows):
        frame = read_image_bgr(pair.image)
        truth = read_state_mask(pair.mask)
        ours = segmenter.segment(frame, still=True).state
        photo = frame[..., ::-1]
        photo_axis.imshow(photo)
        truth_axis.imshow(_painted(photo, truth))
        ours_axis.imshow(_painted(photo, ours))
        photo_axis.set_ylabel(pair.image.name, fontsize=7)
    for axis, title in zip(axes[0], ("photo", "expert states", "predicted states")):
        axis.set_title(title, fontsize=9)
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("holdout photos; yellow Fair, blue Poor, magenta Severe", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _painted(photo_rgb: np.ndarray, states: np.ndarray) -> np.ndarray:
    out = photo_rgb.astype(np.float32) * 0.5
    for level, colour in _STATE_RGB.items():
        out[states == level] = np.array(colour, np.float32)
    return out.astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(DEFAULT_TFLITE))
    parser.add_argument("--baseline", default="build/v2/rustseg_default.tflite",
                        help="the v2 model to compare with (absent: the comparison is left out)")
    args = parser.parse_args()
    vt = SHARED_DATA / "vt_corrosion" / "train"
    validation = SHARED_DATA / "corrosion_cls" / "validation"
    models = {"v3": args.model}
    if Path(args.baseline).is_file():
        models["v2"] = args.baseline
    report = {"machine": machine(), "models": models, "runs": {}}
    for name, model in models.items():
        for label, grid in (("frames", 0), ("stills_tiles", 3)):
            run = evaluate(model, vt, grid)
            report["runs"][f"{name}_{label}"] = {k: v for k, v in run.items()
                                                if k != "skipped_reasons"}
            print(name, label, round(run["pooled_iou"], 4), run.get("state_iou"), flush=True)
        cls = evaluate(model, validation, 0)
        report["runs"][f"{name}_classification"] = cls
    contact_sheet(args.model, vt, RESULTS / "states_holdout.png", 3)
    runs = report["runs"]
    lines = ["# Condition states and masks on the holdout split", "",
             "`python benchmarks/states_quality.py`: light path, configured gate; frames = one "
             "invoke, stills = tiled inference (3x3 half-size crops + the full frame).", "",
             "| model, input | binary pooled IoU | mean IoU | IoU Fair | Poor | Severe | "
             "recall Fair | Poor | Severe | QWK | worst state bal. acc. | within one |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, run in runs.items():
        if key.endswith("classification"):
            continue
        iou, recall = run.get("state_iou", {}), run.get("state_recall", {})

        def cell(values, name):
            value = values.get(name)
            return "-" if value is None else f"{value:.3f}"
        lines.append(f"| {key} | {run['pooled_iou']:.3f} | {run['mean_iou']:.3f} | "
                     + " | ".join(cell(iou, n) for n in ("fair", "poor", "severe")) + " | "
                     + " | ".join(cell(recall, n) for n in ("fair", "poor", "severe")) + " | "
                     + f"{run.get('state_quadratic_kappa', '-')} | "
                     + f"{run.get('worst_state_balanced_accuracy', '-')} | "
                     + f"{run.get('worst_state_within_one', '-')} |")
    lines += ["", "| model | accuracy | AUC (corrosion_cls/validation) |", "|---|---|---|"]
    for name in models:
        cls = runs[f"{name}_classification"]
        lines.append(f"| {name} | {cls['accuracy']:.4f} | {cls['auc']:.4f} |")
    if "state_confusion" in runs.get("v3_stills_tiles", {}):
        confusion = runs["v3_stills_tiles"]["state_confusion"]
        lines += ["", "Pixel confusion, v3 stills (rows truth, columns predicted; "
                  "background, fair, poor, severe):", ""]
        lines += [f"    {row}" for row in confusion["rows_truth_cols_predicted"]]
    write_report(RESULTS / "states_quality", report, lines)


if __name__ == "__main__":
    main()

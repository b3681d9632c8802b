"""`rustseg eval`: the model (and a refine path) measured on a labelled folder.

- class folders (corrosion/, no_corrosion/) -> classification metrics at the card's threshold;
- images+masks folders -> pixel metrics of the masks the chosen refine path produces, pooled
  over all pixels of all images, plus the per-image mean IoU and ms per image.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.data.datasets import find_labelled_images, find_masked_images, is_class_folder, \
    is_mask_folder
from edge.data.imageio import read_image_bgr, read_state_mask
from edge.errors import DataError
from edge.measure.metrics import SegmentationTally, StateTally, classification_metrics
from edge.measure.progress import Progress
from edge.method.profiler import StageTimes
from edge.method.segment import Segmenter


_DEFAULT_WORST_MIN_SHARE = 0.05  # for cards that do not state their tagging rule


@dataclass(frozen=True)
class EvalRequest:
    data: str
    json_out: str | None
    split: str = "all"
    holdout_fraction: float = 0.25
    limit: int = 0             # 0: every image


def check_layout(data: str | Path) -> str:
    """'classification' or 'segmentation' for a dataset folder; DataError for anything else."""
    root = Path(data)
    if is_class_folder(root):
        return "classification"
    if is_mask_folder(root):
        return "segmentation"
    raise DataError(f"--data {root}: expected class folders (corrosion/, no_corrosion/) or "
                    "an images+masks folder (images/, masks/)")


def evaluate(segmenter: Segmenter, request: EvalRequest) -> dict:
    root = Path(request.data)
    if check_layout(root) == "classification":
        report = _classification(segmenter, root, request.limit)
    else:
        report = _segmentation(segmenter, root, request)
    report.update(model=str(segmenter.model.path), runtime=segmenter.model.runtime,
                  data=str(root))
    if request.json_out:
        out = Path(request.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def _classification(segmenter: Segmenter, root: Path, limit: int) -> dict:
    items = find_labelled_images(root)
    if limit:
        items = items[::max(1, len(items) // limit)][:limit]
    labels, scores, unreadable = [], [], 0
    progress = Progress(len(items), "eval")
    started = time.perf_counter()
    for item in items:
        progress.update()
        try:
            frame = read_image_bgr(item.path)
        except DataError:
            unreadable += 1
            continue
        prediction = segmenter.infer(frame, StageTimes())
        labels.append(item.label)
        scores.append(prediction.score)
    progress.close()
    if not labels:
        raise DataError(f"--data {root}: no readable image")
    report = classification_metrics(np.array(labels), np.array(scores),
                                    segmenter.model.threshold)
    report.update(kind="classification", unreadable=unreadable,
                  ms_per_image=1000 * (time.perf_counter() - started) / len(labels))
    return report


def _segmentation(segmenter: Segmenter, root: Path, request: EvalRequest) -> dict:
    pairs = find_masked_images(root, request.split, request.holdout_fraction)
    if request.limit:
        pairs = pairs[:request.limit]
    tally = SegmentationTally()
    states = StateTally(_worst_min_share(segmenter)) if segmenter.state_thresholds else None
    paths: dict[str, int] = {}
    elapsed_ms = []
    progress = Progress(len(pairs), f"eval {segmenter.refiner.name}")
    skipped: list[str] = []    # bad pairs are passed over and counted, not fatal
    for pair in pairs:
        progress.update()
        try:
            frame, truth_states = read_image_bgr(pair.image), read_state_mask(pair.mask)
        except DataError as exc:
            skipped.append(str(exc))
            continue
        truth = truth_states > 0
        if truth.shape != frame.shape[:2]:
            skipped.append(f"mask {pair.mask} is {truth.shape[1]}x{truth.shape[0]} but image "
                           f"{pair.image} is {frame.shape[1]}x{frame.shape[0]}")
            continue
        times = StageTimes()
        result = segmenter.segment(frame, times, still=True)
        elapsed_ms.append(times.total())
        tally.add(result.mask, truth)
        if states is not None:
            states.add(result.state, truth_states)
        paths[result.path] = paths.get(result.path, 0) + 1
    progress.close()
    if not elapsed_ms:
        raise DataError(f"--data {root}: no usable image+mask pair ({len(skipped)} skipped; "
                        f"first: {skipped[0] if skipped else 'none found'})")
    report = tally.summary()
    if states is not None:
        report.update(states.summary())
    report.update(kind="segmentation", tiles=segmenter.tile_grid, refine=segmenter.refiner.name, split=request.split,
                  skipped_pairs=len(skipped), skipped_reasons=skipped,
                  ms_per_image=float(np.mean(elapsed_ms)),
                  ms_per_image_p50=float(np.median(elapsed_ms)), paths_used=paths)
    return report


def _worst_min_share(segmenter: Segmenter) -> float:
    """The share a state must cover to be a photo's worst: the card's tagging rule."""
    training = segmenter.model.card.states.get("training", {})
    return float(training.get("min_share", _DEFAULT_WORST_MIN_SHARE))


def format_report(report: dict) -> str:
    """The human summary printed on stdout."""
    if report["kind"] == "classification":
        (tn, fp), (fn, tp) = report["confusion"]
        auc = "n/a" if report["auc"] is None else f"{report['auc']:.4f}"
        return (f"{report['n_images']} images from {report['data']}\n"
                f"accuracy {report['accuracy']:.4f}  precision {report['precision']:.4f}  "
                f"recall {report['recall']:.4f}  f1 {report['f1']:.4f}  auc {auc}\n"
                f"confusion (rows truth no/yes, cols predicted no/yes): [[{tn}, {fp}], "
                f"[{fn}, {tp}]] at threshold {report['threshold']:g}\n"
                f"{report['ms_per_image']:.1f} ms per image (decode + preprocess + invoke)")
    return (f"{report['n_images']} images from {report['data']} (split {report['split']}), "
            f"refine {report['refine']}\n"
            f"pooled IoU {report['pooled_iou']:.4f}  pooled F1 {report['pooled_f1']:.4f}  "
            f"mean IoU {report['mean_iou']:.4f}  precision {report['precision']:.4f}  "
            f"recall {report['recall']:.4f}\n"
            f"{report['ms_per_image']:.1f} ms per image mean, {report['ms_per_image_p50']:.1f} "
            f"p50 (preprocess + invoke + refine); paths used {report['paths_used']}"
            + (_format_states(report) if "state_iou" in report else "")
            + (f"\nskipped {report['skipped_pairs']} bad pair(s), first: "
               f"{report['skipped_reasons'][0]}" if report["skipped_pairs"] else ""))


def _format_states(report: dict) -> str:
    iou, recall = report["state_iou"], report["state_recall"]

    def line(values):
        return "  ".join(f"{name} {'n/a' if v is None else f'{v:.4f}'}"
                         for name, v in values.items())
    return (f"\nstates: IoU {line(iou)}\n        recall {line(recall)}\n"
            f"        quadratic weighted kappa {report['state_quadratic_kappa']}; worst state "
            f"per photo ({report['worst_state_rule']}): balanced accuracy "
            f"{report['worst_state_balanced_accuracy']}, within one "
            f"{report['worst_state_within_one']}")

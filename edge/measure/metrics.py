"""Classification and segmentation metrics in plain numpy (shared by train, eval and benches)."""

from __future__ import annotations

import numpy as np


def classification_metrics(labels: np.ndarray, scores: np.ndarray,
                           threshold: float) -> dict:
    """accuracy, precision, recall, f1, auc and confusion [[tn, fp], [fn, tp]] at `threshold`.

    `labels` are 0/1, `scores` probabilities of class 1. AUC is the Mann-Whitney statistic
    (ties count one half); it is None when only one class is present.
    """
    labels = np.asarray(labels).astype(int).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in length")
    predicted = (scores >= threshold).astype(int)
    tp = int(np.sum((predicted == 1) & (labels == 1)))
    tn = int(np.sum((predicted == 0) & (labels == 0)))
    fp = int(np.sum((predicted == 1) & (labels == 0)))
    fn = int(np.sum((predicted == 0) & (labels == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / len(labels) if len(labels) else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "auc": roc_auc(labels, scores),
        "confusion": [[tn, fp], [fn, tp]],
        "threshold": float(threshold),
        "n_images": int(len(labels)),
    }


def balanced_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the best balanced accuracy (mean of the two class recalls).

    Candidates are midpoints between consecutive distinct scores, so the result separates
    the given scores rather than sitting on one. Falls back to 0.5 for a single class.
    """
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.all() or not labels.any():
        return 0.5
    distinct = np.unique(scores)
    candidates = np.concatenate([[distinct[0] - 1e-6], (distinct[:-1] + distinct[1:]) / 2,
                                 [distinct[-1] + 1e-6]])
    best, best_value = 0.5, -1.0
    for threshold in candidates:
        predicted = scores >= threshold
        value = (predicted[labels].mean() + (~predicted[~labels]).mean()) / 2
        if value > best_value:
            best, best_value = float(threshold), value
    return best


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve via average ranks (ties get the mean rank)."""
    labels = np.asarray(labels).astype(bool).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores)[order]
    ranks = np.empty(len(scores), np.float64)
    # Average rank (1-based) of each run of equal scores.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    for start, count in zip(first, counts):
        ranks[order[start:start + count]] = start + (count + 1) / 2.0
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class SegmentationTally:
    """Accumulates pixel counts over images for pooled IoU/F1, and per-image IoU for the mean."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0
        self.per_image_iou: list[float] = []

    def add(self, predicted: np.ndarray, truth: np.ndarray) -> float:
        """Add one image (bool masks of equal shape); returns its IoU (1.0 if both empty)."""
        if predicted.shape != truth.shape:
            raise ValueError(f"mask shapes differ: predicted {predicted.shape}, "
                             f"truth {truth.shape}")
        predicted, truth = predicted.astype(bool), truth.astype(bool)
        tp = int(np.count_nonzero(predicted & truth))
        fp = int(np.count_nonzero(predicted & ~truth))
        fn = int(np.count_nonzero(~predicted & truth))
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn
        iou = tp / (tp + fp + fn) if tp + fp + fn else 1.0
        self.per_image_iou.append(iou)
        return iou

    def summary(self) -> dict:
        tp, fp, fn = self.tp, self.fp, self.fn
        return {
            "pooled_iou": tp / (tp + fp + fn) if tp + fp + fn else 0.0,
            "pooled_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
            "mean_iou": float(np.mean(self.per_image_iou)) if self.per_image_iou else 0.0,
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "n_images": len(self.per_image_iou),
        }

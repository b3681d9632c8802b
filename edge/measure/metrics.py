"""Classification, segmentation and condition-state metrics (shared by train, eval and the
benchmarks), computed with scikit-learn where it has the metric."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score,
                             confusion_matrix, precision_recall_fscore_support, roc_auc_score)

from edge.method.states import STATE_NAMES, worst_state

_STATE_VALUES = list(range(len(STATE_NAMES) + 1))   # 0 background, 1 Fair .. 3 Severe


def classification_metrics(labels: np.ndarray, scores: np.ndarray,
                           threshold: float) -> dict:
    """accuracy, precision, recall, f1, auc and confusion [[tn, fp], [fn, tp]] at `threshold`.

    `labels` are 0/1, `scores` probabilities of class 1. AUC is None when only one class is
    present (it is undefined then).
    """
    labels = np.asarray(labels).astype(int).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in length")
    predicted = (scores >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predicted, average="binary", zero_division=0.0)
    return {
        "accuracy": float(accuracy_score(labels, predicted)) if len(labels) else 0.0,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "auc": roc_auc(labels, scores),
        "confusion": confusion_matrix(labels, predicted, labels=[0, 1]).tolist(),
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
    """Area under the ROC curve (ties count one half); None when only one class is present."""
    labels = np.asarray(labels).astype(bool).ravel()
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, np.asarray(scores, np.float64).ravel()))


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


class StateTally:
    """Condition states pooled over photos: the pixel confusion matrix (background and the
    three states), and the worst state of each photo, truth and predicted.

    The worst state of a photo follows the tagging rule the state head learnt from: the worst
    state that covers at least `worst_min_share` of the photo (converter/states.py)."""

    def __init__(self, worst_min_share: float) -> None:
        self.worst_min_share = worst_min_share
        self.confusion = np.zeros((len(_STATE_VALUES),) * 2, np.int64)  # rows truth, cols ours
        self.truth_worst: list[int] = []
        self.predicted_worst: list[int] = []

    def add(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        """One photo's uint8 state maps (0..3) of equal shape."""
        if predicted.shape != truth.shape:
            raise ValueError(f"state maps differ: predicted {predicted.shape}, "
                             f"truth {truth.shape}")
        self.confusion += confusion_matrix(truth.ravel(), predicted.ravel(),
                                           labels=_STATE_VALUES)
        self.truth_worst.append(worst_state(truth, self.worst_min_share))
        self.predicted_worst.append(worst_state(predicted, self.worst_min_share))

    def summary(self) -> dict:
        c = self.confusion
        diagonal = np.diag(c).astype(np.float64)
        union = c.sum(axis=0) + c.sum(axis=1) - diagonal
        iou = np.divide(diagonal, union, out=np.full(len(c), np.nan), where=union > 0)
        recall = np.divide(diagonal, c.sum(axis=1), out=np.full(len(c), np.nan),
                           where=c.sum(axis=1) > 0)
        # Quadratic weighted kappa over every pixel, background included: the 16 cells of the
        # confusion matrix as samples weighted by their counts (exact, without 10^8 labels).
        truth_values, predicted_values = np.divmod(np.arange(c.size), len(c))
        kappa = cohen_kappa_score(truth_values, predicted_values, weights="quadratic",
                                  sample_weight=c.ravel()) if c.sum() else float("nan")
        truth_worst, predicted_worst = np.array(self.truth_worst), np.array(self.predicted_worst)
        return {
            "state_iou": {name: _rounded(iou[i + 1]) for i, name in enumerate(STATE_NAMES)},
            "state_recall": {name: _rounded(recall[i + 1]) for i, name in enumerate(STATE_NAMES)},
            "state_confusion": {"labels": ["background", *STATE_NAMES],
                                "rows_truth_cols_predicted": c.tolist()},
            "state_quadratic_kappa": _rounded(kappa),
            "worst_state_rule": f"worst state covering >= {self.worst_min_share:.0%} of a photo",
            "worst_state_balanced_accuracy": _rounded(balanced_accuracy_score(
                truth_worst, predicted_worst)) if len(truth_worst) else None,
            "worst_state_within_one": _rounded(np.mean(np.abs(truth_worst - predicted_worst)
                                                       <= 1)) if len(truth_worst) else None,
            "worst_state_confusion": confusion_matrix(truth_worst, predicted_worst,
                                                      labels=_STATE_VALUES).tolist(),
        }


def _rounded(value) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)

"""`rustseg eval` on class folders and on images+masks folders."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import DEFAULT_MODEL, shared_data
from edge.data.datasets import find_masked_images, split_of
from edge.data.synthetic import write_classification_folder, write_mask_folder
from edge.measure.metrics import SegmentationTally, classification_metrics, roc_auc


def _rustseg(*args):
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True,
                          text=True)


def test_auc_and_metrics_on_known_inputs():
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5  # a tie counts one half
    assert roc_auc(np.array([1, 1]), np.array([0.2, 0.3])) is None
    m = classification_metrics(np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.2, 0.6, 0.1, 0.7]),
                               0.5)
    assert m["confusion"] == [[1, 1], [1, 2]]
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(3 / 5)


def test_segmentation_tally_pools_pixels():
    tally = SegmentationTally()
    truth = np.zeros((4, 4), bool)
    truth[:2] = True
    assert tally.add(truth.copy(), truth) == 1.0
    predicted = np.zeros((4, 4), bool)
    predicted[:1] = True
    assert tally.add(predicted, truth) == 0.5
    summary = tally.summary()
    assert summary["pooled_iou"] == pytest.approx(12 / 16)
    assert summary["mean_iou"] == pytest.approx(0.75)


def test_holdout_split_is_stable_and_disjoint(tmp_path):
    root = write_mask_folder(tmp_path / "seg", n_images=20, height=32, width=32, seed=0)
    tune = {p.image.stem for p in find_masked_images(root, "tune", 0.3)}
    holdout = {p.image.stem for p in find_masked_images(root, "holdout", 0.3)}
    assert tune and holdout and not tune & holdout and len(tune | holdout) == 20
    assert all(split_of(s, 0.3) == "holdout" for s in holdout)


def test_eval_class_folders_writes_the_metrics(tmp_path):
    data = write_classification_folder(tmp_path / "cls", n_per_class=4, size=80, seed=3)
    out = tmp_path / "cls.json"
    result = _rustseg("eval", "--data", str(data), "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert {"accuracy", "precision", "recall", "f1", "auc", "confusion",
            "n_images"} <= set(report)
    assert report["n_images"] == 8 and "accuracy" in result.stdout


@pytest.mark.parametrize("refine", ["none", "light", "full", "auto"])
def test_eval_mask_folder_for_each_refine_path(tmp_path, refine):
    data = write_mask_folder(tmp_path / "seg", n_images=4, height=120, width=160, seed=5)
    out = tmp_path / "seg.json"
    result = _rustseg("eval", "--data", str(data), "--json", str(out), "--refine", refine)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert {"pooled_iou", "pooled_f1", "mean_iou", "precision", "recall", "n_images",
            "ms_per_image"} <= set(report)
    assert report["n_images"] == 4 and report["refine"] == refine


def test_eval_rejects_a_folder_of_the_wrong_shape(tmp_path):
    result = _rustseg("eval", "--data", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("rustseg: error: ") and result.stderr.count("\n") == 1
    assert "expected class folders" in result.stderr


def test_shipped_model_on_the_real_validation_split():
    folder = shared_data("corrosion_cls", "validation")
    from edge.config import load_config
    from edge.measure.evaluate import EvalRequest, evaluate
    from edge.method.model import CorrosionModel
    from edge.method.refine.factory import make_refiner
    from edge.method.segment import Segmenter

    config = load_config()
    segmenter = Segmenter(CorrosionModel(DEFAULT_MODEL, 2),
                          make_refiner("none", config.refine, 15))
    report = evaluate(segmenter, EvalRequest(str(folder), None))
    assert report["accuracy"] >= 0.92 and report["f1"] >= 0.92 and report["auc"] >= 0.97


def test_balanced_threshold_separates_the_classes():
    from edge.measure.metrics import balanced_threshold

    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    scores = np.array([0.05, 0.1, 0.3, 0.25, 0.4, 0.6, 0.7, 0.9])
    threshold = balanced_threshold(labels, scores)
    assert 0.3 < threshold < 0.4   # between the highest negative and the next positive
    assert balanced_threshold(np.ones(3), np.array([0.2, 0.4, 0.9])) == 0.5


def test_a_mask_of_the_wrong_size_is_skipped_and_counted(tmp_path):
    import cv2

    data = write_mask_folder(tmp_path / "seg", n_images=3, height=60, width=80, seed=2)
    bad = sorted((data / "masks").iterdir())[0]
    cv2.imwrite(str(bad), np.zeros((30, 40), np.uint8))
    out = tmp_path / "seg.json"
    result = _rustseg("eval", "--data", str(data), "--json", str(out), "--refine", "none")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["n_images"] == 2 and report["skipped_pairs"] == 1
    assert bad.name in report["skipped_reasons"][0] and "skipped 1 bad pair" in result.stdout


def test_unwritable_json_fails_before_the_run(tmp_path):
    data = write_mask_folder(tmp_path / "seg", n_images=2, height=40, width=40, seed=1)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = _rustseg("eval", "--data", str(data), "--json", str(blocker / "r.json"))
    assert result.returncode == 2, result.stderr
    assert "--json" in result.stderr and "Not a directory" in result.stderr
    assert "eval" not in result.stderr.split("rustseg: error:")[0]  # no progress: nothing ran
    assert "model " not in result.stderr  # refused before the model was even loaded


def test_negative_limit_is_refused(tmp_path):
    data = write_mask_folder(tmp_path / "seg", n_images=2, height=40, width=40, seed=1)
    result = _rustseg("eval", "--data", str(data), "--limit", "-1")
    assert result.returncode == 2 and "--limit" in result.stderr and ">= 0" in result.stderr

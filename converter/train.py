"""`rustseg train`: fit the classifier on image-level labels, keep the best epoch, report.

Schedule: stage 1 trains only the logit layer on a frozen ImageNet backbone (fast, stable);
stage 2 unfreezes the backbone from `train.finetune_from` at a lower learning rate. Early
stopping watches validation AUC in each stage and the best epoch over both stages is kept.

Outputs next to `--out NAME`: NAME.keras (best weights), NAME.train.log (one line per epoch,
flushed as it goes) and NAME.metrics.json (validation metrics of the kept model).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from converter.data import (ImageSet, evaluation_images, load_class_folders, load_mask_tiles,
                            report_skipped, stored_side, stratified_split, training_dataset)
from converter.model import build_classifier, resolve_weights, set_trainable
from edge.config import Config
from edge.errors import DataError
from edge.measure.metrics import balanced_threshold, classification_metrics

_DECISION_THRESHOLD = 0.5
_PREDICT_BATCH = 64


@dataclass(frozen=True)
class TrainRequest:
    data: str
    out: str
    val: str | None = None
    tiles_from: str | None = None


class _EpochLog(keras.callbacks.Callback):
    """Writes one line per epoch to the log file and stdout, and keeps the best weights."""

    def __init__(self, log_file, stage: str, best: dict) -> None:
        super().__init__()
        self.log_file, self.stage, self.best = log_file, stage, best
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if sys.stderr.isatty():
            print(f"\r  {self.stage} batch {batch + 1} loss {logs.get('loss', 0):.4f}",
                  end="", file=sys.stderr, flush=True)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        record = {"stage": self.stage, "epoch": epoch + 1,
                  "seconds": round(time.perf_counter() - self.started, 1),
                  **{k: round(float(v), 5) for k, v in logs.items()}}
        improved = logs.get("val_auc", -1) > self.best.get("val_auc", -1)
        if improved:
            self.best.update(val_auc=float(logs["val_auc"]), stage=self.stage, epoch=epoch + 1,
                             weights=self.model.get_weights())
        record["best"] = improved
        line = json.dumps(record)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()


def load_training_data(request: TrainRequest, config: Config,
                       ) -> tuple[ImageSet, ImageSet, ImageSet | None]:
    """(train, validation, calibration) image sets as the request and config describe them.

    The calibration set is a share of the class-folder training images kept out of training
    to choose the decision threshold, so the validation set only ever measures.
    """
    cfg = config.train
    side = stored_side(cfg.input_size)
    train = load_class_folders(request.data, side)
    report_skipped(train)
    if request.val:
        val = load_class_folders(request.val, side)
        report_skipped(val)
    else:
        train, val = stratified_split(train, cfg.val_fraction, cfg.seed)
    calibration = None
    if cfg.calibration_fraction > 0:
        train, calibration = stratified_split(train, cfg.calibration_fraction, cfg.seed + 1)
    if request.tiles_from:
        tiles = load_mask_tiles(request.tiles_from, side, cfg.tile_size, cfg.tile_stride,
                                cfg.tile_positive_min, cfg.tile_negative_max,
                                config.data.holdout_fraction, cfg.tile_weight)
        report_skipped(tiles)
        train = train.concat(tiles)
    return train, val, calibration


def train(request: TrainRequest, config: Config) -> dict:
    """Run the whole schedule; returns the metrics dict also written to NAME.metrics.json."""
    cfg = config.train
    out = Path(request.out)
    if out.suffix == ".keras":
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    weights_path = resolve_weights(cfg.weights, cfg.alpha, cfg.weights_dir)

    train_set, val_set, calibration = load_training_data(request, config)
    negatives, positives = train_set.counts()
    print(f"train: {len(train_set)} images ({positives} corrosion, {negatives} no_corrosion) "
          f"from {train_set.description}; validation: {len(val_set)} from {val_set.description}",
          flush=True)
    dataset = training_dataset(train_set, cfg.input_size, cfg.batch_size, cfg.max_hue_shift,
                               cfg.seed)
    val_x = evaluation_images(val_set, cfg.input_size)
    val_y = val_set.labels.astype(np.float32)[:, None]

    model = build_classifier(cfg.input_size, cfg.alpha, weights_path, cfg.dropout)
    best: dict = {}
    log_path = out.with_suffix(".train.log")
    with open(log_path, "w") as log_file:
        log_file.write(json.dumps({"config": asdict(cfg), "data": request.data,
                                   "val": request.val, "tiles_from": request.tiles_from,
                                   "n_train": len(train_set), "n_val": len(val_set)}) + "\n")
        stages = [("head", cfg.head_epochs, cfg.head_lr, None),
                  ("finetune", cfg.finetune_epochs, cfg.finetune_lr, cfg.finetune_from)]
        if weights_path is None:  # random init: everything must learn from the start
            stages = [("scratch", cfg.head_epochs + cfg.finetune_epochs, cfg.head_lr, "")]
        for stage, epochs, learning_rate, first_trainable in stages:
            if epochs == 0:
                continue
            if best.get("weights") is not None:
                model.set_weights(best["weights"])  # fine-tune from the best head, not the last
            set_trainable(model, first_trainable, freeze_batchnorm=weights_path is not None)
            _fit(model, dataset, (val_x, val_y), stage, epochs, learning_rate, cfg,
                 _EpochLog(log_file, stage, best))
    if best.get("weights") is None:
        raise DataError("training ran no epoch; set train.head_epochs or train.finetune_epochs")
    model.set_weights(best["weights"])
    # Saved from a fresh, uncompiled copy: the optimizer state would triple the file size.
    clean = build_classifier(cfg.input_size, cfg.alpha, None, cfg.dropout)
    clean.set_weights(best["weights"])
    clean.save(out.with_suffix(".keras"))

    threshold = _DECISION_THRESHOLD
    if calibration is not None:
        threshold = balanced_threshold(calibration.labels,
                                       _scores(model, evaluation_images(calibration, cfg.input_size)))
    scores = _scores(model, val_x)
    metrics = classification_metrics(val_set.labels, scores, threshold)
    metrics.update(at_threshold_0_5=classification_metrics(val_set.labels, scores, 0.5),
                   threshold_from=(f"balanced accuracy on {len(calibration)} held-out training "
                                   "images" if calibration is not None else "fixed 0.5"),
                   best_stage=best["stage"], best_epoch=best["epoch"],
                   validation=request.val or f"{cfg.val_fraction:g} of {request.data}",
                   training_data=train_set.description, n_train=len(train_set),
                   labels="image-level" + (" (+ tiles labelled by mask coverage)"
                                           if request.tiles_from else ""))
    out.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _scores(model: keras.Model, images: np.ndarray) -> np.ndarray:
    logits = model.predict(images, batch_size=_PREDICT_BATCH, verbose=0)[:, 0]
    return 1 / (1 + np.exp(-logits))


def _fit(model, dataset, validation, stage, epochs, learning_rate, cfg, logger):
    """One stage; classes and sources are balanced by the dataset's sample weights."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(from_logits=True,
                                             label_smoothing=cfg.label_smoothing),
        metrics=[keras.metrics.AUC(from_logits=True, name="auc"),
                 keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")])
    stop = keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=cfg.patience)
    model.fit(dataset, validation_data=validation, epochs=epochs,
              callbacks=[logger, stop], verbose=0, validation_batch_size=_PREDICT_BATCH)

"""Condition states (model contract v3): how bad the rust is, learnt from tile tags.

An inspector does not draw pixels; they tag a photo, or a tile of it, with the worst AASHTO
condition state it shows (CS2 Fair, CS3 Poor, CS4 Severe). This module turns the expert masks
of the `tune` photos into exactly such tags and nothing finer, then teaches a cumulative state
head where each state lies by multiple-instance learning:

- **Tags.** A tile is tagged ">= state s" when pixels of state s or worse cover at least
  `min_share` of it (the tagging rule). Tiles come in several sizes, the whole photo included.
- **Cumulative head.** Three maps, P(>= Fair), P(>= Poor), P(>= Severe), at stride 8. The head
  predicts three logits per cell and chains them, P(>= s) = P(>= s-1) * sigmoid(logit_s), so the
  channels can never increase from one state to the next: the graph enforces the order
  (an ordinal output, after the cumulative-link models of ordinal regression). Errors between
  neighbouring states are then the cheap ones.
- **Multiple instances.** A tile's P(>= s) is the mean of its k most confident cells, where k is
  the smallest number of cells that the tagging rule would count (ceil(min_share * cells)).
  So a tile tagged Severe asks only that some of its cells be Severe, as its tag says, and a
  tile tagged below Fair asks that none be. Small tiles pin the states down; the whole photo
  keeps the rare Severe from being drowned.

- **Teacher and student** (round two, converter/state_teacher.py), as for `seg` in v2: round
  one's head, fused over many views and settled by a dense CRF on the photo's colours, gives
  pixel labels bounded by the tags; a fresh head learns from them and the tags together. The
  round whose check-photo IoU is higher ships; the card records both.

The backbone and the `seg` head stay frozen: the classifier's score and the binary mask are
unchanged, and only the state head learns (on pre-computed features, fast on a CPU).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf

from converter.model import LOGIT_LAYER
from converter.state_teacher import TeacherSettings
from converter.teacher import IGNORE
from converter.student import (FEATURE_LAYERS, SEG_LAYER, SEG_STRIDE, FeatureBatches,
                               frozen_features, head_logits)
from edge.config import CrfSettings, RefineConfig
from edge.data.imageio import read_image_bgr, read_state_mask
from edge.method.states import STATE_NAMES, StateThresholds, levels_in_mask, worst_state

STATE_LAYER = "state"
_STATE_WIDTH = 48  # channels of the state head (the seg head has 64; states are a finer cut)

@dataclass(frozen=True)
class StateTraining:
    """`rustseg states`: the tagging rule and the head's training, with their defaults.

    The tile sizes and the share were chosen on the tune split (fit part trained, check part
    measured): benchmarks/results/state_rule.md.
    """

    tile_cells: tuple[int, ...] = (40, 10, 5)  # tile sides in stride-8 cells at 320 px
    min_share: float = 0.05          # tagging rule: share of a tile that its worst state covers
    crops_per_photo: int = 5         # half-size crops (4 corners + centre) as close-range views
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 0.003
    positive_weight: tuple[float, ...] = (1.0, 1.5, 3.0)  # per state: rarer states weigh more
    check_fraction: float = 0.2      # of the tune photos, kept out of training to set thresholds
    seed: int = 1
    teacher: bool = True             # round two: a student on the states teacher's pixel labels
    dense_weight: float = 1.0        # round two: weight of the teacher's per-cell loss vs. tags
    notes: dict = field(default_factory=dict)


# --- the graph -------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="rustseg")
class CumulativeStates(keras.layers.Layer):
    """Three logits per cell -> P(>= Fair), P(>= Poor), P(>= Severe), never increasing.

    P(>= s) = P(>= s-1) * sigmoid(logit_s): a product of numbers in [0, 1], so the order holds
    exactly, in float16 too. Builtin TFLite ops only (LOGISTIC, STRIDED_SLICE, MUL, CONCAT).
    """

    def call(self, logits):
        step = keras.ops.sigmoid(logits)
        fair = step[..., 0:1]
        poor = fair * step[..., 1:2]
        severe = poor * step[..., 2:3]
        return keras.ops.concatenate([fair, poor, severe], axis=-1)


def build_state_head(low, mid, high):
    """The state head's layers on the three feature maps -> [N, H/8, W/8, 3] named `state`."""
    logits = head_logits(low, mid, high, prefix=STATE_LAYER, channels=len(STATE_NAMES),
                         width=_STATE_WIDTH)
    return CumulativeStates(name=STATE_LAYER)(logits)


def state_head_model(feature_shapes: list[tuple[int, ...]]) -> keras.Model:
    inputs = [keras.Input(shape, name=f"{name}_features")
              for shape, name in zip(feature_shapes, FEATURE_LAYERS)]
    return keras.Model(inputs, build_state_head(*inputs), name="state_head")


def has_states(model: keras.Model) -> bool:
    return any(layer.name == STATE_LAYER for layer in model.layers)


def attach_states(model: keras.Model, head: keras.Model) -> keras.Model:
    """A v2 model (image -> [logit, seg]) with the trained state head: image -> [logit, seg,
    state]. The head's weights are copied by layer name."""
    features = [model.get_layer(name).output for name in FEATURE_LAYERS]
    state = build_state_head(*features)
    combined = keras.Model(model.input, [model.get_layer(LOGIT_LAYER).output,
                                         model.get_layer(SEG_LAYER).output, state],
                           name=model.name.removesuffix("_seg") + "_seg_state")
    for layer in head.layers:
        if layer.weights:
            combined.get_layer(layer.name).set_weights(layer.get_weights())
    return combined


# --- tags and the multiple-instance loss ---------------------------------------------


def tile_tags(states: np.ndarray, tile_cells: int, grid_cells: int, min_share: float
              ) -> np.ndarray:
    """uint8 state masks [N, S, S] -> tags float32 [N, g, g, 3], g = grid_cells / tile_cells.

    tags[..., s-1] = 1 where pixels of state s or worse cover at least `min_share` of the tile:
    the worst state an inspector would tag, read off the mask and nothing finer.
    """
    tiles = grid_cells // tile_cells
    out = np.zeros((len(states), tiles, tiles, len(STATE_NAMES)), np.float32)
    for level in range(1, len(STATE_NAMES) + 1):
        at_least = (states >= level).astype(np.float32)
        for i, mask in enumerate(at_least):
            share = cv2.resize(mask, (tiles, tiles), interpolation=cv2.INTER_AREA)
            out[i, ..., level - 1] = share >= min_share
    return out


def instances_per_tile(tile_cells: int, min_share: float) -> int:
    """The k of the top-k pooling: the fewest cells the tagging rule counts as covered."""
    return max(1, math.ceil(min_share * tile_cells * tile_cells))


def stacked_targets(states: np.ndarray, settings: StateTraining, grid_cells: int
                    ) -> np.ndarray:
    """Every tile size's tags, each broadcast back to the cells of its tile and stacked:
    float32 [N, G, G, 3 * sizes] (Keras passes one y_true to a loss)."""
    parts = []
    for cells in settings.tile_cells:
        tags = tile_tags(states, cells, grid_cells, settings.min_share)
        parts.append(np.repeat(np.repeat(tags, cells, axis=1), cells, axis=2))
    return np.concatenate(parts, axis=-1)


def tile_mil_loss(settings: StateTraining, dense: bool = False):
    """The loss: for each tile size and state, BCE between the tile's tag and the mean of its
    top-k cells' P(>= s), positives weighted per state; averaged over tiles and sizes.

    With `dense`, the targets also carry the states teacher's per-cell P(>= s) and the cell's
    weight (its share of pixels the teacher was sure of) on their last 4 channels, and a
    weighted per-cell BCE against them is added, times settings.dense_weight."""
    weights = tf.constant(settings.positive_weight, tf.float32)
    sizes = settings.tile_cells
    levels = len(STATE_NAMES)

    def loss(targets, probability):
        grid = tf.shape(probability)[1]
        total = 0.0
        for index, cells in enumerate(sizes):
            k = instances_per_tile(cells, settings.min_share)
            tiles = grid // cells
            # [N, T, c, T, c, 3] -> [N, T, T, 3, c*c]: each tile's cells on the last axis
            cut = tf.reshape(probability, [-1, tiles, cells, tiles, cells, levels])
            cut = tf.transpose(cut, [0, 1, 3, 5, 2, 4])
            cut = tf.reshape(cut, [-1, tiles, tiles, levels, cells * cells])
            pooled = tf.reduce_mean(tf.math.top_k(cut, k=k).values, axis=-1)
            pooled = tf.clip_by_value(pooled, 1e-6, 1 - 1e-6)
            tag = targets[:, ::cells, ::cells, index * levels:(index + 1) * levels]
            bce = -(tag * weights * tf.math.log(pooled) + (1 - tag) * tf.math.log(1 - pooled))
            total += tf.reduce_mean(bce)
        total = total / len(sizes)
        if dense:
            start = len(sizes) * levels
            target, cell_weight = targets[..., start:start + levels], targets[..., -1:]
            p = tf.clip_by_value(probability, 1e-6, 1 - 1e-6)
            bce = -(target * weights * tf.math.log(p) + (1 - target) * tf.math.log(1 - p))
            total += settings.dense_weight * (tf.reduce_sum(bce * cell_weight) / tf.maximum(
                tf.reduce_sum(cell_weight) * levels, 1.0))
        return total

    return loss


# --- data ------------------------------------------------------------------------------


def view_boxes(height: int, width: int, crops: int) -> list[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) of the whole photo and `crops` half-size crops (4 corners + centre):
    the close-range views each tune photo adds to training."""
    hh, hw = height // 2, width // 2
    corners = [(0, 0), (0, hw), (hh, 0), (hh, hw), (hh // 2, hw // 2)][:crops]
    return [(0, 0, height, width)] + [(y, x, y + hh, x + hw) for y, x in corners]


def views_of(picture: np.ndarray, crops: int, side: int, interpolation: int) -> list[np.ndarray]:
    """The picture cut into view_boxes and each resized to side x side."""
    return [cv2.resize(picture[y0:y1, x0:x1], (side, side), interpolation=interpolation)
            for y0, x0, y1, x1 in view_boxes(*picture.shape[:2], crops)]


def photos_and_states(pairs, side: int, crops: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB images [N, S, S, 3] squashed to `side` and state masks [N, S, S], with
    `crops` half-size crops of each photo resized to full size (close-range views)."""
    images, states = [], []
    for pair in pairs:
        # The project's reader, as the states teacher reads them, so views and labels align.
        image = cv2.cvtColor(read_image_bgr(pair.image), cv2.COLOR_BGR2RGB)
        images += views_of(image, crops, side, cv2.INTER_AREA)
        states += views_of(read_state_mask(pair.mask), crops, side, cv2.INTER_NEAREST)
    return np.stack(images), np.stack(states)


def train_state_head(maps: list[np.ndarray], states: np.ndarray, settings: StateTraining,
                     log=sys.stdout, dense: np.ndarray | None = None) -> keras.Model:
    """Fit the state head on frozen features (and their mirrors) against tile tags, and with
    `dense` (the states teacher's per-cell targets and weights [N, g, g, 4]) against those too."""
    keras.utils.set_random_seed(settings.seed)
    grid = maps[0].shape[1]
    maps = [np.concatenate([m, m[:, :, ::-1]]) for m in maps]
    states = np.concatenate([states, states[:, :, ::-1]])
    targets = stacked_targets(states, settings, grid)
    if dense is not None:
        targets = np.concatenate([targets, np.concatenate([dense, dense[:, :, ::-1]])], axis=-1)
    head = state_head_model([m.shape[1:] for m in maps])
    batches = FeatureBatches(maps, targets, settings.batch_size, settings.seed)
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate,
                                                      settings.epochs * len(batches))
    head.compile(optimizer=keras.optimizers.Adam(schedule),
                 loss=tile_mil_loss(settings, dense=dense is not None))

    class _Log(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(json.dumps({"epoch": epoch + 1, "loss": round(float(logs["loss"]), 5)}),
                  file=log, flush=True)

    head.fit(batches, epochs=settings.epochs, verbose=0, callbacks=[_Log()])
    return head


def as_dict(settings: StateTraining) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(settings).items()}


# --- the recipe ------------------------------------------------------------------------


def split_tune(pairs, check_fraction: float) -> tuple[list, list]:
    """(fit, check) parts of the tune photos by a stable hash of the stem, salted apart from
    the holdout split so the two cuts are independent."""
    import zlib

    check = [p for p in pairs
             if zlib.crc32(b"states:" + p.image.stem.encode()) % 1000 < check_fraction * 1000]
    fit = [p for p in pairs if p not in check]
    return fit, check


def choose_thresholds(cumulative: np.ndarray, corroded: np.ndarray, truth: np.ndarray
                      ) -> tuple[tuple[float, float], float]:
    """The (Poor, Severe) thresholds with the best mean per-state IoU on the check photos.

    cumulative [N, S, S, 3] at mask resolution, corroded bool [N, S, S] (the model's own
    binary mask), truth uint8 [N, S, S]. Returns (thresholds, that mean IoU)."""
    grid = np.concatenate([[0.01, 0.02, 0.03, 0.04], np.round(np.arange(0.05, 0.96, 0.05), 2)])
    upper = cumulative[..., 1:3]
    best = ((0.5, 0.5), -1.0)
    for t_poor in grid:
        for t_severe in grid:
            levels = levels_in_mask(upper, corroded, StateThresholds(t_poor, t_severe))
            score = float(np.mean(per_state_iou(levels, truth)))
            if score > best[1]:
                best = ((float(t_poor), float(t_severe)), score)
    return best


def per_state_iou(predicted: np.ndarray, truth: np.ndarray) -> list[float]:
    out = []
    for level in (1, 2, 3):
        p, t = predicted == level, truth == level
        union = np.count_nonzero(p | t)
        out.append(np.count_nonzero(p & t) / union if union else float("nan"))
    return out


def predict_maps(model: keras.Model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(seg [N, g, g], state [N, g, g, 3]) of a model that has both heads."""
    heads = keras.Model(model.input, [model.get_layer(SEG_LAYER).output,
                                      model.get_layer(STATE_LAYER).output])
    seg, state = heads.predict(images.astype(np.float32), batch_size=16, verbose=0)
    return seg[..., 0], state


def upsample(maps: np.ndarray, side: int) -> np.ndarray:
    """[N, g, g(, c)] float maps -> [N, side, side(, c)], bilinear (heatmaps are smooth)."""
    return np.stack([cv2.resize(m, (side, side), interpolation=cv2.INTER_LINEAR) for m in maps])


@dataclass(frozen=True)
class StatesRequest:
    model: str          # a v2 NAME.keras (classifier + seg head) from `rustseg distill`
    photos_from: str    # an images+masks folder; only its tune photos are read, as tile tags
    out: str            # output stem: NAME.keras, NAME.metrics.json, NAME.states.log
    holdout_fraction: float = 0.25
    input_size: int = 320   # the export size, so `state` learns its stride-8 grid there
    crf: CrfSettings | None = None   # the states teacher's CRF (config teacher.crf); None: no
                                     # teacher round, tags only
    refine: RefineConfig | None = None   # the device's refine settings: thresholds are chosen
                                         # in light-path masks (None: seg >= 0.5)


def teacher_targets(combined: keras.Model, fit_pairs, measured: dict, settings: StateTraining,
                    request: StatesRequest, teacher: TeacherSettings, log) -> np.ndarray:
    """Round two's per-cell targets for every fit sample (the photos and their crops, in the
    order of photos_and_states): the states teacher's pixel labels, made with round one's
    head and thresholds (converter/state_teacher.py)."""
    from converter.state_teacher import dense_targets, teach

    grid_cells = request.input_size // SEG_STRIDE
    labels = teach(combined, fit_pairs, request.input_size,
                   StateThresholds(*measured["thresholds"]),
                   tuple(cells / grid_cells for cells in settings.tile_cells),
                   settings.min_share, teacher, request.crf)
    views = np.stack([view for label in labels for view in views_of(
        label, settings.crops_per_photo, request.input_size, cv2.INTER_NEAREST)])
    known = views != IGNORE
    print(json.dumps({"teacher": asdict(teacher), "ignored_share": round(1 - known.mean(), 4),
                      "label_shares": [round(float(np.mean(views[known] == level)), 4)
                                       for level in range(4)]}), file=log, flush=True)
    return dense_targets(views, grid_cells)


def prepare(pairs, model: keras.Model, side: int, crops: int):
    images, states = photos_and_states(pairs, side, crops)
    return images, states, frozen_features(model, images, side)


def device_masks(seg: np.ndarray, images_rgb: np.ndarray, refine: RefineConfig | None
                 ) -> np.ndarray:
    """bool [N, S, S]: where the device would mark corrosion on these images, so thresholds
    are chosen on the masks states will be drawn in. With `refine`, the light path (the
    device's default) on each image's seg; without, seg >= 0.5."""
    side = images_rgb.shape[1]
    if refine is None:
        return upsample(seg, side) >= 0.5
    from edge.method.refine.light import LightRefiner

    refiner = LightRefiner(refine)
    return np.stack([refiner.refine(s, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)).mask
                     for s, image in zip(seg, images_rgb)])


def fit_and_measure(model: keras.Model, fit, check, settings: StateTraining, side: int,
                    log=sys.stdout, dense: np.ndarray | None = None,
                    refine: RefineConfig | None = None) -> tuple[keras.Model, dict]:
    """Train the head on `fit` = (images, states, maps) (and the teacher's `dense` targets),
    set thresholds on `check` with the device's masks (`refine`: light path), and measure
    there. Returns (model with states, measurements)."""
    head = train_state_head(fit[2], fit[1], settings, log, dense)
    combined = attach_states(model, head)
    seg, cumulative = predict_maps(combined, check[0])
    corroded = device_masks(seg, check[0], refine)
    cumulative = upsample(cumulative, side)
    thresholds, mean_iou = choose_thresholds(cumulative, corroded, check[1])
    levels = levels_in_mask(cumulative[..., 1:3], corroded, StateThresholds(*thresholds))
    truth_worst = [worst_state(t, settings.min_share) for t in check[1]]
    predicted_worst = [worst_state(p, settings.min_share) for p in levels]
    from sklearn.metrics import balanced_accuracy_score

    return combined, {
        "thresholds": list(thresholds), "mean_state_iou": round(mean_iou, 4),
        "state_iou": [round(v, 4) for v in per_state_iou(levels, check[1])],
        "worst_state_balanced_accuracy": round(float(balanced_accuracy_score(
            truth_worst, predicted_worst)), 4),
        "worst_state_within_one": round(float(np.mean(
            np.abs(np.subtract(truth_worst, predicted_worst)) <= 1)), 4),
        "n_check_photos": len(check[0])}


def train_states(request: StatesRequest, settings: StateTraining = StateTraining()) -> dict:
    """The v3 recipe: tags from the fit part of the tune photos -> state head -> thresholds on
    the check part. Writes NAME.keras (classifier + seg + state) and NAME.metrics.json."""
    from converter.export import load_keras_model, sidecar
    from edge.data.datasets import find_masked_images

    from converter.model import at_input_size

    side = request.input_size
    model = at_input_size(load_keras_model(request.model), side)
    fit_pairs, check_pairs = split_tune(
        find_masked_images(request.photos_from, "tune", request.holdout_fraction),
        settings.check_fraction)
    fit = prepare(fit_pairs, model, side, settings.crops_per_photo)
    check = prepare(check_pairs, model, side, 0)
    out = Path(request.out)
    out = out.with_suffix("") if out.suffix == ".keras" else out
    out.parent.mkdir(parents=True, exist_ok=True)
    rounds = {}
    teacher = TeacherSettings()     # the one set the teacher runs with and the card records
    with open(out.with_suffix(".states.log"), "w") as log:
        print(json.dumps({"round": "tags"}), file=log, flush=True)
        combined, measured = fit_and_measure(model, fit, check, settings, side, log,
                                             refine=request.refine)
        rounds["tags"] = measured
        if settings.teacher and request.crf is not None:
            dense = teacher_targets(combined, fit_pairs, measured, settings, request, teacher,
                                    log)
            print(json.dumps({"round": "teacher"}), file=log, flush=True)
            student, student_measured = fit_and_measure(model, fit, check, settings, side,
                                                        log, dense, request.refine)
            rounds["teacher"] = student_measured
            # The round that shipped is chosen on the check photos (never the holdout split).
            if student_measured["mean_state_iou"] > measured["mean_state_iou"]:
                combined, measured = student, student_measured
    combined.save(out.with_suffix(".keras"))
    metrics = sidecar(request.model, ".metrics.json")
    metrics["states"] = {
        "learnt_from": "tile tags only: each tile of the tune photos of "
                       f"{request.photos_from} tagged with the worst condition state covering at "
                       f"least {settings.min_share:.0%} of it, as an inspector tagging tiles "
                       "would; tiles of "
                       f"{', '.join(f'{c * SEG_STRIDE} px' for c in settings.tile_cells)} at "
                       f"{side} px input; the masks' pixels were never a training target",
        "head": "LR-ASPP-style state head on the frozen backbone features, three chained "
                "sigmoids P(>= Fair) >= P(>= Poor) >= P(>= Severe), top-k multiple-instance "
                "pooling per tile"
                + ("; round two (the teacher): a fresh head trained on the states teacher's "
                   "pixel labels (multi-view maps of round one, calibrated at its thresholds, "
                   "a 4-label dense CRF, bounded by the tile tags) together with the tags"
                   if rounds.get("teacher") is measured else ""),
        "n_fit_photos": len(fit_pairs), "n_check_photos": len(check_pairs),
        "thresholds": {"poor": measured["thresholds"][0], "severe": measured["thresholds"][1]},
        "thresholds_from": "best mean per-state IoU on the check part of the tune photos "
                           "(never the holdout split), inside "
                           + ("the light path's masks" if request.refine is not None
                              else "seg >= 0.5"),
        "check_measurements": measured, "training": as_dict(settings),
        "rounds": rounds,
        **({"teacher": {**asdict(teacher), "crf": asdict(request.crf)}}
           if "teacher" in rounds else {}),
        "chosen_round": next(name for name, m in rounds.items() if m is measured)}
    out.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics

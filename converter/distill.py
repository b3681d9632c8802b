"""`rustseg distill`: teacher pseudo masks -> a segmentation head trained into the classifier.

Recipe (DESIGN.md, "Model contract v2"):
1. the teacher (converter/teacher.py: multi-view Grad-CAM++, then a random walk over learnt
   affinities (converter/affinity.py), then a full-resolution CRF) makes a pseudo mask with an
   ignore band for every photo labelled corrosion: the corrosion photos of the class folders and the photos of the `tune`
   part of an images+masks folder (its masks are never read here); photos labelled
   no_corrosion get an all-background target, which teaches the head to refuse red paint and
   brown soil;
2. half-size tiles of the tune photos are added with the matching part of their pseudo mask,
   so the head also sees rust at close range;
3. the backbone is frozen: its features for every sample (and its mirror) are computed once,
   and only the head learns, so the classifier and its score stay exactly as they were;
4. the head is attached to the classifier and saved as NAME.keras with NAME.metrics.json, ready
   for `rustseg export`, which then adds the `seg` output.

Pseudo masks are cached in --cache (one .npz per source folder and teacher setting), so a
second run with other head settings skips the slow teacher.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import keras
import numpy as np
from tqdm import tqdm

from converter.affinity import random_walk, seeds_from_labels, train_embedding
from converter.data import square_rgb
from converter.export import load_keras_model, sidecar
from converter.student import (FEATURE_LAYERS, SEG_STRIDE, FeatureBatches, attach_head,
                               frozen_features, head_model, masked_bce, targets_at_stride)
from converter.teacher import IGNORE, MultiViewCam, crf_posterior, pseudo_label, view_key
from edge.config import Config, StudentConfig, TeacherConfig
from edge.data.datasets import find_labelled_images, find_masked_images
from edge.errors import DataError
from edge.data.imageio import read_image_bgr


@dataclass(frozen=True)
class DistillRequest:
    classifier: str                  # NAME.keras from `rustseg train`
    out: str                         # output stem: NAME.keras, NAME.metrics.json, NAME.distill.log
    data: str | None = None          # class folders (corrosion/, no_corrosion/)
    photos_from: str | None = None   # images+masks folder: its tune photos (masks unread)
    cache: str = "build/pseudo"


@dataclass
class PseudoSet:
    """uint8 RGB images [N, S, S, 3] and pseudo labels [N, S, S] (0, 1, IGNORE)."""

    images: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    description: str


def fused_cams(teacher: MultiViewCam, paths: list[Path], side: int, cache: Path, what: str,
               model_sha256: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N, S, S, 3] uint8 RGB squashed to `side`, fused CAMs [N, w, w]), cached.

    The multi-view CAM is the slow part of the teacher, so it is cached on its own; the CRF
    and the ignore band are cheap to redo with other settings. The key holds the classifier's
    sha256 and each photo's size and mtime, so a retrained model or a changed photo is redone.
    """
    files = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in map(Path, paths)]
    key = hashlib.sha256(json.dumps([view_key(teacher.settings), side, model_sha256, files])
                         .encode()).hexdigest()[:16]
    path = cache / f"{what}-{key}.npz"
    if path.is_file():
        stored = np.load(path)
        return stored["images"], stored["cams"]
    images, cams = [], []
    for file in tqdm(paths, desc=f"teacher {what}", unit="photo", dynamic_ncols=True):
        frame_rgb = cv2.cvtColor(read_image_bgr(file), cv2.COLOR_BGR2RGB)
        cams.append(teacher.fused(frame_rgb)[0])
        images.append(cv2.resize(frame_rgb, (side, side), interpolation=cv2.INTER_AREA))
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=np.stack(images), cams=np.stack(cams))
    return np.stack(images), np.stack(cams)


def teacher_labels(images_rgb: np.ndarray, cams: np.ndarray, settings: TeacherConfig,
                   config: Config) -> np.ndarray:
    """Pseudo labels [N, S, S] (0, 1, IGNORE): each fused CAM settled by the CRF on its image."""
    return np.stack([pseudo_label(crf_posterior(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), cam,
                                                settings), cam, settings)
                     for image, cam in zip(images_rgb, cams)])


def half_size_tiles(images: np.ndarray, labels: np.ndarray, count: int,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The four corner quarters and the centre of each image, resized back to full size."""
    side = images.shape[1]
    half = side // 2
    corners = [(0, 0), (0, half), (half, 0), (half, half), (half // 2, half // 2)][:count]
    out_images, out_labels = [], []
    for image, label in zip(images, labels):
        for y, x in corners:
            out_images.append(cv2.resize(image[y:y + half, x:x + half], (side, side),
                                         interpolation=cv2.INTER_LINEAR))
            out_labels.append(cv2.resize(label[y:y + half, x:x + half], (side, side),
                                         interpolation=cv2.INTER_NEAREST))
    return np.stack(out_images), np.stack(out_labels)


def walked_cams(classifier: keras.Model, images: np.ndarray, cams: np.ndarray,
                settings: TeacherConfig, config: Config, cache: Path, log=sys.stdout
                ) -> np.ndarray:
    """The fused CAMs propagated by a random walk over learnt affinities (converter/affinity).

    The embedding learns from the confident cells of the CAM + CRF labels of these same
    photos; it is saved as CACHE/affinity.keras for benchmarks/teacher_ablation.py.
    """
    maps = frozen_features(classifier, images, images.shape[1])
    seeds = seeds_from_labels(teacher_labels(images, cams, settings, config), IGNORE,
                              maps[0].shape[1:3])
    embedding = train_embedding(maps, seeds, settings.affinity_epochs,
                                log=lambda line: print(line, file=log, flush=True))
    cache.mkdir(parents=True, exist_ok=True)
    embedding.save(cache / "affinity.keras")
    embeddings = embedding.predict([m.astype(np.float32) for m in maps], batch_size=32,
                                   verbose=0)
    return np.stack([random_walk(e, c, settings.affinity_beta, settings.affinity_steps,
                                 settings.affinity_bg_power)
                     for e, c in zip(embeddings, cams)])


def build_pseudo_set(request: DistillRequest, config: Config, settings: TeacherConfig,
                     training: StudentConfig, classifier: keras.Model) -> PseudoSet:
    side = training.input_size
    cache = Path(request.cache)
    teacher = MultiViewCam(classifier, settings)
    model_sha256 = hashlib.sha256(Path(request.classifier).read_bytes()).hexdigest()
    sources = []   # (images, fused CAMs, description, tiles wanted) of photos labelled corrosion
    parts: list[PseudoSet] = []
    if request.data:
        items = find_labelled_images(request.data)
        images, cams = fused_cams(teacher, [i.path for i in items if i.label == 1], side, cache,
                                  "classes", model_sha256)
        sources.append((images, cams, f"{len(images)} corrosion photos of {request.data}", 0))
        negatives = [square_rgb(read_image_bgr(i.path), side) for i in items if i.label == 0]
        parts.append(PseudoSet(np.stack(negatives), np.zeros((len(negatives), side, side),
                                                             np.uint8),
                               np.full(len(negatives), training.negative_weight, np.float32),
                               f"{len(negatives)} no_corrosion photos of {request.data} "
                               "(all background)"))
    if request.photos_from:
        pairs = find_masked_images(request.photos_from, "tune", config.data.holdout_fraction)
        images, cams = fused_cams(teacher, [p.image for p in pairs], side, cache, "photos",
                                  model_sha256)
        sources.append((images, cams, f"{len(images)} tune photos of {request.photos_from}",
                        training.tiles_per_photo))
    if not sources:
        raise DataError("rustseg distill: give --data (class folders) and/or --photos-from "
                        "(an images+masks folder) holding photos labelled corrosion")
    if settings.affinity_epochs:
        walked = walked_cams(classifier, np.concatenate([s[0] for s in sources]),
                             np.concatenate([s[1] for s in sources]), settings, config, cache)
        offsets = np.cumsum([0] + [len(s[0]) for s in sources])
        sources = [(s[0], walked[a:b], *s[2:]) for s, a, b in zip(sources, offsets, offsets[1:])]
    for images, cams, description, tiles in sources:
        labels = teacher_labels(images, cams, settings, config)
        parts.append(PseudoSet(images, labels, np.ones(len(labels), np.float32), description))
        if tiles:
            tile_images, tile_labels = half_size_tiles(images, labels, tiles)
            parts.append(PseudoSet(tile_images, tile_labels, np.ones(len(tile_images),
                                                                      np.float32),
                                   f"{len(tile_images)} half-size tiles of those photos"))
    return PseudoSet(np.concatenate([p.images for p in parts]),
                     np.concatenate([p.labels for p in parts]),
                     np.concatenate([p.weights for p in parts]),
                     "; ".join(p.description for p in parts))


def train_head(classifier: keras.Model, data: PseudoSet, training: StudentConfig,
               log=sys.stdout) -> tuple[keras.Model, list[dict]]:
    """Fit the head on frozen features of `data` and its mirror; returns (head, epoch log)."""
    keras.utils.set_random_seed(training.seed)
    images = np.concatenate([data.images, data.images[:, :, ::-1]])
    labels = np.concatenate([data.labels, data.labels[:, :, ::-1]])
    weights = np.concatenate([data.weights, data.weights])
    out_hw = (training.input_size // SEG_STRIDE,) * 2
    targets = targets_at_stride(labels, IGNORE, out_hw)
    targets[..., 1] *= weights[:, None, None]
    maps = frozen_features(classifier, images, training.input_size)
    del images
    head = head_model([m.shape[1:] for m in maps])
    batches = FeatureBatches(maps, targets, training.batch_size, training.seed)
    schedule = keras.optimizers.schedules.CosineDecay(training.learning_rate,
                                                      training.epochs * len(batches))
    head.compile(optimizer=keras.optimizers.Adam(schedule), loss=masked_bce)
    history = []

    class _Log(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record = {"epoch": epoch + 1, "loss": round(float(logs["loss"]), 5)}
            history.append(record)
            print(json.dumps(record), file=log, flush=True)

    head.fit(batches, epochs=training.epochs, verbose=0, callbacks=[_Log()])
    return head, history


def distill(request: DistillRequest, config: Config) -> dict:
    """Run the recipe with config.teacher and config.student; writes NAME.keras (classifier +
    head), NAME.metrics.json and NAME.distill.log."""
    settings, training = config.teacher, config.student
    out = Path(request.out)
    out = out.with_suffix("") if out.suffix == ".keras" else out
    out.parent.mkdir(parents=True, exist_ok=True)
    classifier = load_keras_model(request.classifier)
    started = time.perf_counter()
    data = build_pseudo_set(request, config, settings, training, classifier)
    teacher_s = time.perf_counter() - started
    known = data.labels != IGNORE
    print(f"pseudo labels: {len(data.labels)} samples ({data.description}); rust "
          f"{np.mean(data.labels[known] == 1):.3f} of known pixels, ignored "
          f"{1 - known.mean():.3f}", flush=True)
    with open(out.with_suffix(".distill.log"), "w") as log:
        head, history = train_head(classifier, data, training, log)
    combined = attach_head(classifier, head)
    combined.save(out.with_suffix(".keras"))
    metrics = sidecar(request.classifier, ".metrics.json")
    metrics["student"] = {
        "head": "LR-ASPP-style on block_6 (stride 8), block_13 (16), out_relu (32); frozen "
                "backbone, so the classifier's weights and scores are unchanged",
        "feature_layers": list(FEATURE_LAYERS), "seg_stride": SEG_STRIDE,
        "teacher": asdict(settings), "training": asdict(training),
        "pseudo_label_data": data.description,
        "ignore_band": f"ignored where the CRF posterior is between {settings.sure_bg} and "
                       f"{settings.sure_fg}, or where the CRF and the fused CAM thresholded at "
                       f"{settings.cam_threshold} disagree",
        "ignored_share": round(float(1 - known.mean()), 4),
        "teacher_seconds": round(teacher_s, 1), "final_loss": history[-1]["loss"]}
    out.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics

"""Training data: image-level labels from class folders or mask-coverage tiles, and augmentation.

Images are decoded once, squashed to a square a little larger than the model input (the
random crop needs the margin) and kept in memory as uint8 RGB; the whole corrosion_cls set
is about 240 MB at 258 px. The edge runtime squashes frames the same way (no letterbox), so
training and inference see the same geometry.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import cv2
import numpy as np
import tensorflow as tf

from edge.data.datasets import find_labelled_images, find_masked_images
from edge.errors import DataError
from edge.data.imageio import read_image_bgr, read_mask

_CROP_MARGIN = 1.15          # stored side = input side * this, so random crops keep detail
_MIN_CROP_AREA = 0.55        # random resized crop: smallest share of the image kept
_BLUR_PROB, _NOISE_PROB = 0.2, 0.3
_MAX_NOISE_SIGMA = 6.0       # 0..255 units
_BRIGHTNESS_DELTA = 25.0     # 0..255 units
_CONTRAST_RANGE = (0.75, 1.25)
_SATURATION_RANGE = (0.85, 1.15)


@dataclass
class ImageSet:
    """uint8 RGB images [N, S, S, 3] with 0/1 labels [N], plus what was skipped and why.

    `weights` [N] is each sample's share of the loss by where it came from (tiles cut from
    one photo are many and alike, so they may count for less than whole images).
    """

    images: np.ndarray
    labels: np.ndarray
    skipped: list[str] = field(default_factory=list)
    description: str = ""
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.weights is None:
            self.weights = np.ones(len(self.labels), np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> tuple[int, int]:
        positives = int(self.labels.sum())
        return len(self.labels) - positives, positives

    def concat(self, other: "ImageSet") -> "ImageSet":
        return ImageSet(np.concatenate([self.images, other.images]),
                        np.concatenate([self.labels, other.labels]),
                        self.skipped + other.skipped,
                        f"{self.description} + {other.description}",
                        np.concatenate([self.weights, other.weights]))

    def subset(self, index: np.ndarray, description: str) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index], [], description,
                        self.weights[index])

    def balanced_sample_weights(self) -> np.ndarray:
        """Source weight x class weight, so both classes carry equal total weight."""
        weights = self.weights.astype(np.float32).copy()
        total = weights.sum()
        for label in (0, 1):
            members = self.labels == label
            share = weights[members].sum()
            if share > 0:
                weights[members] *= total / (2 * share)
        return weights


def stored_side(input_size: int) -> int:
    return int(round(input_size * _CROP_MARGIN))


def square_rgb(frame_bgr: np.ndarray, side: int) -> np.ndarray:
    return cv2.cvtColor(cv2.resize(frame_bgr, (side, side), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2RGB)


def load_class_folders(root: str, side: int) -> ImageSet:
    """Read ROOT/corrosion and ROOT/no_corrosion; unreadable files are skipped and listed."""
    items = find_labelled_images(root)
    images, labels, skipped = [], [], []
    for item in items:
        try:
            images.append(square_rgb(read_image_bgr(item.path), side))
            labels.append(item.label)
        except DataError as exc:
            skipped.append(str(exc))
    if not images or len(set(labels)) < 2:
        raise DataError(f"data folder {root}: need readable images of both classes; "
                        f"{len(skipped)} of {len(items)} files were unreadable")
    return ImageSet(np.stack(images), np.array(labels, np.int32), skipped, f"classes:{root}")


def load_mask_tiles(root: str, side: int, tile: int, stride: int, positive_min: float,
                    negative_max: float, holdout_fraction: float,
                    weight: float = 1.0) -> ImageSet:
    """Tiles cut from the `tune` part of an images+masks folder, labelled by mask coverage.

    A tile is corrosion when at least `positive_min` of its pixels are masked, no_corrosion
    when at most `negative_max` are, and left out in between (an inspector would not tag it
    either way). The holdout part of the folder is never read.
    """
    if not 0 <= negative_max < positive_min <= 1:
        raise DataError(f"tile thresholds: need 0 <= tile_negative_max ({negative_max}) < "
                        f"tile_positive_min ({positive_min}) <= 1")
    images, labels, skipped = [], [], []
    for pair in find_masked_images(root, "tune", holdout_fraction):
        try:
            frame, mask = read_image_bgr(pair.image), read_mask(pair.mask)
        except DataError as exc:
            skipped.append(str(exc))
            continue
        if mask.shape != frame.shape[:2]:
            mask = cv2.resize(mask.astype(np.uint8), frame.shape[1::-1],
                              interpolation=cv2.INTER_NEAREST).astype(bool)
        height, width = mask.shape
        size = min(tile, height, width)
        for y in range(0, height - size + 1, stride):
            for x in range(0, width - size + 1, stride):
                coverage = float(mask[y:y + size, x:x + size].mean())
                if coverage >= positive_min or coverage <= negative_max:
                    images.append(square_rgb(frame[y:y + size, x:x + size], side))
                    labels.append(int(coverage >= positive_min))
    if not images:
        raise DataError(f"tiles from {root}: no tile fell outside the ambiguity band")
    return ImageSet(np.stack(images), np.array(labels, np.int32), skipped, f"tiles:{root}",
                    np.full(len(labels), weight, np.float32))


def stratified_split(data: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(train, validation) with `fraction` of each class in validation."""
    rng = np.random.default_rng(seed)
    val_index = []
    for label in (0, 1):
        index = np.flatnonzero(data.labels == label)
        rng.shuffle(index)
        val_index.extend(index[:max(1, int(round(len(index) * fraction)))])
    val_mask = np.zeros(len(data), bool)
    val_mask[val_index] = True
    return (data.subset(np.flatnonzero(~val_mask), f"{data.description} (train part)"),
            data.subset(np.flatnonzero(val_mask), f"{data.description} (validation part)"))


def augment(image: tf.Tensor, input_size: int, max_hue_shift: float) -> tf.Tensor:
    """One random view of a uint8 RGB image: float32 RGB 0..255 [S, S, 3].

    Geometry (crop/zoom, flips, 90-degree turns) and photometry (brightness, contrast,
    saturation, blur, noise) vary freely; hue only by `max_hue_shift`, since rust is
    recognised by its colour.
    """
    area = tf.random.uniform([], _MIN_CROP_AREA, 1.0)
    aspect = tf.exp(tf.random.uniform([], np.log(3 / 4), np.log(4 / 3)))
    crop_h = tf.minimum(tf.sqrt(area / aspect), 1.0)
    crop_w = tf.minimum(tf.sqrt(area * aspect), 1.0)
    top = tf.random.uniform([], 0, 1 - crop_h + 1e-6)
    left = tf.random.uniform([], 0, 1 - crop_w + 1e-6)
    box = tf.stack([top, left, top + crop_h, left + crop_w])[None]
    x = tf.image.crop_and_resize(tf.cast(image, tf.float32)[None], box, [0],
                                 [input_size, input_size])[0]
    x = tf.image.random_flip_left_right(x)
    x = tf.image.random_flip_up_down(x)
    x = tf.image.rot90(x, tf.random.uniform([], 0, 4, tf.int32))
    x = x / 255.0
    x = tf.image.random_brightness(x, _BRIGHTNESS_DELTA / 255.0)
    x = tf.image.random_contrast(x, *_CONTRAST_RANGE)
    x = tf.image.random_saturation(x, *_SATURATION_RANGE)
    if max_hue_shift > 0:
        x = tf.image.random_hue(x, max_hue_shift)
    x = tf.clip_by_value(x, 0.0, 1.0) * 255.0
    x = tf.cond(tf.random.uniform([]) < _BLUR_PROB, lambda: _gaussian_blur(x), lambda: x)
    sigma = tf.random.uniform([], 0, _MAX_NOISE_SIGMA)
    x = tf.cond(tf.random.uniform([]) < _NOISE_PROB,
                lambda: x + tf.random.normal(tf.shape(x), stddev=sigma), lambda: x)
    return tf.clip_by_value(x, 0.0, 255.0)


def _gaussian_blur(x: tf.Tensor) -> tf.Tensor:
    """Blur with a random sigma in 0.5..1.5 px (5x5 separable kernel)."""
    sigma = tf.random.uniform([], 0.5, 1.5)
    taps = tf.range(-2.0, 3.0)
    kernel_1d = tf.exp(-taps ** 2 / (2 * sigma ** 2))
    kernel_1d /= tf.reduce_sum(kernel_1d)
    kernel = tf.tile((kernel_1d[:, None] * kernel_1d[None, :])[:, :, None, None], [1, 1, 3, 1])
    return tf.nn.depthwise_conv2d(x[None], kernel, [1, 1, 1, 1], "SAME")[0]


def training_dataset(data: ImageSet, input_size: int, batch_size: int, max_hue_shift: float,
                     seed: int) -> tf.data.Dataset:
    """Shuffled, augmented, batched (image float32 [B,S,S,3] 0..255, label [B,1], weight [B])."""
    dataset = tf.data.Dataset.from_tensor_slices((data.images, data.labels,
                                                  data.balanced_sample_weights()))
    dataset = dataset.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(
        lambda image, label, weight: (augment(image, input_size, max_hue_shift),
                                      tf.cast(label, tf.float32)[None], weight),
        num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def evaluation_images(data: ImageSet, input_size: int) -> np.ndarray:
    """Validation images as the runtime sees them: the whole image squashed to S, float32."""
    return np.stack([cv2.resize(image, (input_size, input_size), interpolation=cv2.INTER_AREA)
                     for image in data.images]).astype(np.float32)


def report_skipped(data: ImageSet, log=sys.stderr) -> None:
    if data.skipped:
        print(f"skipped {len(data.skipped)} unreadable file(s) in {data.description}; first: "
              f"{data.skipped[0]}", file=log)

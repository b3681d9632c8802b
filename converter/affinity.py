"""Learned pixel affinity and random-walk propagation of the CAM (a teacher ingredient).

After AffinityNet (Ahn & Kwak, "Learning Pixel-level Semantic Affinity with Image-level
Supervision", CVPR 2018): a small head on the frozen backbone's features embeds every stride-8
cell; the affinity of two nearby cells is exp(-mean |e_i - e_j|). It is trained from the
teacher's *confident* cells only: pairs of sure-rust cells and pairs of sure-background cells
should be alike, rust/background pairs should not, anything touching an uncertain cell is left
out. The learned affinities then spread the CAM inside regions of like appearance and meaning,
and stop at their borders, by a random walk (transition matrix T = D^-1 A^beta over a radius):

    rust_walked = T^steps rust,   background_walked = T^steps (1 - cam)^bg_power
    P(rust) = rust_walked / (rust_walked + background_walked)

Everything is at stride 8 (40x40 cells at 320 px), so the walk is a small sparse product.
"""

from __future__ import annotations

import cv2
import keras
import numpy as np
import scipy.sparse
import tensorflow as tf

from converter.student import FEATURE_LAYERS

RADIUS = 5            # cells: pairs closer than this are compared (AffinityNet used 5)
_EMBED_CHANNELS = 32
UNSURE = 255


def pair_offsets(radius: int = RADIUS) -> list[tuple[int, int]]:
    """Half of the disc of offsets (dy, dx) with 0 < |d| < radius; the other half is symmetric."""
    offsets = [(0, dx) for dx in range(1, radius)]
    offsets += [(dy, dx) for dy in range(1, radius) for dx in range(-radius + 1, radius)
                if dy * dy + dx * dx < radius * radius]
    return offsets


def embedding_model(feature_shapes: list[tuple[int, ...]]) -> keras.Model:
    """Three feature maps (strides 8, 16, 32) -> an embedding [N, h8, w8, C] at stride 8."""
    inputs = [keras.Input(shape, name=f"{name}_features")
              for shape, name in zip(feature_shapes, FEATURE_LAYERS)]
    low, mid, high = inputs
    parts = [keras.layers.Conv2D(_EMBED_CHANNELS, 1, activation="relu")(low)]
    mid = keras.layers.Conv2D(_EMBED_CHANNELS, 1, activation="relu")(mid)
    parts.append(keras.layers.UpSampling2D(2, interpolation="bilinear")(mid))
    high = keras.layers.Conv2D(_EMBED_CHANNELS, 1, activation="relu")(high)
    parts.append(keras.layers.UpSampling2D(4, interpolation="bilinear")(high))
    x = keras.layers.Concatenate()(parts)
    x = keras.layers.Conv2D(_EMBED_CHANNELS, 1)(x)
    return keras.Model(inputs, x, name="affinity_embedding")


def _shifted_pairs(tensor: tf.Tensor, dy: int, dx: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(a, b) views of [N, H, W, ...] so that b[n, y, x] is a's neighbour at (y + dy, x + dx)."""
    height, width = tensor.shape[1], tensor.shape[2]
    x0, x1 = max(0, -dx), width - max(0, dx)
    a = tensor[:, :height - dy, x0:x1]
    b = tensor[:, dy:, x0 + dx:x1 + dx]
    return a, b


def affinity_loss(embedding: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
    """AffinityNet's loss: mean over rust-rust, background-background and rust-background pairs.

    `seeds` [N, h, w] int32: 1 sure rust, 0 sure background, UNSURE otherwise.
    """
    sums = [0.0, 0.0, 0.0]
    counts = [0.0, 0.0, 0.0]
    for dy, dx in pair_offsets():
        ea, eb = _shifted_pairs(embedding, dy, dx)
        sa, sb = _shifted_pairs(seeds, dy, dx)
        affinity = tf.exp(-tf.reduce_mean(tf.abs(ea - eb), axis=-1))
        known = tf.logical_and(sa != UNSURE, sb != UNSURE)
        groups = (tf.logical_and(known, tf.logical_and(sa == 1, sb == 1)),
                  tf.logical_and(known, tf.logical_and(sa == 0, sb == 0)),
                  tf.logical_and(known, sa != sb))
        terms = (-tf.math.log(affinity + 1e-5), -tf.math.log(affinity + 1e-5),
                 -tf.math.log(1 - affinity + 1e-5))
        for i, (group, term) in enumerate(zip(groups, terms)):
            weight = tf.cast(group, tf.float32)
            sums[i] += tf.reduce_sum(term * weight)
            counts[i] += tf.reduce_sum(weight)
    return tf.add_n([s / tf.maximum(c, 1.0) for s, c in zip(sums, counts)]) / 3.0


def train_embedding(feature_maps: list[np.ndarray], seeds: np.ndarray, epochs: int = 8,
                    batch_size: int = 16, learning_rate: float = 1e-3, seed: int = 1,
                    log=print) -> keras.Model:
    """Fit the embedding on pre-computed features [N, ...] and seed maps [N, h8, w8]."""
    keras.utils.set_random_seed(seed)
    model = embedding_model([m.shape[1:] for m in feature_maps])
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function(reduce_retracing=True)
    def step(inputs, batch_seeds):
        with tf.GradientTape() as tape:
            loss = affinity_loss(model(inputs, training=True), batch_seeds)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                      model.trainable_variables))
        return loss

    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(seeds))
        losses = []
        for start in range(0, len(order), batch_size):
            index = np.sort(order[start:start + batch_size])
            inputs = [tf.constant(m[index].astype(np.float32)) for m in feature_maps]
            losses.append(float(step(inputs,
                                     tf.constant(seeds[index], tf.int32))))
        log(f"affinity epoch {epoch + 1}: loss {np.mean(losses):.4f}")
    return model


def transition_matrix(embedding: np.ndarray, beta: float) -> scipy.sparse.csr_matrix:
    """Row-normalised T = D^-1 A^beta over the radius (self-affinity 1), for one [h, w, C] map."""
    height, width = embedding.shape[:2]
    index = np.arange(height * width).reshape(height, width)
    rows, cols, values = [index.ravel()], [index.ravel()], [np.ones(height * width)]
    for dy, dx in pair_offsets():
        x0, x1 = max(0, -dx), width - max(0, dx)
        a = embedding[:height - dy, x0:x1]
        b = embedding[dy:, x0 + dx:x1 + dx]
        affinity = np.exp(-np.abs(a - b).mean(axis=-1)) ** beta
        ia, ib = index[:height - dy, x0:x1].ravel(), index[dy:, x0 + dx:x1 + dx].ravel()
        rows += [ia, ib]
        cols += [ib, ia]
        values += [affinity.ravel(), affinity.ravel()]
    a_matrix = scipy.sparse.csr_matrix((np.concatenate(values),
                                        (np.concatenate(rows), np.concatenate(cols))),
                                       shape=(height * width,) * 2)
    degree = np.asarray(a_matrix.sum(axis=1)).ravel()
    return scipy.sparse.diags(1.0 / degree) @ a_matrix


def random_walk(embedding: np.ndarray, cam01: np.ndarray, beta: float = 8.0, steps: int = 32,
                bg_power: float = 2.0) -> np.ndarray:
    """P(rust) [h, w] after walking the CAM (resized to the embedding grid) and its complement."""
    height, width = embedding.shape[:2]
    cam = cv2.resize(cam01.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    transition = transition_matrix(embedding, beta)
    rust = cam.ravel().astype(np.float64)
    background = (1.0 - cam.ravel()) ** bg_power
    for _ in range(steps):
        rust, background = transition @ rust, transition @ background
    return (rust / np.maximum(rust + background, 1e-9)).reshape(height, width).astype(np.float32)


def seeds_from_labels(labels: np.ndarray, ignore_value: int, out_hw: tuple[int, int],
                      purity: float = 0.9) -> np.ndarray:
    """Pseudo labels [N, H, W] -> seed cells [N, h, w]: a cell is sure when `purity` of it is
    known and of one class; otherwise UNSURE."""
    from converter.student import targets_at_stride

    soft = targets_at_stride(labels, ignore_value, out_hw)
    share, known = soft[..., 0], soft[..., 1]
    seeds = np.full(share.shape, UNSURE, np.int32)
    seeds[(known >= purity) & (share >= purity)] = 1
    seeds[(known >= purity) & (share <= 1 - purity)] = 0
    return seeds

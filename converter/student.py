"""The student: a light segmentation head on the classifier's own MobileNetV2 features.

It carries the teacher's pseudo masks to the device at real-time cost, inside the same invoke
that returns the score and the CAM (model contract v2). The head follows the shape of LR-ASPP
(Howard et al., "Searching for MobileNetV3", 2019, section 6.2), adapted to a backbone without
dilation:

    high = relu(bn(conv1x1(block_13 expand, stride 16)) + up2(conv1x1(out_relu, stride 32)))
    high = high * sigmoid(conv1x1(global_pool(out_relu)))      # image-level context gate
    seg  = sigmoid(up2(conv1x1(high)) + conv1x1(block_6 expand, stride 8))

so `seg` comes out at stride 8 (40x40 at 320 px). The gate uses the pooled `out_relu` features,
the same vector the classifier's logit reads, so a frame the classifier finds clean can damp
the whole map.

`build_head` is the one definition of those layers. It is applied to feature *inputs* to train
on pre-computed features of a frozen backbone (fast on a CPU), and to the classifier's own
layers to build the combined model that is exported; the layer names match, so the trained
weights move across by name.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from converter.model import LOGIT_LAYER, at_input_size

FEATURE_LAYERS = ("block_6_expand_relu", "block_13_expand_relu", "out_relu")  # strides 8, 16, 32
SEG_LAYER = "seg"
SEG_STRIDE = 8
_HEAD_CHANNELS = 64


def head_logits(low: keras.KerasTensor, mid: keras.KerasTensor, high: keras.KerasTensor,
                prefix: str = SEG_LAYER, channels: int = 1,
                width: int = _HEAD_CHANNELS) -> keras.KerasTensor:
    """The LR-ASPP-style layers on three feature maps -> logits [N, H/8, W/8, channels].

    One definition serves the `seg` head and the `state` head (converter/states.py): only the
    name prefix, the number of output channels and the width differ. Layer names are
    f"{prefix}_..." so trained weights move across models by name.
    """
    mid_proj = keras.layers.Conv2D(width, 1, use_bias=False, name=f"{prefix}_mid_conv")(mid)
    high_proj = keras.layers.Conv2D(width, 1, use_bias=False, name=f"{prefix}_high_conv")(high)
    high_up = keras.layers.UpSampling2D(2, interpolation="bilinear",
                                        name=f"{prefix}_high_up")(high_proj)
    x = keras.layers.Add(name=f"{prefix}_mid_add")([mid_proj, high_up])
    x = keras.layers.BatchNormalization(name=f"{prefix}_mid_bn")(x)
    x = keras.layers.ReLU(name=f"{prefix}_mid_relu")(x)
    context = keras.layers.GlobalAveragePooling2D(keepdims=True,
                                                  name=f"{prefix}_context_pool")(high)
    gate = keras.layers.Conv2D(width, 1, activation="sigmoid",
                               name=f"{prefix}_context_gate")(context)
    x = keras.layers.Multiply(name=f"{prefix}_gated")([x, gate])
    x = keras.layers.Conv2D(channels, 1, name=f"{prefix}_mid_logit")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"{prefix}_mid_up")(x)
    low_logit = keras.layers.Conv2D(channels, 1, name=f"{prefix}_low_logit")(low)
    return keras.layers.Add(name=f"{prefix}_logit")([x, low_logit])


def build_head(low: keras.KerasTensor, mid: keras.KerasTensor,
               high: keras.KerasTensor) -> keras.KerasTensor:
    """The head's layers on three feature maps -> P(corrosion) [N, H/8, W/8, 1] named `seg`.

    The channel axis stays (a Reshape would fix the map size and break `at_input_size`); the
    export squeezes it to the contract's [1, h, w].
    """
    return keras.layers.Activation("sigmoid", name=SEG_LAYER)(head_logits(low, mid, high))


def feature_model(classifier: keras.Model) -> keras.Model:
    """The classifier's input -> [block_6, block_13, out_relu] feature maps (frozen use)."""
    return keras.Model(classifier.input,
                       [classifier.get_layer(name).output for name in FEATURE_LAYERS])


def head_model(feature_shapes: list[tuple[int, ...]]) -> keras.Model:
    """The head alone, on feature inputs of the given [h, w, c] shapes (for training)."""
    inputs = [keras.Input(shape, name=f"{name}_features")
              for shape, name in zip(feature_shapes, FEATURE_LAYERS)]
    return keras.Model(inputs, build_head(*inputs), name="seg_head")


def attach_head(classifier: keras.Model, head: keras.Model | None = None) -> keras.Model:
    """The classifier with the head on its features: image -> [logit, seg].

    With `head`, its trained weights are copied into the new model's head layers by name. A
    model that already has a head gets a fresh one in its place (re-distilling a v2 model).
    """
    classifier = without_head(classifier)
    seg = build_head(*(classifier.get_layer(name).output for name in FEATURE_LAYERS))
    combined = keras.Model(classifier.input, [classifier.get_layer(LOGIT_LAYER).output, seg],
                           name=f"{classifier.name}_seg")
    if head is not None:
        for layer in head.layers:
            if layer.weights:
                combined.get_layer(layer.name).set_weights(layer.get_weights())
    return combined


def has_head(model: keras.Model) -> bool:
    return any(layer.name == SEG_LAYER for layer in model.layers)


def without_head(model: keras.Model) -> keras.Model:
    """The classifier alone (image -> logit), whether or not `model` carries a seg head."""
    if not has_head(model):
        return model
    return keras.Model(model.input, model.get_layer(LOGIT_LAYER).output,
                       name=model.name.removesuffix("_seg"))


def masked_bce(targets_and_weights: tf.Tensor, probability: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy over pixels whose weight is > 0 (ignored pixels weigh 0).

    `targets_and_weights` stacks the soft target and the per-pixel weight on the last axis,
    [N, h, w, 2], because Keras passes one y_true to a loss.
    """
    target, weight = targets_and_weights[..., 0], targets_and_weights[..., 1]
    p = tf.clip_by_value(probability[..., 0], 1e-6, 1 - 1e-6)
    bce = -(target * tf.math.log(p) + (1 - target) * tf.math.log(1 - p))
    return tf.reduce_sum(bce * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)


def targets_at_stride(labels: np.ndarray, ignore_value: int, out_hw: tuple[int, int]
                      ) -> np.ndarray:
    """Pseudo labels uint8 [N, H, W] (0, 1, ignore) -> soft targets + weights [N, h, w, 2].

    Each output cell's target is the share of rust among its known pixels; its weight is the
    share of known pixels, so a cell the teacher was unsure about counts little or nothing.
    """
    import cv2

    out = np.zeros((len(labels), *out_hw, 2), np.float32)
    for i, label in enumerate(labels):
        known = (label != ignore_value).astype(np.float32)
        rust = (label == 1).astype(np.float32)
        size = (out_hw[1], out_hw[0])
        known_share = cv2.resize(known, size, interpolation=cv2.INTER_AREA)
        rust_share = cv2.resize(rust, size, interpolation=cv2.INTER_AREA)
        out[i, ..., 0] = np.where(known_share > 0, rust_share / np.maximum(known_share, 1e-6), 0)
        out[i, ..., 1] = known_share
    return out


def frozen_features(classifier: keras.Model, images: np.ndarray, input_size: int,
                    chunk: int = 256) -> list[np.ndarray]:
    """The backbone's FEATURE_LAYERS maps for uint8 RGB images, stored as float16.

    Computed in chunks: float32 maps of a few thousand 320 px samples would not fit in memory
    (about 1.6 MB each); float16 halves that, and the head casts each batch back.
    """
    features = feature_model(at_input_size(classifier, input_size))
    maps = None
    for start in range(0, len(images), chunk):
        batch = features.predict(images[start:start + chunk].astype(np.float32), batch_size=32,
                                 verbose=0)
        if maps is None:
            maps = [np.empty((len(images), *m.shape[1:]), np.float16) for m in batch]
        for stored, part in zip(maps, batch):
            stored[start:start + len(part)] = part
    return maps


class FeatureBatches(keras.utils.PyDataset):
    """Shuffled batches of (float32 feature maps, targets) cut from float16 arrays."""

    def __init__(self, maps: list[np.ndarray], targets: np.ndarray, batch_size: int, seed: int):
        super().__init__()
        self.maps, self.targets, self.batch_size = maps, targets, batch_size
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(targets))

    def __len__(self) -> int:
        return int(np.ceil(len(self.targets) / self.batch_size))

    def __getitem__(self, index: int):
        rows = np.sort(self.order[index * self.batch_size:(index + 1) * self.batch_size])
        return tuple(m[rows].astype(np.float32) for m in self.maps), self.targets[rows]

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.targets))

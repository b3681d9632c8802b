"""Grad-CAM++ in TensorFlow: the reference (GradientTape on the Keras model) and the formula.

The formula (Chattopadhay et al. 2018, eq. 19 with the exponential-score simplification, as
written in DESIGN.md), with A the feature maps at the CAM layer and g = dY/dA for the
pre-sigmoid corrosion logit Y:

    alpha = g^2 / (2 g^2 + sum_ij(A) * g^3)      (alpha = 0 where the denominator is 0)
    w_k   = sum_ij alpha_kij * relu(g_kij)
    cam   = relu(sum_k w_k A_k), divided by its maximum (an all-zero map stays zero)

`cam_from_gradients` is the formula; the reference and the exported TFLite graph both call it,
so they can only differ in how g was obtained, except at the last feature map, where the export
uses its closed form below (tests hold the two equal).

The closed form. When A is the last feature map before global average pooling, as `out_relu`
is here (A -> GAP -> Dense -> Y), Y = b + sum_k v_k * (1/(h w)) * sum_ij A_kij, so
g_kij = v_k / (h w) =: c_k, the same at every cell and independent of the image. With
S_k = sum_ij A_kij the denominator is c_k^2 (2 + S_k c_k), and S_k c_k = v_k * GAP(A)_k, so

    alpha_k = 1 / (2 + v_k GAP(A)_k)      (0 where 2 + v_k GAP(A)_k = 0; where v_k = 0 the
                                           rule gives alpha 0, and relu(g) is 0 there anyway)
    w_k     = h w * alpha_k * relu(c_k) = alpha_k * relu(v_k)
    cam     = relu(sum_k w_k A_k)

which needs A and the Dense weights only, no backward pass (`closed_form_cam`). Written this way
no constant is as small as c_k^3 (~1e-9), which float16 weights would flush to zero.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from converter.model import LOGIT_LAYER
from edge.errors import ConfigError


def cam_from_gradients(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ from A and g (both [N, h, w, K]) -> cam01 float32 [N, h, w] in [0, 1]."""
    g2 = gradients * gradients
    g3 = g2 * gradients
    spatial_sum = tf.reduce_sum(activations, axis=[1, 2], keepdims=True)
    alpha = _ratio_or_zero(g2, 2.0 * g2 + spatial_sum * g3)
    weights = tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=[1, 2], keepdims=True)
    return _weighted_map01(weights, activations)


def closed_form_cam(activations: tf.Tensor, logit_kernel: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ at the feature map A [N, h, w, K] that feeds GAP -> Dense(1) with kernel
    v [K] (module docstring) -> cam01 float32 [N, h, w]; equal to `cam_from_gradients`."""
    v = tf.reshape(logit_kernel, [1, 1, 1, -1])
    pooled = tf.reduce_mean(activations, axis=[1, 2], keepdims=True)
    alpha = _ratio_or_zero(tf.ones_like(pooled), 2.0 + v * pooled)
    return _weighted_map01(alpha * tf.nn.relu(v), activations)


def _ratio_or_zero(numerator: tf.Tensor, denominator: tf.Tensor) -> tf.Tensor:
    """numerator / denominator, 0 where the denominator is 0 (no NaN, no inf)."""
    nonzero = tf.not_equal(denominator, 0.0)
    return tf.where(nonzero, numerator / tf.where(nonzero, denominator,
                                                  tf.ones_like(denominator)),
                    tf.zeros_like(denominator))


def _weighted_map01(weights: tf.Tensor, activations: tf.Tensor) -> tf.Tensor:
    """relu(sum_k w_k A_k) divided by its maximum; an all-zero map stays zero."""
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))
    peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
    return cam / tf.where(peak > 0.0, peak, tf.ones_like(peak))


def cam_model(model: keras.Model, cam_layer: str) -> keras.Model:
    """A model returning [A at `cam_layer`, logit]; ConfigError naming the layer if unknown."""
    try:
        layer = model.get_layer(cam_layer)
    except ValueError:
        candidates = [l.name for l in model.layers if l.name.endswith(("_relu", "_add"))]
        raise ConfigError(f"--cam-layer {cam_layer!r} is not a layer of {model.name}; e.g. "
                          f"{', '.join(candidates[-4:])}") from None
    if len(layer.output.shape) != 4:
        raise ConfigError(f"--cam-layer {cam_layer!r} is not a convolutional feature map "
                          f"(output shape {layer.output.shape})")
    return keras.Model(model.input, [layer.output, model.get_layer(LOGIT_LAYER).output])


def pooled_logit_kernel(model: keras.Model, cam_layer: str) -> tf.Tensor | None:
    """The Dense kernel v [K] when `cam_layer` feeds the logit only through global average
    pooling, then any dropout, then the Dense(1) logit (so `closed_form_cam` applies); None
    for any other layer (the caller then needs a GradientTape).

    Walks back from the logit, so other consumers of A (the seg head) do not matter: Y
    depends on A through this chain alone.
    """
    logit = model.get_layer(LOGIT_LAYER)
    if not (isinstance(logit, keras.layers.Dense) and logit.units == 1
            and logit.activation is keras.activations.linear):
        return None
    layer = _producer(logit)
    while isinstance(layer, keras.layers.Dropout):  # identity at inference
        layer = _producer(layer)
    if not (isinstance(layer, keras.layers.GlobalAveragePooling2D)
            and layer.data_format == "channels_last"):
        return None
    feature_map = _producer(layer)
    if feature_map is None or feature_map.name != cam_layer:
        return None
    return logit.kernel[:, 0]


def _producer(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    """The layer whose output is `layer`'s single input (None if it has several inputs)."""
    inputs = layer.input
    if isinstance(inputs, (list, tuple)):
        return None
    return inputs._keras_history.operation


class ReferenceGradCamPP:
    """The truth: eager GradientTape Grad-CAM++ on the Keras model (built once, then called).

    Called with RGB 0..255 images [N, S, S, 3] (uint8 or float) at the model's input size;
    returns (score [N], cam01 [N, h, w]).
    """

    def __init__(self, model: keras.Model, cam_layer: str) -> None:
        self.features = cam_model(model, cam_layer)

    def __call__(self, images_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = tf.convert_to_tensor(np.asarray(images_rgb, np.float32))
        with tf.GradientTape() as tape:
            activations, logit = self.features(x, training=False)
        gradients = tape.gradient(logit, activations)
        cam = cam_from_gradients(activations, gradients)
        return tf.sigmoid(logit)[:, 0].numpy(), cam.numpy()


def reference_gradcam_pp(model: keras.Model, cam_layer: str, images_rgb: np.ndarray,
                         ) -> tuple[np.ndarray, np.ndarray]:
    """One-off use of ReferenceGradCamPP."""
    return ReferenceGradCamPP(model, cam_layer)(images_rgb)

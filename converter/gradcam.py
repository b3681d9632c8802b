"""Grad-CAM++ in TensorFlow: the reference (GradientTape on the Keras model) and the formula.

The formula (Chattopadhay et al. 2018, eq. 19 with the exponential-score simplification, as
written in DESIGN.md), with A the feature maps at the CAM layer and g = dY/dA for the
pre-sigmoid corrosion logit Y:

    alpha = g^2 / (2 g^2 + sum_ij(A) * g^3)      (alpha = 0 where the denominator is 0)
    w_k   = sum_ij alpha_kij * relu(g_kij)
    cam   = relu(sum_k w_k A_k), divided by its maximum (an all-zero map stays zero)

`cam_from_gradients` is the single implementation; the reference and the exported TFLite graph
both call it, so they can only differ in how g was obtained.

The closed form. When A is the last feature map before global average pooling, as `out_relu`
is here (A -> GAP -> Dense -> Y), Y = b + sum_k v_k * (1/(h w)) * sum_ij A_kij, so
g_kij = v_k / (h w) =: c_k, the same at every cell and independent of the image. The formula
then reads, with S_k = sum_ij A_kij,

    alpha_k = c_k^2 / (2 c_k^2 + S_k c_k^3)      (0 where that denominator is 0)
    w_k     = h w * alpha_k * relu(c_k)
    cam     = relu(sum_k w_k A_k)

which needs A and the Dense weights only, no backward pass. `spatially_constant_gradient`
finds c when the network has that shape; `cam_from_gradients` takes it as g of shape
[N, 1, 1, K] and applies the same code, zero-denominator and all-zero rules included.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from converter.model import LOGIT_LAYER
from edge.errors import ConfigError


def cam_from_gradients(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ from A [N, h, w, K] and g -> cam01 float32 [N, h, w] in [0, 1].

    g is [N, h, w, K], or [1, 1, 1, K] when it is constant in space (the closed form).
    """
    g2 = gradients * gradients
    g3 = g2 * gradients
    spatial_sum = tf.reduce_sum(activations, axis=[1, 2], keepdims=True)
    denominator = 2.0 * g2 + spatial_sum * g3
    nonzero = tf.not_equal(denominator, 0.0)
    alpha = tf.where(nonzero, g2 / tf.where(nonzero, denominator, tf.ones_like(denominator)),
                     tf.zeros_like(denominator))
    weights = tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=[1, 2], keepdims=True)
    cells_per_gradient = (activations.shape[1] * activations.shape[2]
                          // (gradients.shape[1] * gradients.shape[2]))
    if cells_per_gradient != 1:  # g constant in space: sum_ij of alpha relu(g) is h w times it
        weights = weights * float(cells_per_gradient)
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


def spatially_constant_gradient(model: keras.Model, cam_layer: str) -> tf.Tensor | None:
    """dY/dA as [1, 1, 1, K] when `cam_layer` feeds the logit only through global average
    pooling, then any dropout, then the Dense(1) logit; None for any other layer (the caller
    then needs a GradientTape).

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
    if _producer(layer) is not model.get_layer(cam_layer):
        return None
    height, width = (int(v) for v in model.get_layer(cam_layer).output.shape[1:3])
    kernel = logit.kernel[:, 0]  # [K]: v_k
    return tf.reshape(kernel, [1, 1, 1, -1]) / float(height * width)


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

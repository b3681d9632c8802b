"""Grad-CAM++ in TensorFlow: the reference (GradientTape on the Keras model) and the formula.

The formula (Chattopadhay et al. 2018, eq. 19 with the exponential-score simplification, as
written in DESIGN.md), with A the feature maps at the CAM layer and g = dY/dA for the
pre-sigmoid corrosion logit Y:

    alpha = g^2 / (2 g^2 + sum_ij(A) * g^3)      (alpha = 0 where the denominator is 0)
    w_k   = sum_ij alpha_kij * relu(g_kij)
    cam   = relu(sum_k w_k A_k), divided by its maximum (an all-zero map stays zero)

`cam_from_gradients` is the single implementation; the reference and the exported TFLite graph
both call it, so they can only differ in how g was obtained.
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
    denominator = 2.0 * g2 + spatial_sum * g3
    nonzero = tf.not_equal(denominator, 0.0)
    alpha = tf.where(nonzero, g2 / tf.where(nonzero, denominator, tf.ones_like(denominator)),
                     tf.zeros_like(denominator))
    weights = tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=[1, 2], keepdims=True)
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

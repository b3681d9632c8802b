"""A copy of the classifier whose backward pass uses only TFLite builtin ops.

TensorFlow differentiates ReLU6 with `Relu6Grad` and depthwise convolutions with
`DepthwiseConv2dNativeBackpropInput`; neither exists in TFLite without the Flex delegate. This
module clones the Keras model, swapping those layers for twins with the same forward maths and
a custom gradient written with builtin ops (compare, cast, mul, pad, depthwise conv). The twins
share the original weights, so nothing is copied or retrained.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from converter.model import at_input_size


def _relu_with_builtin_grad(max_value: float | None):
    @tf.custom_gradient
    def relu(x):
        y = tf.nn.relu(x) if max_value is None else tf.clip_by_value(x, 0.0, max_value)

        def grad(dy):
            passes = x > 0.0
            if max_value is not None:
                passes = tf.logical_and(passes, x < max_value)
            return dy * tf.cast(passes, dy.dtype)
        return y, grad
    return relu


class ReLUBuiltinGrad(keras.layers.Layer):
    """keras.layers.ReLU (no leak, no threshold) with a compare/cast/mul gradient."""

    def __init__(self, max_value: float | None, **kwargs):
        super().__init__(**kwargs)
        self.max_value = None if max_value is None else float(max_value)

    def call(self, x):
        return _relu_with_builtin_grad(self.max_value)(x)


def _zero_insert(t: tf.Tensor, stride: int) -> tf.Tensor:
    """[N, h, w, C] -> [N, s(h-1)+1, s(w-1)+1, C] with s-1 zero rows/cols between samples."""
    if stride == 1:
        return t
    n, h, w, c = t.shape
    zeros = [tf.zeros_like(t)] * (stride - 1)
    t = tf.reshape(tf.stack([t, *zeros], axis=2), [n, h * stride, w, c])
    zeros = [tf.zeros_like(t)] * (stride - 1)
    t = tf.reshape(tf.stack([t, *zeros], axis=3), [n, h * stride, w * stride, c])
    return t[:, : stride * (h - 1) + 1, : stride * (w - 1) + 1, :]


def _same_padding(size: int, out_size: int, kernel: int, stride: int) -> int:
    """Leading pad TensorFlow's 'same' padding adds (the extra one goes at the end)."""
    return max((out_size - 1) * stride + kernel - size, 0) // 2


def depthwise_input_gradient(dy: tf.Tensor, kernel: tf.Tensor, input_hw: tuple[int, int],
                             stride: int, padding: str) -> tf.Tensor:
    """dL/dx of y = depthwise_conv2d(x, kernel, stride, padding), from builtin ops only.

    The input gradient is the full correlation of the zero-inserted dy with the spatially
    flipped kernel; it is then cropped to the input window the forward pass read.
    """
    kh, kw = int(kernel.shape[0]), int(kernel.shape[1])
    (height, width), (out_h, out_w) = input_hw, (int(dy.shape[1]), int(dy.shape[2]))
    top = _same_padding(height, out_h, kh, stride) if padding == "same" else 0
    left = _same_padding(width, out_w, kw, stride) if padding == "same" else 0
    spread = tf.pad(_zero_insert(dy, stride), [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]])
    full = tf.nn.depthwise_conv2d(spread, kernel[::-1, ::-1], [1, 1, 1, 1], "VALID")
    full_h, full_w = int(full.shape[1]), int(full.shape[2])
    # Rows/cols of the (padded) input beyond the last window get no gradient: pad with zeros.
    grad = full[:, top:min(top + height, full_h), left:min(left + width, full_w), :]
    missing_h, missing_w = height - int(grad.shape[1]), width - int(grad.shape[2])
    if missing_h or missing_w:
        grad = tf.pad(grad, [[0, 0], [0, missing_h], [0, missing_w], [0, 0]])
    return grad


class DepthwiseConvBuiltinGrad(keras.layers.Layer):
    """Forward of a keras DepthwiseConv2D (same weights), backward by depthwise_input_gradient."""

    def __init__(self, original: keras.layers.DepthwiseConv2D, **kwargs):
        super().__init__(name=original.name, **kwargs)
        if original.depth_multiplier != 1 or tuple(original.dilation_rate) != (1, 1):
            raise ValueError(f"{original.name}: only depth_multiplier 1, dilation 1 supported")
        if original.strides[0] != original.strides[1]:
            raise ValueError(f"{original.name}: only equal strides supported")
        self.original = original

    def call(self, x):
        original = self.original
        kernel = tf.convert_to_tensor(original.kernel)
        stride, padding = int(original.strides[0]), original.padding
        input_hw = (int(x.shape[1]), int(x.shape[2]))

        @tf.custom_gradient
        def depthwise(inputs):
            y = tf.nn.depthwise_conv2d(inputs, kernel, [1, stride, stride, 1], padding.upper())

            def grad(dy):
                return depthwise_input_gradient(dy, kernel, input_hw, stride, padding)
            return y, grad

        y = depthwise(x)
        if original.use_bias:
            y = y + original.bias
        return original.activation(y)


def _swap_layer(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    if isinstance(layer, keras.layers.ReLU):
        if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            raise ValueError(f"{layer.name}: leaky/thresholded ReLU has no builtin gradient here")
        return ReLUBuiltinGrad(layer.max_value, name=layer.name)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return DepthwiseConvBuiltinGrad(layer)
    return None  # everything else is copied as is


def with_builtin_gradients(model: keras.Model, input_size: int | None = None) -> keras.Model:
    """A clone of `model` with builtin-op gradients, optionally at another square input size."""
    return at_input_size(model, input_size, swap_layer=_swap_layer)

"""The corrosion classifier: MobileNetV2 backbone -> global average pool -> Dense(1) logit.

The Keras model takes float RGB in 0..255 ([N, S, S, 3]) and returns the pre-sigmoid logit of
"corrosion" ([N, 1]); normalisation to [-1, 1] is its first layer, so the exported TFLite model
can take raw uint8 pixels. Grad-CAM++ differentiates that logit. The layers are flat (the
backbone is not nested) so any backbone layer can be looked up by name for the CAM.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras

from edge.errors import ConfigError, DataError

LOGIT_LAYER = "logit"
_SCRATCH_BN_MOMENTUM = 0.5
INPUT_NAME = "image"

# sha256 of the exact Keras files (../shared/data/README.md); a mismatch means other weights.
_KNOWN_WEIGHTS_SHA256 = {
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5":
        "df1c3db1d0d9193719c4c70f707c56f7021f999f825bdc57454c275cf6def19f",
    "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5":
        "279052de2cfa801003aa6cc25cc4d007d35dd0b76f06935268c79788b7642d05",
}


def imagenet_weights_file(alpha: float, weights_dir: str | Path) -> Path:
    """The Keras no-top weights file for `alpha`, checked against its known sha256."""
    name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha:g}_224_no_top.h5"
    path = Path(weights_dir) / name
    if not path.is_file():
        raise DataError(f"ImageNet weights {path} not found; set train.weights_dir or pass "
                        "--weights none|PATH.h5")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != _KNOWN_WEIGHTS_SHA256[name]:
        raise DataError(f"ImageNet weights {path} have sha256 {digest[:12]}..., not the "
                        "Keras release file")
    return path


def resolve_weights(weights: str, alpha: float, weights_dir: str | Path) -> Path | None:
    """'imagenet' -> the checked file, 'none' -> None, anything else -> an existing .h5 path."""
    if weights == "imagenet":
        return imagenet_weights_file(alpha, weights_dir)
    if weights == "none":
        return None
    path = Path(weights)
    if not path.is_file() or path.suffix != ".h5":
        raise ConfigError(f"--weights {weights!r}: expected imagenet, none or an existing .h5 file")
    return path


def build_classifier(input_size: int, alpha: float, weights_path: Path | None,
                     dropout: float) -> keras.Model:
    """A fresh classifier; the backbone carries `weights_path` (a no-top .h5) when given."""
    image = keras.Input((input_size, input_size, 3), name=INPUT_NAME)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(image)
    backbone = keras.applications.MobileNetV2(input_tensor=x, alpha=alpha, include_top=False,
                                              weights=None)
    if weights_path is not None:
        # The no-top file holds conv weights only, valid at any input size.
        backbone.load_weights(str(weights_path))
    else:
        # From scratch the batch-norm statistics start meaningless; Keras' 0.999 momentum
        # would need thousands of steps to track them; 0.5 follows the last few batches.
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = _SCRATCH_BN_MOMENTUM
    x = keras.layers.GlobalAveragePooling2D(name="gap")(backbone.output)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logit = keras.layers.Dense(1, name=LOGIT_LAYER)(x)
    return keras.Model(image, logit, name=f"rustseg_mnv2_{alpha:g}_{input_size}")


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The MobileNetV2 layers (everything between the normalise layer and the pool)."""
    names = [layer.name for layer in model.layers]
    start, stop = names.index("normalize") + 1, names.index("gap")
    return model.layers[start:stop]


def set_trainable(model: keras.Model, first_trainable: str | None,
                  freeze_batchnorm: bool = True) -> int:
    """Freeze the backbone up to the first layer named `first_trainable*` (None: all frozen).

    With pretrained weights, batch-norm layers stay frozen (ImageNet statistics) in every
    stage, as usual when fine-tuning on a small dataset; from scratch they must learn.
    Returns how many backbone layers are trainable.
    """
    layers = backbone_layers(model)
    names = [layer.name for layer in layers]
    start = len(layers)
    if first_trainable is not None:
        matches = [i for i, name in enumerate(names) if name.startswith(first_trainable)]
        if not matches:
            raise ConfigError(f"train.finetune_from = {first_trainable!r} matches no backbone "
                              f"layer; e.g. block_8, block_13, Conv_1")
        start = matches[0]
    count = 0
    for i, layer in enumerate(layers):
        frozen_bn = freeze_batchnorm and isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= start and not frozen_bn
        count += layer.trainable
    return count


def _fresh_copy(layer: keras.layers.Layer) -> keras.layers.Layer:
    return layer.__class__.from_config(layer.get_config())


def at_input_size(model: keras.Model, input_size: int | None,
                  swap_layer=None) -> keras.Model:
    """A copy of the network on a new square input size, with the same weights.

    `swap_layer(layer)` may return a stand-in for a layer (see converter/builtin_grad.py) or
    None to keep it. Layers are copied rather than shared because a shared Keras layer's
    `.output` names its first use, and the CAM needs this copy's feature maps. Convolutions
    and the pool do not depend on the input size, so the weights carry over unchanged.
    """
    side = int(model.input.shape[1]) if input_size is None else input_size
    if side == model.input.shape[1] and swap_layer is None:
        return model
    swapped = set()

    def clone(layer):
        stand_in = swap_layer(layer) if swap_layer else None
        if stand_in is not None:
            swapped.add(layer.name)
            return stand_in
        return _fresh_copy(layer)

    copy = keras.models.clone_model(model, input_tensors=keras.Input((side, side, 3),
                                                                     name=INPUT_NAME),
                                    clone_function=clone)
    for layer in copy.layers:
        if layer.name not in swapped and layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return copy

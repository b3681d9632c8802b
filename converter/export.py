"""`rustseg export`: one TFLite file that returns the corrosion score AND its Grad-CAM++ map
(and, for a model with a distilled segmentation head, its `seg` map: model contract v2).

Recipe (each step avoids one pitfall listed in DESIGN.md):
1. clone the Keras model with builtin-op gradients (no Relu6Grad / depthwise backprop Flex ops);
2. trace uint8 image -> (score, cam): at the last feature map before the pool in closed form
   (no backward pass, see converter/gradcam.py), elsewhere with a GradientTape inside the
   tf.function;
3. freeze variables into constants (live variables leave READ_VARIABLE ops that return garbage);
4. save the frozen function as a SavedModel signature so the outputs keep the names `score` and
   `cam` (freezing alone drops them), then convert that SavedModel;
5. verify: load the file with the edge runtime and compare with the reference Grad-CAM++, and
   `seg` with the Keras student's own output.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from converter.builtin_grad import with_builtin_gradients
from converter.gradcam import (cam_from_gradients, cam_model, closed_form_cam,
                               pooled_logit_kernel, reference_gradcam_pp)
from converter.model import at_input_size
from converter.states import STATE_LAYER, has_states  # also registers the state layer
from converter.student import SEG_LAYER, SEG_STRIDE, has_head, without_head
from edge.errors import ConfigError, DataError, ModelError
from edge.method.modelcard import ModelCard, sha256_hex

QUANT_MODES = ("float32", "float16", "dynamic", "int8")
# Why one would ship each variant (measured in benchmarks/results/quantization.json).
_QUANT_NOTES = {
    "float32": "float32: the reference; largest file.",
    "float16": "float16 weights: half the size of float32 at the same speed on CPU (XNNPACK "
               "computes in float32) with CAM correlation ~0.9997; the shipped choice.",
    "dynamic": "dynamic-range int8 weights: smallest file but about 2x slower on x86 CPUs "
               "(hybrid kernels) and CAM correlation ~0.996.",
    "int8": "int8 forward pass except the 20 layers int8 rounds worst (kept float) and the "
            "float CAM tail: CAM correlation ~0.99, IoU@0.5 ~0.92 with float, but with those "
            "float layers no smaller or faster than float16 on x86 CPUs.",
}
_FORBIDDEN_OPS = ("FLEX", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CUSTOM")
_INPUT_MULTIPLE_PX = 32  # MobileNetV2 halves the resolution five times
_INT8_FLOAT_LAYERS = 20  # forward layers int8 rounds worst, kept float (benchmarks/quantization.py)
_INT8_DEBUG_IMAGES = 8   # calibration images the per-layer int8 error is measured on


@dataclass(frozen=True)
class ExportRequest:
    model: str
    out: str
    quant: str
    cam_layer: str
    input_size: int = 0            # 0: the Keras model's own input size
    rep_data: str | None = None    # folder of images for int8 calibration and verification
    rep_images: int = 200
    verify_images: int = 16
    threshold: float | None = None  # None: the one training chose (NAME.metrics.json), or 0.5


def load_keras_model(path: str | Path) -> keras.Model:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Keras model {path} does not exist")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file; report it as one line
        raise ModelError(f"Keras model {path} could not be loaded: {str(exc).splitlines()[0]}") \
            from None


@dataclass(frozen=True)
class FrozenCam:
    """A frozen concrete function and the names of its (flat, positional) outputs."""

    function: object
    output_names: tuple[str, ...]

    def named_outputs(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        return dict(zip(self.output_names, self.function(image)))

    def output_shape(self, name: str) -> list[int]:
        return self.function.outputs[self.output_names.index(name)].shape.as_list()


def build_cam_function(model: keras.Model, cam_layer: str, input_size: int,
                       closed_form: bool = True) -> FrozenCam:
    """Frozen: uint8 RGB [1, S, S, 3] -> {'score': [1, 1], 'cam': [1, h, w]} and, when the
    model has a segmentation head, 'seg': [1, S/8, S/8], and with a state head 'state':
    [1, S/8, S/8, 3] (contract v3), all from one forward pass.

    At the last feature map before the pool (out_relu) the CAM is the closed form of
    converter/gradcam.py, a few ops after A; at earlier layers a GradientTape inside the graph
    supplies dY/dA, through a clone with builtin-op gradients. `closed_form=False` forces the
    tape everywhere (the benchmark's before/after).
    """
    sized = at_input_size(model, input_size)
    logit_kernel = pooled_logit_kernel(sized, cam_layer) if closed_form else None
    graph_model = sized if logit_kernel is not None else \
        with_builtin_gradients(model, input_size)
    features = cam_model(graph_model, cam_layer)
    with_seg, with_state = has_head(graph_model), has_states(graph_model)
    extra = ([graph_model.get_layer(SEG_LAYER).output] if with_seg else []) + \
        ([graph_model.get_layer(STATE_LAYER).output] if with_state else [])
    if extra:
        features = keras.Model(features.input, [*features.outputs, *extra])

    @tf.function(input_signature=[tf.TensorSpec([1, input_size, input_size, 3], tf.uint8,
                                                name="image")])
    def score_and_cam(image):
        # The tape adds nothing to the graph unless it is asked for a gradient.
        with tf.GradientTape() as tape:
            outputs = features(tf.cast(image, tf.float32), training=False)
            activations, logit = outputs[0], outputs[1]
        cam = (closed_form_cam(activations, logit_kernel) if logit_kernel is not None
               else cam_from_gradients(activations, tape.gradient(logit, activations)))
        named = {"score": tf.sigmoid(logit), "cam": cam}
        if with_seg:
            named["seg"] = outputs[2][..., 0]
        if with_state:
            named["state"] = outputs[3]   # [1, h, w, 3] cumulative, order kept by the graph
        return named

    concrete = score_and_cam.get_concrete_function()
    # Freezing flattens the dict in tf.nest order (sorted keys); keep that order to undo it.
    names = tuple(sorted(concrete.structured_outputs))
    return FrozenCam(convert_variables_to_constants_v2(concrete), names)


def build_score_function(model: keras.Model, input_size: int) -> FrozenCam:
    """The plain classifier (score only), frozen like the CAM model: the overhead baseline."""
    sized = at_input_size(without_head(model), input_size)

    @tf.function(input_signature=[tf.TensorSpec([1, input_size, input_size, 3], tf.uint8,
                                                name="image")])
    def score_only(image):
        return {"score": tf.sigmoid(sized(tf.cast(image, tf.float32), training=False))}

    return FrozenCam(convert_variables_to_constants_v2(score_only.get_concrete_function()),
                     ("score",))


def convert(frozen: FrozenCam, quant: str, representative: np.ndarray | None) -> bytes:
    """SavedModel round trip (keeps the signature names), then TFLite conversion."""
    input_size = frozen.function.inputs[0].shape[1]

    @tf.function(input_signature=[tf.TensorSpec([1, input_size, input_size, 3], tf.uint8,
                                                name="image")])
    def serving(image):
        return frozen.named_outputs(image)

    with tempfile.TemporaryDirectory() as saved:
        module = tf.Module()
        module.serving = serving
        # Custom gradients were already applied while tracing; saving them again fails on the
        # frozen graph's captures, so they are left out.
        tf.saved_model.save(module, saved, signatures={"serving_default": serving},
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))

        def converter():
            c = tf.lite.TFLiteConverter.from_saved_model(saved)
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            return c

        if quant == "float32":
            return converter().convert()
        if quant in ("float16", "dynamic"):
            c = converter()
            c.optimizations = [tf.lite.Optimize.DEFAULT]
            if quant == "float16":
                c.target_spec.supported_types = [tf.float16]
            return c.convert()
        return _int8_forward_float_gradient(converter, representative)


def _int8_forward_float_gradient(converter, representative: np.ndarray | None) -> bytes:
    """int8 for the classifier's forward pass, except the layers int8 rounds worst; the
    gradient and Grad-CAM++ tail stay float.

    Fully int8, the gradients (1e-3..1e-9) quantise to zero and the CAM vanishes; the
    calibrator also quantises the final division and then fails on a zero divisor. So every
    tensor that is not a forward activation of the Keras model is kept out of quantisation.
    Quantising every forward layer then drifts the CAM (correlation 0.971, IoU@0.5 0.83 with
    the float map on real photos) and neither the CAM layer in float nor 3x the calibration
    images helps: the error starts early (MobileNetV2's depthwise layers). So a first pass
    measures each layer's int8 error (TFLite's quantization debugger) and the worst ones stay
    float (selective quantisation). Input (uint8) and outputs (float32) keep the contract's types.
    """
    if representative is None or not len(representative):
        raise ConfigError("--quant int8 needs --rep-data DIR with images to calibrate on")
    from edge.method.model import load_interpreter_class

    interpreter_class, _ = load_interpreter_class("auto")
    names = [d["name"] for d in
             interpreter_class(model_content=converter().convert()).get_tensor_details()]
    # Forward activations live under the Keras model's scope ("functional..."); gradients are
    # under gradient_tape/ or in the custom-gradient functions (no model scope).
    not_forward = [n for n in names if not n.startswith("functional") or "gradient_tape" in n]

    def debugger(denylist):
        c = converter()
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([image[None]] for image in representative)
        return tf.lite.experimental.QuantizationDebugger(
            converter=c,
            debug_dataset=lambda: ([image[None]] for image in representative[:_INT8_DEBUG_IMAGES]),
            debug_options=tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=denylist))

    first = debugger(not_forward)
    first.run()
    worst = _worst_quantised_layers(first, _INT8_FLOAT_LAYERS)
    return debugger(not_forward + worst).get_nondebug_quantized_model()


def _worst_quantised_layers(debugger, count: int) -> list[str]:
    """The `count` tensors with the largest int8 error in units of their own step
    (RMSE / scale: 0.29 is plain rounding, more means the layer's range hurts it)."""
    table = io.StringIO()
    debugger.layer_statistics_dump(table)
    table.seek(0)
    errors = {}
    for row in csv.DictReader(table):
        scale = float(row["scale"] or 0)
        if scale > 0:
            errors[row["tensor_name"]] = float(row["mean_squared_error"]) ** 0.5 / scale
    return sorted(errors, key=errors.get, reverse=True)[:count]


def sample_images(folder: str | None, size: int, count: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB [N, S, S, 3] squashed like the runtime does: from a folder tree, else synthetic."""
    import cv2

    from edge.data.imageio import IMAGE_SUFFIXES, read_image_bgr
    from edge.data.synthetic import SceneOptions, make_scene

    images = []
    if folder:
        root = Path(folder)
        if not root.is_dir():
            raise DataError(f"--rep-data {root} is not a folder")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                       and "masks" not in p.parts)
        rng = np.random.default_rng(seed)
        for path in rng.permutation(np.array(files, dtype=object))[:count]:
            frame = read_image_bgr(path)
            images.append(cv2.cvtColor(cv2.resize(frame, (size, size),
                                                  interpolation=cv2.INTER_AREA),
                                       cv2.COLOR_BGR2RGB))
        if not images:
            raise DataError(f"--rep-data {root} holds no images")
    else:
        for i in range(count):
            frame, _ = make_scene(size, size, seed=seed + i, options=SceneOptions(rust=i % 3 != 0))
            images.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return np.stack(images)


def fidelity(model: keras.Model, cam_layer: str, model_path: Path, images: np.ndarray) -> dict:
    """Exported file vs the reference on the same uint8 images: score and CAM agreement."""
    from edge.method.model import CorrosionModel

    sized = at_input_size(model, images.shape[1])
    ref_scores, ref_cams = reference_gradcam_pp(sized, cam_layer, images)
    runner = CorrosionModel(model_path, threads=1, require_card=False)
    score_diff, cam_max_diff, correlations, ious = [], [], [], []
    seg_max_diff, seg_ious, state_max_diff, state_order = [], [], [], []
    ref_segs = keras_seg(sized, images) if has_head(sized) else [None] * len(images)
    ref_states = keras_states(sized, images) if has_states(sized) else [None] * len(images)
    for image, ref_score, ref_cam, ref_seg, ref_state in zip(images, ref_scores, ref_cams,
                                                              ref_segs, ref_states):
        score, cam, seg, state = runner.invoke_rgb(image)
        if ref_state is not None:
            state_max_diff.append(float(np.abs(state - ref_state).max()))
            state_order.append(float(np.diff(state, axis=-1).max()))
        score_diff.append(abs(score - ref_score))
        cam_max_diff.append(float(np.abs(cam - ref_cam).max()))
        correlations.append(_correlation(cam, ref_cam))
        ious.append(_iou_at_half(cam, ref_cam))
        if ref_seg is not None:
            seg_max_diff.append(float(np.abs(seg - ref_seg).max()))
            seg_ious.append(_iou_at_half(seg, ref_seg))
    report = {"n_images": len(images),
              "score_max_abs_diff": float(np.max(score_diff)),
              "cam_max_abs_diff": float(np.max(cam_max_diff)),
              "cam_correlation_min": float(np.min(correlations)),
              "cam_correlation_mean": float(np.mean(correlations)),
              "cam_mask_iou_at_0.5_min": float(np.min(ious)),
              "cam_mask_iou_at_0.5_mean": float(np.mean(ious))}
    if seg_max_diff:
        report.update({"seg_max_abs_diff": float(np.max(seg_max_diff)),
                       "seg_mask_iou_at_0.5_min": float(np.min(seg_ious))})
    if state_max_diff:
        # The largest rise from one state's channel to the next: <= 0 means the order held.
        report.update({"state_max_abs_diff": float(np.max(state_max_diff)),
                       "state_channel_rise_max": float(np.max(state_order))})
    return report


def keras_states(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The Keras state head's cumulative maps [N, h, w, 3] for uint8 RGB images."""
    state_model = keras.Model(model.input, model.get_layer(STATE_LAYER).output)
    return state_model.predict(images.astype(np.float32), verbose=0)


def keras_seg(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The Keras student's P(corrosion) maps [N, h, w] for uint8 RGB images at its input size."""
    seg_model = keras.Model(model.input, model.get_layer(SEG_LAYER).output)
    return seg_model.predict(images.astype(np.float32), verbose=0)[..., 0]


def _iou_at_half(ours: np.ndarray, theirs: np.ndarray) -> float:
    ours, theirs = ours >= 0.5, theirs >= 0.5
    union = np.count_nonzero(ours | theirs)
    return np.count_nonzero(ours & theirs) / union if union else 1.0


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:  # flat maps: equal means perfect agreement
        return 1.0 if np.allclose(a, b, atol=1e-6) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def op_names(model_bytes: bytes) -> set[str]:
    """Builtin op names in a TFLite flatbuffer (custom/Flex ops show as CUSTOM or FLEX_...)."""
    from edge.method.model import load_interpreter_class

    interpreter_class, _ = load_interpreter_class("auto")
    interpreter = interpreter_class(model_content=model_bytes)
    return {detail["op_name"] for detail in interpreter._get_ops_details()}


def export(request: ExportRequest) -> dict:
    """Write NAME.tflite and NAME.json; returns the fidelity report."""
    if request.quant not in QUANT_MODES:
        raise ConfigError(f"--quant {request.quant!r}: expected one of {', '.join(QUANT_MODES)}")
    if request.quant == "int8" and not request.rep_data:
        raise ConfigError("--quant int8 needs --rep-data DIR with images to calibrate on")
    model = load_keras_model(request.model)
    input_size = request.input_size or int(model.input.shape[1])
    if input_size % _INPUT_MULTIPLE_PX:
        raise ConfigError(f"--input-size {input_size}: expected a multiple of "
                          f"{_INPUT_MULTIPLE_PX} px")
    out = Path(request.out)
    if out.suffix != ".tflite":
        raise ConfigError(f"--out {out}: expected a path ending in .tflite")
    out.parent.mkdir(parents=True, exist_ok=True)

    frozen = build_cam_function(model, request.cam_layer, input_size)
    representative = (sample_images(request.rep_data, input_size, request.rep_images)
                      if request.quant == "int8" else None)
    model_bytes = convert(frozen, request.quant, representative)
    forbidden = sorted(op for op in op_names(model_bytes) if op.startswith(_FORBIDDEN_OPS))
    if forbidden:
        raise ModelError(f"export produced non-builtin ops {', '.join(forbidden)}; the model "
                         "would not load on a device without Flex")
    out.write_bytes(model_bytes)

    report = {}
    if request.verify_images:
        verify = sample_images(request.rep_data, input_size, request.verify_images, seed=1)
        report = fidelity(model, request.cam_layer, out, verify)
    cam_shape = frozen.output_shape("cam")
    v2 = "seg" in frozen.output_names
    v3 = "state" in frozen.output_names
    trained = sidecar(request.model, ".metrics.json")
    card = ModelCard(
        labels=["no_corrosion", "corrosion"],
        threshold=request.threshold if request.threshold is not None else
        float(sidecar(request.model, ".metrics.json").get("threshold", 0.5)),
        input_size=[input_size, input_size], cam_layer=request.cam_layer,
        cam_size=[int(cam_shape[1]), int(cam_shape[2])], quantization=request.quant,
        backbone=_backbone_description(model),
        outputs={name: name for name in frozen.output_names},
        training=_training_record(request.model), validation_metrics=_metrics_record(request.model),
        model_sha256=sha256_hex(model_bytes), fidelity=report,
        notes=f"exported {datetime.date.today().isoformat()} from {Path(request.model).name}. "
              f"{_QUANT_NOTES[request.quant]}",
        contract=3 if v3 else 2 if v2 else 1,
        seg_size=[int(v) for v in frozen.output_shape("seg")[1:3]] if v2 else None,
        student=trained.get("student", {}) if v2 else {},
        state_size=[int(v) for v in frozen.output_shape("state")[1:3]] if v3 else None,
        states=trained.get("states", {}) if v3 else {})
    card.write(out)
    return report


def sidecar(model_path: str, suffix: str) -> dict:
    path = Path(model_path).with_suffix(suffix)
    return json.loads(path.read_text()) if path.is_file() else {}


def _metrics_record(model_path: str) -> dict:
    metrics = sidecar(model_path, ".metrics.json")
    keys = ("accuracy", "precision", "recall", "f1", "auc", "confusion", "threshold", "n_images",
            "validation", "threshold_from")
    return {k: metrics[k] for k in keys if k in metrics}


def _training_record(model_path: str) -> dict:
    metrics = sidecar(model_path, ".metrics.json")
    return {"data": metrics.get("training_data", "unknown"),
            "labels": metrics.get("labels", "image-level"),
            "n_train": metrics.get("n_train"),
            "best_epoch": f"{metrics.get('best_stage')} {metrics.get('best_epoch')}"}


def _backbone_description(model: keras.Model) -> str:
    head = (f"; seg head on the same features, stride {SEG_STRIDE} -> sigmoid"
            if has_head(model) else "")
    if has_states(model):
        head += (f"; state head on the same features, stride {SEG_STRIDE} -> chained sigmoids "
                 "P(>= Fair) >= P(>= Poor) >= P(>= Severe)")
    return f"MobileNetV2 ({model.name}), GAP -> Dense(1) logit -> sigmoid{head}"

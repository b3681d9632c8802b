"""The corrosion model on the device: one class owns the TFLite runtime and the contract.

`CorrosionModel` finds a TFLite runtime (ai_edge_litert, else tflite_runtime, else tf.lite),
checks the file and its model card, looks the `score` and `cam` outputs (and `seg` from
contract v2, `state` from v3) up by name, keeps one interpreter per calling thread (interpreters are not thread-safe), and turns frames into model
input and model output back into frame-sized heatmaps.

Preprocessing squashes the whole frame to the model's square input (no letterbox, no crop):
the inspector needs the full field of view, the CAM then maps back onto the frame with one
plain resize, and the classifier was trained on squashed images too.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from edge.errors import DataError, MissingDependencyError, ModelError
from edge.method.choices import RUNTIMES
from edge.method.modelcard import ModelCard
from edge.native_logs import tflite_info_hidden

_RUNTIME_MODULES = {"ai_edge_litert": "ai_edge_litert.interpreter",
                    "tflite_runtime": "tflite_runtime.interpreter",
                    "tensorflow": "tensorflow"}
_CONTRACT_OUTPUTS = ("score", "cam", "seg", "state")
_TFLITE_MAGIC = b"TFL3"  # flatbuffer file identifier at bytes 4..8


def load_interpreter_class(preference: str = "auto"):
    """(Interpreter class, runtime name) for `preference`, or the first available for auto."""
    names = RUNTIMES if preference == "auto" else (preference,)
    for name in names:
        try:
            module = importlib.import_module(_RUNTIME_MODULES[name])
        except ImportError:
            continue
        return (module.lite.Interpreter if name == "tensorflow" else module.Interpreter), name
    raise MissingDependencyError(
        f"no TFLite runtime found (tried {', '.join(names)}); install one: "
        "pip install 'rustseg-edge[edge]' (ai-edge-litert)")


@dataclass(frozen=True)
class Prediction:
    """What the model says about one frame."""

    score: float                 # probability of corrosion, 0..1
    cam01: np.ndarray            # float32 [h, w] Grad-CAM++ at model resolution, 0..1
    valid: bool = True           # False when the model returned NaN/Inf (then score 0, cam 0)
    seg01: np.ndarray | None = None  # float32 [h', w'] P(corrosion) from a v2 model, else None
    state: np.ndarray | None = None  # float32 [h', w', 3] P(>= Fair/Poor/Severe), v3 models

    @property
    def evidence01(self) -> np.ndarray:
        """The best per-pixel evidence present: the distilled `seg`, else the CAM."""
        return self.cam01 if self.seg01 is None else self.seg01

    def with_evidence(self, evidence01: np.ndarray) -> "Prediction":
        """The same prediction with its best evidence replaced (carried across frames)."""
        if self.seg01 is None:
            return dataclasses.replace(self, cam01=evidence01)
        return dataclasses.replace(self, seg01=evidence01)


class RawOutputs(NamedTuple):
    """The model's outputs as returned, at model resolution, without clean-up."""

    score: float
    cam01: np.ndarray                # float32 [h, w]
    seg01: np.ndarray | None         # float32 [h', w'] (contract v2+)
    state: np.ndarray | None         # float32 [h', w', 3] cumulative (contract v3)


class CorrosionModel:
    """A contract-checked TFLite model: frame_bgr in, score + heatmap out."""

    def __init__(self, model_path: str | Path, threads: int = 2, runtime: str = "auto",
                 require_card: bool = True) -> None:
        self.path = Path(model_path)
        self._bytes = _read_tflite(self.path)
        self.card = ModelCard.read(self.path) if require_card else None
        if self.card is not None:
            self.card.check_model_bytes(self._bytes, self.path)
        self._interpreter_class, self.runtime = load_interpreter_class(runtime)
        self.threads = threads
        self._local = threading.local()
        first = self._interpreter()  # build now so bad models fail at start, not mid-flight
        self.input_hw = tuple(int(v) for v in first.input_shape[1:3])
        self.cam_hw = tuple(int(v) for v in first.cam_shape[1:3])
        self.seg_hw = None if first.seg_shape is None else \
            tuple(int(v) for v in first.seg_shape[1:3])
        self.state_hw = None if first.state_shape is None else \
            tuple(int(v) for v in first.state_shape[1:3])
        if self.card is not None:
            self._check_card_shapes()

    # --- model input/output ---------------------------------------------------------------

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """frame_bgr uint8 [H, W, 3] -> model input uint8 RGB [S, S, 3] (squashed, see module)."""
        height, width = self.input_hw
        shrinking = frame_bgr.shape[0] >= height and frame_bgr.shape[1] >= width
        resized = cv2.resize(frame_bgr, (width, height),
                             interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)

    def infer(self, image_rgb: np.ndarray) -> Prediction:
        """One invoke: uint8 RGB [S, S, 3] -> Prediction (score and cam01 at model resolution)."""
        if image_rgb.shape != (*self.input_hw, 3) or image_rgb.dtype != np.uint8:
            raise DataError(f"model input must be uint8 RGB {self.input_hw[0]}x{self.input_hw[1]}x3,"
                            f" got {image_rgb.dtype} {image_rgb.shape}")
        raw = self.invoke_rgb(image_rgb)
        arrays = [a for a in (raw.cam01, raw.seg01, raw.state) if a is not None]
        if not (np.isfinite(raw.score) and all(np.isfinite(a).all() for a in arrays)):
            # Never let NaN/Inf reach the mask or the log: an invalid, empty prediction.
            return Prediction(0.0, np.zeros_like(raw.cam01), valid=False,
                              seg01=None if raw.seg01 is None else np.zeros_like(raw.seg01),
                              state=None if raw.state is None else np.zeros_like(raw.state))
        return Prediction(min(max(raw.score, 0.0), 1.0), np.clip(raw.cam01, 0.0, 1.0),
                          seg01=None if raw.seg01 is None else np.clip(raw.seg01, 0.0, 1.0),
                          state=None if raw.state is None else np.clip(raw.state, 0.0, 1.0))

    def predict(self, frame_bgr: np.ndarray) -> Prediction:
        return self.infer(self.preprocess(frame_bgr))

    def invoke_rgb(self, image_rgb: np.ndarray) -> RawOutputs:
        """One invoke on uint8 RGB [S, S, 3]: every output the model has, reshaped to its
        contract shape but not cleaned (fidelity checks compare these with the reference)."""
        out = self._interpreter().run(image_rgb[None])
        return RawOutputs(
            float(np.ravel(out["score"])[0]),
            np.asarray(out["cam"], np.float32).reshape(self.cam_hw),
            None if "seg" not in out else np.asarray(out["seg"], np.float32).reshape(self.seg_hw),
            None if "state" not in out else
            np.asarray(out["state"], np.float32).reshape(*self.state_hw, 3))

    @property
    def contract(self) -> int:
        """3 with `state` (condition states), 2 with `seg` (distilled segmentation), else 1."""
        return 3 if self.state_hw is not None else 1 if self.seg_hw is None else 2

    @staticmethod
    def cam_to_frame(cam01: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """Upsample a heatmap to the frame, bilinear (heatmaps are smooth; masks use nearest)."""
        return cv2.resize(cam01, (frame_hw[1], frame_hw[0]), interpolation=cv2.INTER_LINEAR)

    @property
    def threshold(self) -> float:
        return self.card.threshold if self.card is not None else 0.5

    # --- internals ------------------------------------------------------------------------

    def _interpreter(self) -> "_BoundInterpreter":
        bound = getattr(self._local, "bound", None)
        if bound is None:
            bound = _BoundInterpreter(self._interpreter_class, self._bytes, self.threads,
                                      self.path, self.card)
            self._local.bound = bound
        return bound

    def _check_card_shapes(self) -> None:
        card = self.card
        if list(self.input_hw) != list(card.input_size):
            raise ModelError(f"model card {card.path_for(self.path)} says input {card.input_size}"
                             f" but {self.path} takes {list(self.input_hw)}")
        if list(self.cam_hw) != list(card.cam_size):
            raise ModelError(f"model card {card.path_for(self.path)} says cam {card.cam_size}"
                             f" but {self.path} returns {list(self.cam_hw)}")
        # Outputs each contract adds: (contract, name, shape the file has, shape the card says).
        for contract, name, ours, said in ((2, "seg", self.seg_hw, card.seg_size),
                                           (3, "state", self.state_hw, card.state_size)):
            if card.contract < contract:
                continue
            if ours is None:
                raise ModelError(f"model card {card.path_for(self.path)} says contract "
                                 f"{contract} but {self.path} has no output named '{name}'")
            if list(ours) != list(said):
                raise ModelError(f"model card {card.path_for(self.path)} says {name} {said}"
                                 f" but {self.path} returns {list(ours)}")


class _BoundInterpreter:
    """One interpreter with its tensor indices resolved by output name (not position)."""

    def __init__(self, interpreter_class, model_bytes: bytes, threads: int, path: Path,
                 card: ModelCard | None) -> None:
        try:
            with tflite_info_hidden():  # "INFO: Created ... XNNPACK delegate" on first use
                interpreter = interpreter_class(model_content=model_bytes, num_threads=threads)
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"model {path} could not be loaded by the TFLite runtime: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
                             ) from None
        self.interpreter = interpreter
        inputs = interpreter.get_input_details()
        if len(inputs) != 1 or inputs[0]["dtype"] != np.uint8 or len(inputs[0]["shape"]) != 4 \
                or inputs[0]["shape"][3] != 3:
            raise ModelError(f"model {path} breaks the contract: expected one uint8 input "
                             f"[1, H, W, 3], got {[(d['dtype'].__name__, list(d['shape'])) for d in inputs]}")
        self.input_index = inputs[0]["index"]
        self.input_shape = tuple(inputs[0]["shape"])
        outputs = _outputs_by_name(interpreter, card)
        missing = [name for name in ("score", "cam") if name not in outputs]
        if missing:
            raise ModelError(f"model {path} breaks the contract: no output named "
                             f"{' or '.join(repr(m) for m in missing)} (outputs are "
                             f"{sorted(outputs) or 'unnamed'})")
        # `seg` from contract v2 on, `state` from v3 on; the rest are absent for older models.
        self.details = {name: outputs[name] for name in _CONTRACT_OUTPUTS if name in outputs}
        shapes = {name: tuple(d["shape"]) for name, d in self.details.items()}
        self.cam_shape, self.seg_shape = shapes["cam"], shapes.get("seg")
        self.state_shape = shapes.get("state")
        for name, shape in (("cam", self.cam_shape), ("seg", self.seg_shape)):
            if shape is not None and len(shape) != 3:
                raise ModelError(f"model {path} breaks the contract: {name} must be [1, h, w], "
                                 f"got {list(shape)}")
        if self.state_shape is not None and (len(self.state_shape) != 4
                                             or self.state_shape[3] != 3):
            raise ModelError(f"model {path} breaks the contract: state must be [1, h, w, 3], "
                             f"got {list(self.state_shape)}")

    def run(self, batch_u8: np.ndarray) -> dict[str, np.ndarray]:
        """Every contract output the model has, by name, for one uint8 batch [1, H, W, 3]."""
        self.interpreter.set_tensor(self.input_index, batch_u8)
        self.interpreter.invoke()
        return {name: _dequantised(self.interpreter, detail)
                for name, detail in self.details.items()}


def _outputs_by_name(interpreter, card: ModelCard | None) -> dict:
    """Output details keyed by contract name: from the signature, else the card's mapping."""
    named = {}
    signatures = interpreter.get_signature_list()
    if signatures:
        key = card.signature if card is not None and card.signature in signatures \
            else next(iter(signatures))
        runner = interpreter.get_signature_runner(key)
        named = dict(runner.get_output_details())
    if card is not None and not set(card.outputs) <= set(named):
        by_tensor = {d["name"]: d for d in interpreter.get_output_details()}
        named.update({k: by_tensor[v] for k, v in card.outputs.items() if v in by_tensor})
    return named


def _dequantised(interpreter, detail: dict) -> np.ndarray:
    value = interpreter.get_tensor(detail["index"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if value.dtype != np.float32 and scale:
        return (value.astype(np.float32) - zero_point) * scale
    return value.astype(np.float32, copy=False)


def _read_tflite(path: Path) -> bytes:
    if not path.is_file():
        raise ModelError(f"model {path} does not exist")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != _TFLITE_MAGIC:
        raise ModelError(f"model {path} is not a TFLite file (no TFL3 identifier)")
    return data

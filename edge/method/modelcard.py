"""The model card: `NAME.json` beside `NAME.tflite`, written by converter/, read by edge/.

It is the only thing besides the model file the two sides share, so its schema lives here once:
the converter builds a `ModelCard` and calls `write`, the runtime calls `ModelCard.read` and
`check_against` the loaded interpreter.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edge.errors import ModelError

CARD_FORMAT = "rustseg-model-card/1"
SUPPORTED_CONTRACTS = (1, 2, 3)


@dataclass(frozen=True)
class ModelCard:
    labels: list[str]                 # index 0 = no corrosion, 1 = corrosion
    threshold: float                  # score >= threshold: the frame shows corrosion
    input_size: list[int]             # [height, width] of the uint8 RGB input
    cam_layer: str
    cam_size: list[int]               # [h, w] of the cam output
    quantization: str
    backbone: str
    outputs: dict[str, str]           # contract name -> TFLite output tensor name
    training: dict[str, Any]          # data, kind of labels, counts
    validation_metrics: dict[str, Any]
    model_sha256: str                 # of the .tflite bytes: a card for another file is refused
    input_resize: str = "squash"      # frames are resized to input_size without letterbox
    signature: str = "serving_default"
    fidelity: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    format: str = CARD_FORMAT
    # Contract v2 (DESIGN.md): a `seg` output of P(corrosion) from a distilled student head.
    # A card without `contract` is v1 (score + cam only).
    contract: int = 1
    seg_size: list[int] | None = None  # [h, w] of the seg output (v2)
    student: dict[str, Any] = field(default_factory=dict)  # how the seg head was trained (v2)
    # Contract v3: a `state` output of cumulative P(>= Fair), P(>= Poor), P(>= Severe).
    state_size: list[int] | None = None  # [h, w] of the state output (v3)
    states: dict[str, Any] = field(default_factory=dict)  # how states were learnt, thresholds

    @staticmethod
    def path_for(model_path: str | Path) -> Path:
        return Path(model_path).with_suffix(".json")

    def write(self, model_path: str | Path) -> Path:
        path = self.path_for(model_path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, model_path: str | Path) -> "ModelCard":
        path = cls.path_for(model_path)
        if not path.is_file():
            raise ModelError(f"model card {path} is missing; every model needs its NAME.json "
                             "(written by rustseg export)")
        try:
            raw = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"model card {path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or raw.get("format") != CARD_FORMAT:
            raise ModelError(f"model card {path}: expected a JSON object with format "
                             f"{CARD_FORMAT!r}")
        known = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - set(raw))
        if missing:
            raise ModelError(f"model card {path} lacks the field {missing[0]!r}")
        card = cls(**{k: v for k, v in raw.items() if k in known})
        card._validate(path)
        return card

    def _validate(self, path: Path) -> None:
        def bad(what: str) -> ModelError:
            return ModelError(f"model card {path}: {what}")
        if not (isinstance(self.labels, list) and len(self.labels) == 2):
            raise bad("labels must list two class names")
        if not isinstance(self.threshold, (int, float)) or not 0 <= self.threshold <= 1:
            raise bad(f"threshold must be a number in [0, 1], got {self.threshold!r}")
        for key in ("input_size", "cam_size"):
            value = getattr(self, key)
            if not _is_size(value):
                raise bad(f"{key} must be [height, width] in pixels, got {value!r}")
        if not (isinstance(self.outputs, dict) and {"score", "cam"} <= set(self.outputs)):
            raise bad("outputs must map 'score' and 'cam' to tensor names")
        if self.contract not in SUPPORTED_CONTRACTS:
            raise bad(f"contract must be one of {SUPPORTED_CONTRACTS}, got {self.contract!r}")
        if self.contract >= 2:
            if "seg" not in self.outputs:
                raise bad("a contract 2 card must map 'seg' in outputs")
            if not _is_size(self.seg_size):
                raise bad(f"seg_size must be [height, width] in pixels, got {self.seg_size!r}")
        if self.contract >= 3:
            if "state" not in self.outputs:
                raise bad("a contract 3 card must map 'state' in outputs")
            if not _is_size(self.state_size):
                raise bad(f"state_size must be [height, width] in pixels, got "
                          f"{self.state_size!r}")
            thresholds = self.states.get("thresholds") if isinstance(self.states, dict) else None
            if not (isinstance(thresholds, dict) and all(
                    isinstance(thresholds.get(k), (int, float)) and 0 <= thresholds[k] <= 1
                    for k in ("poor", "severe"))):
                raise bad("a contract 3 card needs states.thresholds with 'poor' and 'severe' "
                          f"in [0, 1], got {thresholds!r}")

    def check_model_bytes(self, model_bytes: bytes, model_path: str | Path) -> None:
        digest = sha256_hex(model_bytes)
        if digest != self.model_sha256:
            raise ModelError(f"model card {self.path_for(model_path)} does not match "
                             f"{model_path} (sha256 {digest[:12]}... vs card "
                             f"{self.model_sha256[:12]}...); re-export or restore the pair")


def _is_size(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and
            all(isinstance(v, int) and v > 0 for v in value))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_HASH_CHUNK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    """sha256 of a file read in chunks (inputs may be hours of video). OSError if unreadable."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()

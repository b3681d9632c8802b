"""What the loop says about one frame, defined once: `FrameRecord`.

The same record is the line of `--log` and of a run record's frames.jsonl (`to_json`), the
terminal's per-frame line (`line`), the HUD (edge/live/overlay.py `hud_lines`), the console's
numbers and findings, the record's findings, and what the report reads back (`from_json`).

To add a per-frame field, add it here with a default (None: not known for this frame); it is
then written, read back and served everywhere. `digits` in a field's metadata rounds it in
JSON (floats, or the values of a dict of floats).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from edge.errors import DataError


def _digits(n: int, **kwargs):
    return field(metadata={"digits": n}, **kwargs)


@dataclass
class FrameRecord:
    index: int                                   # frame number in the source, from 0
    name: str                                    # image stem or zero-padded index
    captured_at: float = _digits(4)              # time.time() seconds when captured
    output_at: float = _digits(4)                # time.time() seconds when handed to outputs
    score: float = _digits(5)                    # P(corrosion) of the whole frame, 0..1
    valid: bool = True                           # False: the model gave NaN/Inf (score 0)
    corroded_fraction: float = _digits(5, default=0.0)  # share of the frame in the mask
    path: str = "none"                           # refine path: none|light|full|skipped
    # Rust grades (edge/method/grades.py `grades`) of the rusted share of the coated surface the
    # config outlines, or of the whole frame ("over": "surface" or "frame", whose caveat
    # `grade_caveat` says), and the share of the frame in each condition state (v3 models;
    # None otherwise).
    grades: dict | None = None
    area_by_state: dict | None = _digits(5, default=None)
    # Where the mask came from (edge/live/pipeline.py `mask_origin`): "fresh" (refined on this
    # frame) or "carried" (an earlier frame's mask moved along the camera motion), the frame it
    # was refined on, the frame whose evidence was blended in, and why carrying was reset.
    mask: str = "fresh"
    mask_from: int | None = None
    evidence_from: int | None = None
    carry_reset: str | None = None
    ms: dict = _digits(3, default_factory=dict)  # stage -> milliseconds
    dropped: int = 0                             # live frames dropped so far in the run
    lag_frames: int | None = None                # frames behind the newest capture (live)
    fps: float | None = _digits(2, default=None)  # the HUD's rolling FPS
    # Where the drone was when the frame was captured (edge/live/locate.py: EXIF of a photo,
    # the DJI .SRT sidecar of a video, live MAVLink): lat, lon, alt, rel_alt, gimbal, source,
    # age_s; None when unknown, with `position_missing` saying why when a locator was asked.
    position: dict | None = None
    position_missing: str | None = None

    def to_json(self) -> dict:
        """A JSON-ready dict, rounded; every field, None as null (readers may rely on keys)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            digits = f.metadata.get("digits")
            if digits is not None and isinstance(value, dict):
                value = {k: round(v, digits) for k, v in value.items()}
            elif digits is not None and isinstance(value, float):
                value = round(value, digits)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict) -> "FrameRecord":
        """The record of a JSON line; keys it does not know (a newer writer's) are ignored,
        keys it lacks take their defaults. DataError when a required key is missing."""
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise DataError(f"frame record {str(data)[:80]}: {exc}") from None

    def line(self) -> str:
        """The terminal's one line per frame."""
        stages = " ".join(f"{k} {v:.1f}" for k, v in self.ms.items())
        return (f"frame {self.index:>5} {self.name}: corrosion {self.score:.2f} "
                f"area {100 * self.corroded_fraction:5.1f}% {self.path:<7} | {stages} ms"
                f"{self._position_text()}")

    def _position_text(self) -> str:
        if self.position is None:
            return f" | no position: {self.position_missing}" if self.position_missing else ""
        age = self.position.get("age_s")
        return (f" | {self.position['lat']:.6f}, {self.position['lon']:.6f}"
                + (f", {age:.1f} s old" if age is not None else ""))

"""What each file of a record (and a batch manifest) must hold, checked where it is read.

A record is data from disk: a hand edit, another tool or a hostile copy can put anything in it.
Every reader validates what it reads against the schema of that file (JSON Schema draft 7,
compiled to Python by `fastjsonschema`: reading frames.jsonl with the check takes 1.8x json
alone, with `jsonschema` 13x, which a 100 000-frame record would feel; benchmarks/
record_schema.py), so a malformed file is one `DataError`
naming the file, the line and the field, never a KeyError deep inside the report. The schemas
require what the readers use and allow what they do not read (newer writers may add fields).
"""

from __future__ import annotations

from pathlib import Path

from edge.errors import DataError, MissingDependencyError

_NUMBER = {"type": "number"}
_OPTIONAL_NUMBER = {"type": ["number", "null"]}
_STRING = {"type": "string"}
_OPTIONAL_STRING = {"type": ["string", "null"]}
_COUNT = {"type": "integer", "minimum": 0}
# A finding's image: a file directly in the record's findings/ folder, nothing else.
_FINDING_IMAGE = {"type": "string", "pattern": r"^findings/[^/\\]+$"}

RUN = {
    "type": "object",
    "required": ["format", "source", "started_at", "model"],
    "properties": {
        "format": _STRING, "source": _STRING, "source_kind": _STRING,
        "started_at": _NUMBER, "ended_at": _OPTIONAL_NUMBER,
        "model": {"type": "object", "properties": {"path": _OPTIONAL_STRING,
                                                   "model_sha256": _OPTIONAL_STRING}},
        "finding_rule": {"type": ["object", "null"]},
    },
}

_FRAME_COUNTS = {
    "type": "object",
    "required": ["read", "skipped"],
    "properties": {"expected": {"type": ["integer", "null"], "minimum": 0}, "read": _COUNT,
                   "skipped": _COUNT,
                   "skip_reasons": {"type": "array", "items": _STRING}},
}

SUMMARY = {
    "type": "object",
    "required": ["ended", "complete"],
    "properties": {
        "format": _STRING, "ended": _STRING, "complete": {"type": "boolean"},
        "started_at": _OPTIONAL_NUMBER, "ended_at": _OPTIONAL_NUMBER,
        "error": _OPTIONAL_STRING, "frames": _FRAME_COUNTS,
    },
}

# A line of frames.jsonl: edge/outputs/frame_record.py `FrameRecord.to_json()`, read back with
# `FrameRecord.from_json` (every field it has no default for is required here).
FRAME = {
    "type": "object",
    "required": ["index", "name", "captured_at", "output_at", "score", "corroded_fraction",
                 "path"],
    "properties": {
        "index": _COUNT, "name": _STRING, "captured_at": _NUMBER, "output_at": _NUMBER,
        "score": _NUMBER, "corroded_fraction": {"type": "number", "minimum": 0, "maximum": 1},
        "path": _STRING, "ms": {"type": "object", "additionalProperties": _NUMBER},
    },
}

_POSITION = {
    "type": ["object", "null"],
    "required": ["lat", "lon"],
    "properties": {"lat": _NUMBER, "lon": _NUMBER, "alt": _OPTIONAL_NUMBER,
                   "gimbal": {"type": ["object", "null"],
                              "additionalProperties": _OPTIONAL_NUMBER}},
}

FINDING = {
    "type": "object",
    "required": ["index", "name", "captured_at", "score", "corroded_fraction", "path", "raw",
                 "overlay", "mask"],
    "properties": {
        "index": _COUNT, "name": _STRING, "captured_at": _NUMBER, "score": _NUMBER,
        "corroded_fraction": {"type": "number", "minimum": 0, "maximum": 1}, "path": _STRING,
        "raw": _FINDING_IMAGE, "overlay": _FINDING_IMAGE, "mask": _FINDING_IMAGE,
        "source_file": _OPTIONAL_STRING, "position": _POSITION,
    },
}


_validators: dict[int, object] = {}   # id(schema) -> its compiled check; schemas are constants


def _fastjsonschema():
    try:
        import fastjsonschema
    except ImportError:
        raise MissingDependencyError("reading a record needs fastjsonschema: pip install "
                                     "'rustseg-edge[edge]' or '[report]' (or pip install "
                                     "fastjsonschema)") from None
    return fastjsonschema


def _validator(schema: dict):
    if id(schema) not in _validators:
        _validators[id(schema)] = _fastjsonschema().compile(schema)
    return _validators[id(schema)]


def check(value: object, schema: dict, path: Path, line: int | None = None) -> None:
    """DataError naming the file (and line), the field and what was expected, unless `value`
    follows `schema`."""
    validate = _validator(schema)
    try:
        validate(value)
    except _fastjsonschema().JsonSchemaValueException as error:
        field = "/".join(str(p) for p in error.path[1:]) or "the top level"
        # fastjsonschema says "data.model must be object": keep what follows the name
        message = error.message[len(error.name):].strip() \
            if error.message.startswith(error.name) else error.message
        where = f"{path}" + (f" line {line}" if line is not None else "")
        raise DataError(f"{where}: malformed at {field}: {_short(message)}") from None


def _short(message: str, limit: int = 160) -> str:
    """A message may quote the offending value; a hostile one could be megabytes long."""
    message = " ".join(message.split())
    return message if len(message) <= limit else message[:limit] + "..."

"""The batch manifest (`DIR/manifest.json`): what each record was made from, for resuming.

Per input it keeps the fingerprint of its files (size, mtime, sha256 of each) and the sha256 of
the model card the record was made with, plus the input's last status. The resume rule:

- skip an input whose entry says `done`, whose fingerprint and model card are unchanged and
  whose record is complete on disk;
- redo everything else: new inputs, changed ones (any of size, mtime or content: a touched file
  is redone, as `make` would), ones cut short (interrupted, lost worker) and ones that failed.

The file is rewritten atomically (temp file, fsync, rename) after every input that finishes, so
Ctrl-C or a crash never leaves a half-written manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.batch.inputs import BatchInput
from edge.errors import DataError
from edge.method.modelcard import file_sha256
from edge.record import schema
from edge.writable import write_atomic

MANIFEST_NAME = "manifest.json"
_FORMAT = "rustseg-batch-manifest/1"
# What the resume rule and the index read from the manifest (edge/record/schema.py checks it).
_OUTCOME = {"type": "object", "required": ["uri", "record", "status"],
            "properties": {"uri": {"type": "string"}, "record": {"type": "string"},
                           "status": {"type": "string"}, "error": {"type": ["string", "null"]},
                           "frames": {"type": "integer", "minimum": 0},
                           "skipped": {"type": "integer", "minimum": 0},
                           "corroded_share": {"type": "number"},
                           "max_corroded_area": {"type": "number"},
                           "wall_s": {"type": ["number", "null"]}}}
MANIFEST_SCHEMA = {
    "type": "object", "required": ["format", "inputs"],
    "properties": {"format": {"const": _FORMAT},
                   "inputs": {"type": "object", "additionalProperties": {
                       "type": "object", "required": ["files", "status", "outcome"],
                       "properties": {"files": {"type": "array", "items": {"type": "object"}},
                                      "status": {"type": "string"},
                                      "model_card_sha256": {"type": ["string", "null"]},
                                      "outcome": _OUTCOME}}}},
}


def fingerprint(item: BatchInput) -> list[dict]:
    """size, mtime (ns) and sha256 of every file of the input; unreadable files say so."""
    prints = []
    for path in item.files:
        try:
            stat = path.stat()
            prints.append({"path": str(path), "size": stat.st_size,
                           "mtime_ns": stat.st_mtime_ns, "sha256": file_sha256(path)})
        except OSError as exc:
            prints.append({"path": str(path), "error": exc.strerror or str(exc)})
    return prints


class Manifest:
    def __init__(self, path: Path, entries: dict[str, dict]) -> None:
        self.path, self.entries = path, entries

    @classmethod
    def load(cls, out_dir: Path) -> "Manifest":
        path = out_dir / MANIFEST_NAME
        if not path.exists():
            return cls(path, {})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else \
                "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise DataError(f"{path}: not a readable batch manifest ({why}); move it away to "
                            "start the batch afresh") from None
        schema.check(data, MANIFEST_SCHEMA, path)
        return cls(path, data["inputs"])

    def is_current(self, uri: str, prints: list[dict], model_card_sha256: str,
                   record_complete: bool) -> bool:
        """The resume rule (module docstring): True means skip this input."""
        entry = self.entries.get(uri)
        return bool(entry and entry.get("status") == "done" and record_complete
                    and entry.get("files") == prints
                    and entry.get("model_card_sha256") == model_card_sha256)

    def update(self, uri: str, entry: dict) -> None:
        self.entries[uri] = entry
        self.save()

    def save(self) -> None:
        text = json.dumps({"format": _FORMAT, "inputs": self.entries}, indent=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, text, fsync=True)

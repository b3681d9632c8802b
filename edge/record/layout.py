"""The run record: one folder per run, its layout defined here once (DESIGN.md "Run record").

    DIR/overlay.mp4            the overlay video (every processed frame)
    DIR/frames.jsonl           one JSON record per frame (the --log format), flushed as it goes
    DIR/findings/              NAME_raw.jpg, NAME_overlay.jpg, NAME_mask.png per finding
    DIR/findings/findings.jsonl   one JSON line per finding (frame, time, score, area, position)
    DIR/run.json               effective config, model + card sha256, source, versions, times
    DIR/summary.json           how the run ended; written "running" at start, final at the end
    DIR/run.lock               only while the recording process lives (edge/record/lock.py)
    DIR/report.html            `rustseg report DIR`, with its plots in DIR/report_files/
    DIR/findings.csv           `rustseg report DIR`
    DIR/findings.geojson       `rustseg report DIR`, when findings carry positions

`summary.json` is reserved at start (status "running", padded) and rewritten in place at the
end, so a run that filled the disk can still say how it ended. A summary still saying
"running" when no run is under way means the process died (power loss, kill -9): the record
is still readable, and `rustseg report` rebuilds the summary from frames.jsonl.

Every reader (report, batch index) takes the paths from `RecordLayout`; nothing else spells
a file name of the record. What is read is checked against the file's schema
(edge/record/schema.py), and nothing is read or written through a link leading out of the
record (`contained`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge.errors import DataError
from edge.outputs import FrameRecord
from edge.record import schema

RECORD_FORMAT = "rustseg-record/1"
# summary.json "ended" says how the run ended: an edge.stop_reason.StopReason value.


@dataclass(frozen=True)
class FindingFiles:
    """The three images of one finding (paths inside the record)."""

    raw: Path           # the frame as captured, JPEG
    overlay: Path       # the frame with mask, heatmap and HUD drawn, JPEG
    mask: Path          # binary PNG, 255 = corrosion


@dataclass(frozen=True)
class RecordLayout:
    """Where each part of the record in folder `root` lives."""

    root: Path

    @property
    def overlay_video(self) -> Path:
        return self.root / "overlay.mp4"

    @property
    def frames_log(self) -> Path:
        return self.root / "frames.jsonl"

    @property
    def findings_dir(self) -> Path:
        return self.root / "findings"

    @property
    def findings_log(self) -> Path:
        return self.findings_dir / "findings.jsonl"

    def finding_files(self, frame_name: str) -> FindingFiles:
        """Files named after the frame, always directly in findings/: the name is joined as
        one file name, so a photo called `..jpg` (frame ".") or `.jpg` cannot climb out."""
        files = FindingFiles(*(self.findings_dir / f"{frame_name}{suffix}"
                               for suffix in ("_raw.jpg", "_overlay.jpg", "_mask.png")))
        if any(path.parent != self.findings_dir for path in (files.raw, files.overlay, files.mask)):
            raise DataError(f"record {self.root}: frame name {frame_name!r} is not a file name")
        return files

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def run_lock(self) -> Path:
        """Held by the recording process while it runs: `lock.lock_holder(run_lock)` tells a
        run still going from one whose process died (summary.json says "running" for both)."""
        return self.root / "run.lock"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_files(self) -> Path:
        """Plots of the report (the finding images are referenced where they are)."""
        return self.root / "report_files"

    @property
    def findings_csv(self) -> Path:
        return self.root / "findings.csv"

    @property
    def findings_geojson(self) -> Path:
        return self.root / "findings.geojson"

    def relative(self, path: Path) -> str:
        """`path` as the record refers to it (relative to the root, forward slashes)."""
        return Path(path).relative_to(self.root).as_posix()

    def contained(self, path: Path) -> Path:
        """`path`, or DataError when it, or a link on its way, leads out of the record: a record
        is untrusted data, and a link in it must not make the report read or overwrite a file
        elsewhere (the record folder itself may be reached through a link)."""
        root = self.root.resolve()
        if not Path(path).resolve().is_relative_to(root):
            raise DataError(f"record {self.root}: {self.relative(path)} is a link leading out of "
                            f"the record (to {Path(path).resolve()}); refusing to use it")
        return Path(path)

    # --- reading -----------------------------------------------------------------------------

    def is_record(self) -> bool:
        return self.run_json.is_file()

    def read_run(self) -> dict:
        return _read_json(self.contained(self.run_json), schema.RUN)

    def read_summary(self) -> dict | None:
        """summary.json, or None when it is missing (a record written before it could be)."""
        if not self.summary_json.is_file():
            return None
        return _read_json(self.contained(self.summary_json), schema.SUMMARY)

    def is_complete(self) -> bool:
        """True when the run ended normally and every output kept every frame (a malformed
        summary is not complete: the record is redone, not trusted)."""
        try:
            summary = self.read_summary() if self.is_record() else None
        except DataError:
            return False
        return bool(summary and summary.get("complete"))

    def read_frames(self) -> list[FrameRecord]:
        return [FrameRecord.from_json(line)
                for line in _read_jsonl(self.contained(self.frames_log), schema.FRAME)]

    def read_findings(self) -> list[dict]:
        if not self.findings_log.is_file():
            return []
        return _read_jsonl(self.contained(self.findings_log), schema.FINDING)


def _read_json(path: Path, file_schema: dict) -> dict:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"record {path.parent}: cannot read {path.name} ({exc.strerror})") \
            from None
    try:
        value = json.loads(text.rstrip("\x00 \n"))  # summary.json may carry its padding
    except (json.JSONDecodeError, RecursionError) as exc:
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise DataError(f"record {path.parent}: {path.name} is not valid JSON ({why})") from None
    schema.check(value, file_schema, path)
    return value


def _read_jsonl(path: Path, line_schema: dict) -> list[dict]:
    """Every complete line, each checked against `line_schema`; a line cut by a crash or a
    full disk (the last one, unfinished, or one torn mid-write) is left out."""
    if not path.is_file():
        raise DataError(f"record {path.parent}: {path.name} is missing; not a run record?")
    records = []
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        for number, line in enumerate(file, start=1):
            if not line.endswith("\n"):
                break  # the write of this line never finished
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue  # a line torn by a crash mid-write
            schema.check(value, line_schema, path, number)
            records.append(value)
    return records


def flight_stats(frames: list[FrameRecord]) -> dict:
    """The flight summary of a frames.jsonl: the one computation behind summary.json and the
    report, so both always agree with the log. A frame "with corrosion" has a non-empty mask."""
    areas = [float(f.corroded_fraction) for f in frames]
    scores = [float(f.score) for f in frames]
    times = [float(f.captured_at) for f in frames]
    paths: dict[str, int] = {}
    for f in frames:
        paths[f.path] = paths.get(f.path, 0) + 1
    with_corrosion = sum(1 for a in areas if a > 0)
    return {"frames": len(frames),
            "duration_s": (max(times) - min(times)) if times else 0.0,
            "frames_with_corrosion": with_corrosion,
            "share_with_corrosion": with_corrosion / len(frames) if frames else 0.0,
            "max_corroded_fraction": max(areas, default=0.0),
            "mean_corroded_fraction": sum(areas) / len(areas) if areas else 0.0,
            "max_score": max(scores, default=0.0),
            "paths": paths}

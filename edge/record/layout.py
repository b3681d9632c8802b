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
a file name of the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge.errors import DataError

RECORD_FORMAT = "rustseg-record/1"

# How a run ended (summary.json "ended"). The first two are normal ends.
ENDED_SOURCE = "end of source"
ENDED_FRAME_LIMIT = "frame limit"
ENDED_SIGINT = "SIGINT"
ENDED_SIGTERM = "SIGTERM"
ENDED_DISK_FULL = "disk full"
ENDED_OUTPUT_LOST = "output lost"
ENDED_ERROR = "error"
ENDED_RUNNING = "running"          # still running, or died without a word (power loss, kill -9)
NORMAL_ENDS = (ENDED_SOURCE, ENDED_FRAME_LIMIT)


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
        stem = self.findings_dir / frame_name
        return FindingFiles(stem.with_name(f"{frame_name}_raw.jpg"),
                            stem.with_name(f"{frame_name}_overlay.jpg"),
                            stem.with_name(f"{frame_name}_mask.png"))

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

    # --- reading -----------------------------------------------------------------------------

    def is_record(self) -> bool:
        return self.run_json.is_file()

    def read_run(self) -> dict:
        return _read_json(self.run_json, "run.json")

    def read_summary(self) -> dict | None:
        """summary.json, or None when it is missing (a record written before it could be)."""
        if not self.summary_json.is_file():
            return None
        return _read_json(self.summary_json, "summary.json")

    def is_complete(self) -> bool:
        """True when the run ended normally and every output kept every frame."""
        summary = self.read_summary() if self.is_record() else None
        return bool(summary and summary.get("complete"))

    def read_frames(self) -> list[dict]:
        return _read_jsonl(self.frames_log)

    def read_findings(self) -> list[dict]:
        return _read_jsonl(self.findings_log) if self.findings_log.is_file() else []


def _read_json(path: Path, what: str) -> dict:
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"record {path.parent}: cannot read {what} ({exc.strerror})") from None
    try:
        value = json.loads(text.rstrip("\x00 \n"))  # summary.json may carry its padding
    except json.JSONDecodeError as exc:
        raise DataError(f"record {path.parent}: {what} is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise DataError(f"record {path.parent}: {what} must hold a JSON object")
    return value


def _read_jsonl(path: Path) -> list[dict]:
    """Every complete line; a last line cut by a crash or a full disk is left out."""
    if not path.is_file():
        raise DataError(f"record {path.parent}: {path.name} is missing; not a run record?")
    records = []
    with open(path, encoding="utf-8", errors="replace") as file:
        for line in file:
            if not line.endswith("\n"):
                break  # the write of this line never finished
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a crash mid-write
    return records


def flight_stats(frames: list[dict]) -> dict:
    """The flight summary of a frames.jsonl: the one computation behind summary.json and the
    report, so both always agree with the log. A frame "with corrosion" has a non-empty mask."""
    areas = [float(f["corroded_fraction"]) for f in frames]
    scores = [float(f["score"]) for f in frames]
    times = [float(f["captured_at"]) for f in frames]
    paths: dict[str, int] = {}
    for f in frames:
        paths[f["path"]] = paths.get(f["path"], 0) + 1
    with_corrosion = sum(1 for a in areas if a > 0)
    return {"frames": len(frames),
            "duration_s": (max(times) - min(times)) if times else 0.0,
            "frames_with_corrosion": with_corrosion,
            "share_with_corrosion": with_corrosion / len(frames) if frames else 0.0,
            "max_corroded_fraction": max(areas, default=0.0),
            "mean_corroded_fraction": sum(areas) / len(areas) if areas else 0.0,
            "max_score": max(scores, default=0.0),
            "paths": paths}

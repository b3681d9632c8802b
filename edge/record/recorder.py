"""Writes one run record (layout: edge/record/layout.py) while `rustseg run --record DIR` runs.

The record is three sinks on the loop (overlay video, frames.jsonl, findings) plus two files
the recorder writes itself: run.json when the run starts, and summary.json, reserved at start
as "running" and rewritten in place at the end however the run ended (end of source, Ctrl-C,
SIGTERM, a full disk, an error), so that the disk filling up cannot keep it from being said.
The summary counts the frames the source announced, those read and those skipped (with why):
a run that skipped frames is not `complete`, however it ended.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from edge.config import Config
from edge.errors import ConfigError, one_line
from edge.method.modelcard import file_sha256
from edge.record.findings import FindingRule, FindingSink
from edge.record.layout import RECORD_FORMAT, RecordLayout, flight_stats
from edge.record.reserve import ReserveGuardedVideo
from edge.record.lock import FolderLock
from edge.outputs import FrameSink, JsonlLogSink, VideoFileSink
from edge.stop_reason import StopReason
from edge.writable import disk_full, make_folder, write_atomic

_SUMMARY_RESERVED_BYTES = 64 * 1024   # room summary.json is rewritten into at the end
_MAX_SKIP_REASONS = 20                # reasons kept in summary.json (the count is always exact)


class RunRecorder:
    """Build before the source opens (fails fast), `begin` once the source is open and the
    overwrite check has passed, `finish` in a finally, then `release`."""

    def __init__(self, layout: RecordLayout, config: Config, source_uri: str,
                 replace: bool = False) -> None:
        _check_folder(layout, replace)
        self.layout, self.config, self.source_uri = layout, config, source_uri
        self.findings = FindingSink(layout, FindingRule(config.record.finding_min_area,
                                                        config.record.finding_gap_frames))
        # Only the video stops at the card's free-space reserve: it is what fills the card.
        self.video = ReserveGuardedVideo(VideoFileSink(layout.overlay_video,
                                                       config.loop.target_fps),
                                         layout.root, config.record.reserve_mb)
        self.sinks: list[FrameSink] = [self.video, JsonlLogSink(layout.frames_log),
                                       self.findings]
        self.free_mb_at_start: float | None = None
        self.started_at: float | None = None
        self._run: dict = {}
        self._source = None       # set by `begin`: its frame counts go into the summary
        # Held until summary.json says how the run ended (the caller's `release`), so a reader
        # can tell this run from one whose process died. Taken last: nothing above can fail
        # with it held.
        self.lock = FolderLock(layout.run_lock, f"--record {layout.root}",
                               "rustseg run --record").acquire()

    def refuse_outputs_inside(self, sinks: list[FrameSink] = (),
                              paths: list[str | None] = ()) -> None:
        """ConfigError before anything is written when another output (`--output`, `--log`,
        `--save-masks`: built `sinks`, or `paths` not yet built) would write into the record:
        a record's files are its own, and `--output REC/overlay.mp4` would write one file
        twice."""
        targets = [Path(p) for p in paths if p is not None]
        for sink in sinks:
            targets += [t for t in (sink.writes_to(None), sink.writes_to("frame")) if t]
        root = self.layout.root.resolve()
        for target in targets:
            if target.resolve().is_relative_to(root):
                raise ConfigError(f"output {target} lies inside the run record "
                                  f"{self.layout.root}, whose files are its own; choose a "
                                  "path outside the record")

    def begin(self, source, segmenter) -> None:
        """Write run.json and reserve summary.json; tell the findings where photos are.
        Called after the overwrite check, so an old record is only cleared then."""
        self._source = source
        if self.layout.is_record():
            _clear_old_record(self.layout)
        files = dict((name, path) for path, name in source.input_files() if name is not None)
        if files:  # a photo folder: each photo its own view
            self.findings.rule = FindingRule(self.config.record.finding_min_area,
                                             self.config.record.finding_gap_photos)
            self.findings.source_file = files.get
        self.started_at = time.time()
        self.free_mb_at_start = round(self.video.free_mb(), 1)
        self._run = {"format": RECORD_FORMAT, "source": self.source_uri,
                     "source_kind": "photos" if files else "video or camera",
                     "started_at": self.started_at, "ended_at": None,
                     "model": _model_facts(segmenter.model), "versions": _versions(segmenter),
                     "finding_rule": {"min_area": self.findings.rule.min_area,
                                      "gap": self.findings.rule.gap},
                     "config": dataclasses.asdict(self.config)}
        _write_json(self.layout.run_json, self._run)
        with open(self.layout.summary_json, "wb") as file:
            file.write(_padded({"format": RECORD_FORMAT, "ended": StopReason.RUNNING,
                                "complete": False, "started_at": self.started_at}))
            file.flush()
            os.fsync(file.fileno())

    def release(self) -> None:
        """Let go of the record's lock: the run is over, whatever summary.json says."""
        self.lock.release()

    def finish(self, report, failure: BaseException | None) -> dict:
        """Write the final summary.json (in place) and run.json's end time; return the summary."""
        ended_at = time.time()
        frames = self.layout.read_frames() if self.layout.frames_log.is_file() else []
        ended = _how_it_ended(report, failure, self.layout.root)
        kept_all = report is not None and not report.lost_outputs and failure is None
        counts = frame_counts(self._source, len(frames), ended)
        summary = {"format": RECORD_FORMAT, "ended": ended,
                   "complete": ended.normal and kept_all and counts["skipped"] == 0,
                   "every_output_kept_every_frame": kept_all, "frames": counts,
                   "stopped_by": report.stopped_by if report else None,
                   "error": one_line(failure) if failure else None,
                   "started_at": self.started_at, "ended_at": ended_at,
                   "flight": flight_stats(frames), "findings": self.findings.count,
                   "video": self.video.summary(),
                   "space": {"reserve_mb": self.config.record.reserve_mb,
                             "free_mb_at_start": self.free_mb_at_start,
                             "free_mb_at_end": _free_mb(self.video)},
                   "run": report.summary() if report else None, "written_by": "rustseg run"}
        _rewrite_in_place(self.layout.summary_json, summary)
        self._run["ended_at"] = ended_at
        try:
            _write_json(self.layout.run_json, self._run)
        except OSError:
            pass  # a full disk: summary.json (rewritten in place) already holds the end time
        return summary


def _check_folder(layout: RecordLayout, replace: bool) -> None:
    """The record gets a folder of its own: a new or empty one, or (replace) an old record."""
    root = layout.root
    try:
        make_folder(root)
    except OSError as exc:
        raise ConfigError(f"--record {root}: cannot create the folder ({exc.strerror})") from None
    # run.lock alone is what a run killed before its first write leaves: the folder is empty.
    others = [p for p in root.iterdir() if p != layout.run_lock]
    if others and not (replace and layout.is_record()):
        raise ConfigError(f"--record {root}: the folder is not empty; a record gets a new or "
                          "empty folder (nothing already there is written over)")


def _clear_old_record(layout: RecordLayout) -> None:
    """Remove the files an earlier record in this folder has (nothing else is touched)."""
    for path in (layout.findings_dir, layout.report_files):
        shutil.rmtree(path, ignore_errors=True)
    for path in (layout.overlay_video, layout.frames_log, layout.run_json, layout.summary_json,
                 layout.report_html, layout.findings_csv, layout.findings_geojson):
        path.unlink(missing_ok=True)
    make_folder(layout.findings_dir)


def frame_counts(source, read: int, ended: StopReason) -> dict:
    """Frames the source announced (None when it cannot tell: cameras, streams), read (in the
    record's log) and skipped, with the reasons: unreadable photos, and the tail of a video
    whose header promised more frames than it decodes."""
    if source is None:  # the run failed before its source opened
        return {"expected": None, "read": read, "skipped": 0, "skip_reasons": []}
    expected, reasons, skipped = source.expected_frames, list(source.warnings), source.skipped
    if ended == StopReason.END_OF_SOURCE and expected is not None and read + skipped < expected:
        missing = expected - read - skipped
        reasons.append(f"the source ended after {read + skipped} of the {expected} frames its "
                       f"header announces ({missing} not decodable: a cut or damaged file?)")
        skipped += missing
    return {"expected": expected, "read": read, "skipped": skipped,
            "skip_reasons": reasons[:_MAX_SKIP_REASONS]}


def _how_it_ended(report, failure: BaseException | None, root: Path) -> StopReason:
    if failure is not None:
        if isinstance(failure, KeyboardInterrupt):
            return StopReason.SIGINT
        return StopReason.DISK_FULL if disk_full(root) else StopReason.ERROR
    if report.interrupted_by:
        return report.interrupted_by
    if report.failed_outputs:  # not the video stopped at the reserve: that is in "video"
        return StopReason.DISK_FULL if disk_full(root) else StopReason.OUTPUT_LOST
    return report.stopped_by  # end of source, frame limit, or the loop's own reason


def _free_mb(video: ReserveGuardedVideo) -> float | None:
    try:
        return round(video.free_mb(), 1)
    except OSError:
        return None  # the record's folder is gone (a card pulled out)


def _model_facts(model) -> dict:
    card_path = model.card.path_for(model.path) if model.card else None
    return {"path": str(model.path), "runtime": model.runtime,
            "model_sha256": model.card.model_sha256 if model.card else None,
            "card": str(card_path) if card_path else None,
            "card_sha256": _sha256_file(card_path) if card_path else None,
            "contract": model.contract, "threshold": model.threshold}


def _versions(segmenter) -> dict:
    import cv2
    import numpy as np

    from edge import __version__
    runtime_module = sys.modules.get(segmenter.model.runtime.split(".")[0])
    return {"rustseg": __version__, "python": platform.python_version(),
            "platform": platform.platform(), "numpy": np.__version__, "opencv": cv2.__version__,
            "runtime": segmenter.model.runtime,
            "runtime_version": getattr(runtime_module, "__version__", None)}


def _sha256_file(path: Path) -> str | None:
    try:
        return file_sha256(Path(path))
    except OSError:
        return None


def _write_json(path: Path, value: dict) -> None:
    write_atomic(path, json.dumps(value, indent=2) + "\n")


def _padded(value: dict) -> bytes:
    data = (json.dumps(value, indent=2) + "\n").encode()
    return data + b" " * max(0, _SUMMARY_RESERVED_BYTES - len(data))


def _rewrite_in_place(path: Path, value: dict) -> None:
    """Overwrite the reserved bytes (no new disk blocks needed), then cut off the padding."""
    data = (json.dumps(value, indent=2) + "\n").encode()
    with open(path, "r+b") as file:
        file.write(data)
        file.truncate(len(data))
        file.flush()
        os.fsync(file.fileno())

"""The one function that turns one batch input into one run record; both engines call it.

`process_input(job)` runs in a worker (a pool process or a Ray task). It never raises for a bad
input: a corrupt, unreadable or empty input comes back as status `failed` with its one-line
error, so the batch records it and goes on. A stop request (Ctrl-C in the driver) finishes the
frames in flight, closes the record properly and comes back as `interrupted`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge.batch.inputs import BatchInput
from edge.config import Config
from edge.errors import DataError, RustsegError
from edge.record.layout import NORMAL_ENDS, RecordLayout, flight_stats

DONE, FAILED, INTERRUPTED, LOST, SKIPPED = "done", "failed", "interrupted", "lost", "skipped"
PENDING = "pending"  # not started (yet, or the batch was stopped before it started)


@dataclass(frozen=True)
class Job:
    item: BatchInput
    record_dir: str
    config: Config            # already holds the per-worker thread count and the model path


def process_input(job: Job, stop: threading.Event | None = None) -> dict:
    """Record one input; returns its outcome (status, frames, corrosion figures, time, error)."""
    started = time.perf_counter()
    stop = stop or threading.Event()
    outcome = {"uri": job.item.uri, "record": job.record_dir, "status": DONE, "error": None}
    try:
        ended_by = record_input(job, stop)
        if ended_by not in NORMAL_ENDS:
            outcome["status"] = INTERRUPTED
            outcome["error"] = f"stopped by {ended_by}"
    except RustsegError as exc:
        outcome.update(status=FAILED, error=str(exc))
    except OSError as exc:  # disk full, permission denied: this input failed, say where
        outcome.update(status=FAILED, error=f"{exc.strerror or exc} ({exc.filename or '-'})")
    outcome.update(frame_figures(Path(job.record_dir)))
    if outcome["status"] == DONE and outcome["frames"] == 0:
        outcome.update(status=FAILED, error=f"input {job.item.uri}: no frames could be read")
    outcome["wall_s"] = round(time.perf_counter() - started, 3)
    return outcome


def record_input(job: Job, stop: threading.Event) -> str:
    """Write the run record of one input and its report; returns how the run ended
    (`edge.record.layout` ENDED_*)."""
    from edge.live.app import record_run
    from edge.record.report import write_report

    record = Path(job.record_dir)
    record.mkdir(parents=True, exist_ok=True)
    # A worker's progress lines would tear the driver's progress bar: they go to a log file
    # beside the record (not inside it: the record folder holds only the record's layout).
    log_path = record.with_name(record.name + ".log")
    with open(log_path, "w") as log, contextlib.redirect_stderr(log):
        summary = record_run(job.item.uri, record, job.config, stop, replace=True)
    if summary and summary.get("complete"):
        write_report(record, job.config.record.report_top)
    return summary["ended"] if summary else "error"


def frame_figures(record: Path) -> dict:
    """frames, share of frames with corrosion, max corroded area: the record's own flight
    statistics (edge.record.layout.flight_stats), so the index and the report always agree."""
    layout = RecordLayout(record)
    try:
        flight = flight_stats(layout.read_frames())
    except DataError:  # no frames.jsonl: the input failed before its first frame
        flight = flight_stats([])
    return {"frames": flight["frames"],
            "corroded_share": round(flight["share_with_corrosion"], 5),
            "max_corroded_area": round(flight["max_corroded_fraction"], 5)}

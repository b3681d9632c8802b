"""The one function that turns one batch input into one run record; both engines call it.

`process_input(job)` runs in a worker (a pool process or a Ray task). It never raises: a
corrupt, unreadable or empty input, and any other exception (a bug included, its traceback
kept in the input's log file), comes back as status `failed` with a one-line error, so the
batch records it and goes on. An input whose run ended normally but skipped frames (unreadable
photos, a video cut short) is `partial`, with how many and why; a re-run retries it. A stop
request (Ctrl-C in the driver) finishes the frames in flight, closes the record properly and
comes back as `interrupted`.
"""

from __future__ import annotations

import logging
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edge.batch.inputs import BatchInput
from edge.config import Config
from edge.errors import DataError, RustsegError, one_line
from edge.record.layout import RecordLayout, flight_stats
from edge.stop_reason import StopReason, StopRequest
from edge.untrusted import printable

DONE, FAILED, INTERRUPTED, LOST, SKIPPED = "done", "failed", "interrupted", "lost", "skipped"
PARTIAL = "partial"  # ended normally, but frames of the input were skipped
PENDING = "pending"  # not started (yet, or the batch was stopped before it started)


@dataclass(frozen=True)
class Job:
    item: BatchInput
    record_dir: str
    config: Config            # already holds the per-worker thread count and the model path


def process_input(job: Job, stop: StopRequest | None = None) -> dict:
    """Record one input; returns its outcome (status, frames, corrosion figures, time, error)."""
    started = time.perf_counter()
    stop = stop if stop is not None else StopRequest()
    outcome = {"uri": job.item.uri, "record": job.record_dir, "status": DONE, "error": None}
    try:
        summary = record_input(job, stop)
        ended_by = _ended(summary)
        counts = (summary or {}).get("frames") or {}
        if not ended_by.normal:
            outcome["status"] = INTERRUPTED
            outcome["error"] = f"stopped by {ended_by}"
        elif counts.get("skipped"):
            outcome["status"] = PARTIAL
            outcome["error"] = _skipped_line(counts)
    except RustsegError as exc:
        outcome.update(status=FAILED, error=printable(one_line(exc)))
    except OSError as exc:  # disk full, permission denied: this input failed, say where
        outcome.update(status=FAILED, error=printable(f"{exc.strerror or exc} "
                                                      f"({exc.filename or '-'})"))
    except Exception as exc:  # a bug must cost this input only, never the whole batch
        _keep_traceback(Path(job.record_dir))
        outcome.update(status=FAILED, error=printable(f"internal error: {one_line(exc)}"))
    outcome.update(frame_figures(Path(job.record_dir)))
    if outcome["status"] == DONE and outcome["frames"] == 0:
        outcome.update(status=FAILED,
                       error=printable(f"input {job.item.uri}: no frames could be read"))
    outcome["wall_s"] = round(time.perf_counter() - started, 3)
    return outcome


def _skipped_line(counts: dict) -> str:
    expected = counts.get("expected")
    reasons = counts.get("skip_reasons") or ["no reason recorded"]
    of = f" of {expected}" if expected is not None else ""
    more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
    return printable(f"{counts['skipped']}{of} frames skipped: {reasons[0]}{more}")


def _keep_traceback(record: Path) -> None:
    """The traceback of an unexpected error, in the input's log file beside its record."""
    try:
        with open(log_file(record), "a") as log:
            traceback.print_exc(file=log)
    except OSError:
        pass  # the outcome still carries the one-line error


def log_file(record: Path) -> Path:
    """The worker's log of one input: beside the record, not in it (the record folder holds
    only the record's layout)."""
    return record.with_name(record.name + ".log")


def record_input(job: Job, stop: StopRequest) -> dict | None:
    """Write the run record of one input, and its report when the run ended normally (also
    when frames were skipped: the report says which); returns its summary.json."""
    from edge.live.app import record_run
    from edge.record.report import write_report

    record = Path(job.record_dir)
    record.mkdir(parents=True, exist_ok=True)
    # What the run logs goes to a file beside the record (not inside it: the record folder
    # holds only the record's layout), not to the terminal, where the driver's bar is.
    with _edge_log_to(log_file(record)):
        summary = record_run(job.item.uri, record, job.config, stop, replace=True)
    if summary and _ended(summary).normal:
        write_report(record, job.config.record.report_top)
    return summary


def _ended(summary: dict | None) -> StopReason:
    """How the run ended, from its summary.json (no summary: it failed before it began)."""
    return StopReason(summary["ended"]) if summary else StopReason.ERROR


@contextmanager
def _edge_log_to(path: Path):
    """While one input runs, the `edge` loggers write to `path` only."""
    logger = logging.getLogger("edge")
    handler = logging.FileHandler(path, mode="w", encoding="utf-8", errors="backslashreplace")
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    saved = logger.handlers[:], logger.level, logger.propagate
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])  # setLevel, not assignment: it clears the level cache
        logger.propagate = saved[2]
        handler.close()


def frame_figures(record: Path) -> dict:
    """frames, share of frames with corrosion, max corroded area: the record's own flight
    statistics (edge.record.layout.flight_stats), so the index and the report always agree."""
    layout = RecordLayout(record)
    try:
        flight = flight_stats(layout.read_frames())
    except DataError:  # no frames.jsonl: the input failed before its first frame
        flight = flight_stats([])
    try:
        counts = (layout.read_summary() or {}).get("frames") or {}
    except DataError:
        counts = {}
    return {"frames": flight["frames"], "skipped": counts.get("skipped", 0),
            "corroded_share": round(flight["share_with_corrosion"], 5),
            "max_corroded_area": round(flight["max_corroded_fraction"], 5)}

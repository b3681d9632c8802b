"""The one function that turns one batch input into one run record; both engines call it.

`process_input(job)` runs in a worker (a pool process or a Ray task). It never raises for a bad
input: a corrupt, unreadable or empty input comes back as status `failed` with its one-line
error, so the batch records it and goes on. A stop request (Ctrl-C in the driver) finishes the
frames in flight, closes the record properly and comes back as `interrupted`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge.batch.inputs import BatchInput
from edge.config import Config
from edge.errors import RustsegError

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
        if ended_by != "end of source":
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
    """Write the run record of one input; returns what ended it ("end of source", a signal)."""
    from edge.app import RunRequest, run_loop

    record = Path(job.record_dir)
    record.mkdir(parents=True, exist_ok=True)
    request = RunRequest(job.item.uri, (str(record / "overlay.mp4"),),
                         str(record / "frames.jsonl"), str(record / "masks"), headless=True,
                         print_frames=False)
    # A worker's progress lines would tear the driver's progress bar: they go to the record.
    with open(record / "worker.log", "w") as log, contextlib.redirect_stderr(log):
        report = run_loop(job.config, request, stop)
    (record / "summary.json").write_text(json.dumps(report.summary(), indent=1))
    return report.stopped_by


def frame_figures(record: Path) -> dict:
    """frames, share of frames with corrosion, max corroded area, read from frames.jsonl."""
    fractions = []
    try:
        with open(record / "frames.jsonl") as log:
            for line in log:
                try:
                    fractions.append(float(json.loads(line)["corroded_fraction"]))
                except (ValueError, KeyError):
                    break  # a line cut short by a crash ends the usable log
    except FileNotFoundError:
        pass
    corroded = [f for f in fractions if f > 0]
    return {"frames": len(fractions),
            "corroded_share": round(len(corroded) / len(fractions), 5) if fractions else 0.0,
            "max_corroded_area": round(max(fractions), 5) if fractions else 0.0}

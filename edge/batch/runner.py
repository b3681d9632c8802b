"""The batch recipe: expand inputs, skip what is current, run the rest, keep manifest + index.

    inputs -> fingerprints -> resume rule -> engine(process_input per job) -> on each outcome:
    manifest entry, index row, progress bar

Exit status (the CLI maps it, `BatchResult.exit_code`): every input done -> 0; some failed or
lost -> EXIT_SOME_FAILED; otherwise some partial (frames skipped) -> EXIT_SOME_PARTIAL; Ctrl-C
-> interrupted (the CLI returns 130). The index and the manifest are written however the batch
ends, an error in the driver included. See README "Batch processing".
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from edge.batch.engines import ENGINES, check_engine
from edge.batch.index import index_rows, write_index
from edge.batch.inputs import BatchInput, expand_inputs
from edge.batch.manifest import Manifest, fingerprint
from edge.batch.progress import FrameWatcher
from edge.batch.work import DONE, PARTIAL, PENDING, SKIPPED, Job, log_file
from edge.config import Config, resolve_resource
from edge.errors import ConfigError, MissingDependencyError
from edge.method.modelcard import file_sha256
from edge.record.layout import RecordLayout
from edge.record.lock import FolderLock
from edge.untrusted import OpenCvPath

EXIT_SOME_FAILED = 6
EXIT_SOME_PARTIAL = 7
RECORDS_DIR = "records"
log = logging.getLogger(__name__)
LOCK_NAME = "batch.lock"   # DIR/batch.lock exists while a batch runs on DIR


@dataclass(frozen=True)
class BatchRequest:
    inputs: tuple[str, ...]
    out_dir: str
    engine: str = "local"
    address: str | None = None
    workers: int | None = None       # None: one per core (local), or what the cluster holds
    show_progress: bool = True


@dataclass
class BatchResult:
    outcomes: list[dict] = field(default_factory=list)
    interrupted: bool = False

    def count(self, *statuses: str) -> int:
        return sum(o["status"] in statuses for o in self.outcomes)

    @property
    def all_done(self) -> bool:
        return not self.interrupted and self.count(DONE, SKIPPED) == len(self.outcomes)

    @property
    def exit_code(self) -> int:
        """0 all done; EXIT_SOME_FAILED when an input failed, was lost or did not run;
        EXIT_SOME_PARTIAL when the only shortfall is skipped frames (interrupted: the CLI's)."""
        if self.all_done:
            return 0
        if self.count(DONE, SKIPPED, PARTIAL) == len(self.outcomes) and self.count(PARTIAL):
            return EXIT_SOME_PARTIAL
        return EXIT_SOME_FAILED

    def format(self) -> str:
        counts = {}
        for o in self.outcomes:
            counts[o["status"]] = counts.get(o["status"], 0) + 1
        return f"{len(self.outcomes)} inputs: " + ", ".join(
            f"{n} {status}" for status, n in sorted(counts.items()))


@dataclass(frozen=True)
class WorkerPlan:
    """The batch's processes, planned once: `workers` processes, each one interpreter with
    `threads` TFLite/OpenCV threads and its refining done in its own process (no refine worker
    process of its own), so workers x threads fits the cores. `capped` says why fewer workers
    than asked run (None: as asked)."""

    workers: int
    threads: int
    capped: str | None = None

    def worker_config(self, config: Config) -> Config:
        return config.replace({"model.threads": self.threads, "refine.worker": "thread"})


def plan_workers(workers: int | None, cores: int, inputs: int | None = None) -> WorkerPlan:
    """One worker per core by default; never more workers than inputs to do or cores (a worker
    more than the cores only competes for them, one more than the inputs has nothing to do)."""
    if workers is not None and workers < 1:
        raise ConfigError(f"rustseg batch --workers: expected a whole number >= 1, got {workers}")
    cores = max(1, cores)
    limit = min(cores, inputs) if inputs else cores
    planned = min(workers or cores, limit)
    capped = None
    if workers is not None and planned < workers:
        to_do = f"{inputs} inputs to do, " if inputs else ""
        capped = f"--workers {workers} capped to {planned} ({to_do}{cores} cores)"
    return WorkerPlan(planned, max(1, cores // planned), capped)


def run_batch(config: Config, request: BatchRequest) -> BatchResult:
    if request.engine not in ENGINES:
        raise ConfigError(f"rustseg batch --engine: {request.engine!r}; expected one of "
                          f"{', '.join(ENGINES)}")
    check_engine(request.engine, request.address)
    if importlib.util.find_spec("matplotlib") is None:  # every record gets its report
        raise MissingDependencyError("rustseg batch writes each record's report, which needs "
                                     "matplotlib: pip install 'rustseg-edge[report]'")
    items = expand_inputs(list(request.inputs))
    out_dir = Path(request.out_dir)
    (out_dir / RECORDS_DIR).mkdir(parents=True, exist_ok=True)
    # One batch per --out at a time: a second one would remove the first one's records as
    # stale and overwrite its manifest. Taken before anything in the folder is read or removed.
    with FolderLock(out_dir / LOCK_NAME, f"--out {out_dir}", "rustseg batch"):
        return _run_locked(config, request, items, out_dir)


def _run_locked(config: Config, request: BatchRequest, items: list[BatchInput],
                out_dir: Path) -> BatchResult:
    manifest = Manifest.load(out_dir)
    card_sha = file_sha256(resolve_resource(config.model.path).with_suffix(".json"))
    config = config.replace({"model.path": str(resolve_resource(config.model.path))})

    outcomes: dict[str, dict] = {}
    prints: dict[str, list[dict]] = {}
    jobs: list[Job] = []
    for item in items:
        record = out_dir / RECORDS_DIR / item.record_name
        prints[item.uri] = fingerprint(item)
        complete = RecordLayout(record).is_complete()
        if manifest.is_current(item.uri, prints[item.uri], card_sha, complete):
            outcomes[item.uri] = {**manifest.entries[item.uri]["outcome"], "status": SKIPPED}
            continue
        if record.exists():
            shutil.rmtree(record)  # our own earlier, stale or partial record of this input
        log_file(record).unlink(missing_ok=True)
        outcomes[item.uri] = {"uri": item.uri, "record": str(record), "status": PENDING}
        jobs.append(Job(item, str(record), config))
    # A cluster (--address) has cores of its own: only the inputs cap its workers there.
    cores = _usable_cores() if request.address is None else \
        max(_usable_cores(), request.workers or 0)
    plan = plan_workers(request.workers, cores, len(jobs))
    if plan.capped and jobs:
        log.warning("%s", plan.capped)
    jobs = [Job(job.item, job.record_dir, plan.worker_config(job.config)) for job in jobs]
    workers, threads = plan.workers, plan.threads

    def finish(result: BatchResult) -> BatchResult:
        result.outcomes = list(outcomes.values())
        write_index(index_rows(result.outcomes, out_dir), out_dir)
        return result

    bar = tqdm(total=sum(_frames_expected(job.item) for job in jobs), unit="frame",
               desc=f"batch {request.engine} x{workers}", disable=not request.show_progress,
               dynamic_ncols=True)
    bar.set_postfix_str(f"inputs 0/{len(jobs)} ({len(items) - len(jobs)} current)")

    def on_done(outcome: dict) -> None:
        uri = outcome["uri"]
        outcomes[uri] = outcome
        manifest.update(uri, {"files": prints[uri], "model_card_sha256": card_sha,
                              "status": outcome["status"], "outcome": outcome})
        finished = sum(o["status"] not in (PENDING, SKIPPED) for o in outcomes.values())
        watcher.finished(outcome["record"], outcome.get("frames", 0))
        bar.set_postfix_str(f"inputs {finished}/{len(jobs)}")
        write_index(index_rows(list(outcomes.values()), out_dir), out_dir)

    watcher = FrameWatcher([job.record_dir for job in jobs], bar.update)
    result = BatchResult()
    try:
        with watcher:
            ENGINES[request.engine](jobs, workers, threads, on_done, request.address)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:  # whatever happened, a re-run must know what is done: manifest, then index
        bar.close()
        manifest.save()
        finish(result)
    return result


def _usable_cores() -> int:
    """The cores this process may run on (its affinity, e.g. under taskset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _frames_expected(item: BatchInput) -> int:
    """For the progress bar only: a video's frame count from its header, stills counted."""
    if item.kind == "stills":
        return len(item.files)
    with OpenCvPath(item.files[0]) as path:  # any file name, even one that is not UTF-8
        capture = cv2.VideoCapture(path.path)
        try:
            return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        finally:
            capture.release()

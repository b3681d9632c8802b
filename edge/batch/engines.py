"""Engines run `work.process_input` over jobs: `local` (a process pool) or `ray` (Ray tasks).

The runner plans the processes once (runner.plan_workers): each worker is one process that
infers and refines (its jobs' config says refine.worker = thread, so no refine worker process
is started on top), with model.threads TFLite and OpenCV threads, workers x threads = cores.

Both have one signature: `run(jobs, workers, threads, on_done, address)`. They call `on_done`
with each outcome as it arrives (the runner updates the manifest, index and progress bar), and
on Ctrl-C they ask the jobs in flight to stop, hand in what those return (`interrupted`, their
records closed properly), then re-raise KeyboardInterrupt. Jobs not started are left alone: the
manifest does not list them as done, so a re-run does them. A worker that dies (killed, out of
memory, node lost) makes its job `lost`; the batch goes on with the others.

The model file, for Ray: each task reads `model.path` if that path holds the same bytes on its
node (a shared filesystem, or the same checkout everywhere); otherwise it takes the model and
its card from Ray's object store (put there once by the driver) and writes them to a per-node
cache folder named after the model's sha256.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

import cv2

from edge import native_logs
from edge.batch.work import DONE, FAILED, INTERRUPTED, LOST, PENDING, Job, process_input
from edge.errors import MissingDependencyError, RustsegError, one_line
from edge.stop_reason import StopReason, StopRequest
from edge.writable import write_atomic

OnDone = Callable[[dict], None]


class EngineError(RustsegError):
    """The engine itself could not start (Ray could not start or reach the cluster)."""


_STOP_POLL_S = 0.2
_RAY_CONNECT_TIMEOUT_S = 5.0   # a cluster that does not accept a connection by then is unreachable
_RAY_NO_PROBE = (None, "", "auto", "local")   # addresses Ray resolves itself, on this machine
_MAX_POOL_RESTARTS = 3

_worker_stop = None  # the pool's shared stop event, set in each worker by _init_pool_worker


def _init_pool_worker(stop_event, threads: int) -> None:
    """Ctrl-C reaches every process of the terminal's group; the driver decides what stops
    (through `stop_event`), so an idle worker must not die of it. OpenCV gets the worker's
    share of the cores, as TFLite does (model.threads)."""
    global _worker_stop
    _worker_stop = stop_event
    cv2.setNumThreads(threads)
    native_logs.configure(verbose=False)  # TFLite's INFO lines would tear the progress bar
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_task(job: Job) -> dict:
    if _worker_stop.is_set():  # queued ahead before the stop; leave it for the re-run
        return {"uri": job.item.uri, "record": job.record_dir, "status": PENDING}
    stop = StopRequest()
    finished = threading.Event()

    def relay() -> None:  # the process-shared event -> the thread event the loop polls
        while not finished.is_set():
            if _worker_stop.wait(_STOP_POLL_S):
                stop.request(StopReason.STOP_REQUEST)
                return

    threading.Thread(target=relay, daemon=True).start()
    try:
        return process_input(job, stop)
    finally:
        finished.set()


def run_local(jobs: list[Job], workers: int, threads: int, on_done: OnDone,
              address: str | None = None) -> None:
    """A spawn-context process pool: one interpreter (and one TFLite model) per process."""
    context = multiprocessing.get_context("spawn")  # no forked TFLite/OpenCV threads
    stop = context.Event()
    pending = list(jobs)
    for _ in range(_MAX_POOL_RESTARTS):
        if not pending:
            return
        pending = _run_pool(pending, workers, threads, context, stop, on_done)
    for job in pending:  # the pool kept breaking before these even started
        on_done(_lost(job, "worker pool broke repeatedly; not started"))


def _run_pool(jobs: list[Job], workers: int, threads: int, context, stop,
              on_done: OnDone) -> list[Job]:
    """Runs jobs until done or the pool breaks; returns the jobs that never started."""
    not_started: list[Job] = []
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_pool_worker,
                             initargs=(stop, threads)) as pool:
        futures = {pool.submit(_pool_task, job): job for job in jobs}
        try:
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    job = futures.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        # The record folder exists once a job has started (the runner removed
                        # any old one), so it tells lost work from work never begun.
                        if Path(job.record_dir).exists():
                            on_done(_lost(job, "worker process died"))
                        else:
                            not_started.append(job)
                        continue
                    except Exception as exc:  # raised outside process_input: still one input's
                        outcome = _failed(job, exc)
                    on_done(outcome)
        except KeyboardInterrupt:
            stop.set()
            for future in futures:
                future.cancel()
            for future, job in futures.items():
                if not future.cancelled():
                    _hand_in(future.result, job, on_done)
            raise
    return not_started


def _hand_in(result: Callable[[], dict], job: Job, on_done: OnDone) -> None:
    """What a job stopped by Ctrl-C returns (it closes its record first)."""
    try:
        outcome = result()
    except Exception as exc:  # cancelled (Ray) or died while stopping: the record is partial
        outcome = {**_lost(job, f"stopped before it reported ({type(exc).__name__})")}
    if outcome["status"] in (DONE, PENDING):
        on_done(outcome)
    else:
        on_done({**outcome, "status": INTERRUPTED})


def _failed(job: Job, exc: Exception) -> dict:
    """The outcome of a job whose worker raised instead of returning one: failed, one line."""
    from edge.untrusted import printable

    return {**_lost(job, printable(one_line(exc))), "status": FAILED}


def _lost(job: Job, why: str) -> dict:
    from edge.batch.work import frame_figures

    return {"uri": job.item.uri, "record": job.record_dir, "status": LOST, "error": why,
            "wall_s": None, **frame_figures(Path(job.record_dir))}


# --- Ray ------------------------------------------------------------------------------------

def _import_ray():
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "rustseg batch --engine ray needs Ray: pip install 'rustseg-edge[cluster]' (from a "
            "checkout: pip install -e '.[cluster]')") from None
    return ray


def _model_payload(job: Job) -> dict:
    from edge.config import resolve_resource
    from edge.method.modelcard import sha256_hex

    model = resolve_resource(job.config.model.path)
    data = model.read_bytes()
    return {"name": model.name, "path": str(model), "sha256": sha256_hex(data), "tflite": data,
            "card": model.with_suffix(".json").read_bytes()}


def _local_model_path(payload: dict) -> str:
    """The model on this node: the shared path if its bytes match, else a cache copy."""
    from edge.method.modelcard import file_sha256

    shared = Path(payload["path"])
    try:
        if file_sha256(shared) == payload["sha256"]:
            return str(shared)
    except OSError:
        pass
    cache = Path(tempfile.gettempdir()) / "rustseg-models" / payload["sha256"]
    model = cache / payload["name"]
    if not model.exists():
        cache.mkdir(parents=True, exist_ok=True)
        for target, data in ((model.with_suffix(".json"), payload["card"]),
                             (model, payload["tflite"])):  # the model last: it marks complete
            write_atomic(target, data)
    return str(model)


def check_reachable(address: str | None) -> None:
    """EngineError unless the cluster at `address` (HOST:PORT or ray://HOST:PORT) accepts a
    TCP connection within _RAY_CONNECT_TIMEOUT_S. ray.init itself keeps retrying an
    unreachable address for minutes with no word to the user."""
    if address in _RAY_NO_PROBE:
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit():
        raise EngineError(f"rustseg batch --address {address!r}: expected HOST:PORT or "
                          "ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=_RAY_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else exc.strerror or str(exc)
        raise EngineError(f"rustseg batch --address {address}: cannot reach the Ray cluster "
                          f"within {_RAY_CONNECT_TIMEOUT_S:g} s ({reason}); is `ray start` "
                          "running there, and is the port open?") from None


def _ray_task(job: Job, payload: dict) -> dict:
    native_logs.configure(verbose=False)
    cv2.setNumThreads(job.config.model.threads)  # the task's share, as TFLite's
    config = job.config.replace({"model.path": _local_model_path(payload)})
    return process_input(Job(job.item, job.record_dir, config))


def run_ray(jobs: list[Job], workers: int, threads: int, on_done: OnDone,
            address: str | None = None) -> None:
    """Ray tasks declaring `num_cpus=threads`; at most `workers` in flight. Uses a Ray already
    initialised in this process, else `ray.init(address)` (None: a local Ray on this machine)."""
    ray = _import_ray()
    if not jobs:
        return
    started_here = not ray.is_initialized()
    if started_here:
        check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     **({} if address else {"num_cpus": workers * threads}))
        except Exception as exc:  # Ray raises a bare Exception on a startup timeout
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EngineError(f"rustseg batch --engine ray: Ray did not start on "
                              f"{address or 'this machine'}: {first_line}") from None
    try:
        task = ray.remote(num_cpus=threads, max_retries=0)(_ray_task)
        payload = ray.put(_model_payload(jobs[0]))
        queue, running = list(jobs), {}
        try:
            while queue or running:
                while queue and len(running) < workers:
                    job = queue.pop(0)
                    running[task.remote(job, payload)] = job
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    job = running.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                            ray.exceptions.ObjectLostError) as exc:
                        outcome = _lost(job, f"Ray worker lost ({type(exc).__name__})")
                    except Exception as exc:  # the task raised: that input failed, go on
                        outcome = _failed(job, exc)
                    on_done(outcome)
        except KeyboardInterrupt:
            for ref in running:
                ray.cancel(ref)  # KeyboardInterrupt inside the task: the record closes
            for ref, job in running.items():
                _hand_in(lambda ref=ref: ray.get(ref), job, on_done)
            raise
    finally:
        if started_here:
            ray.shutdown()


ENGINES: dict[str, Callable[..., None]] = {"local": run_local, "ray": run_ray}


def _check_ray(address: str | None) -> None:
    _import_ray()
    check_reachable(address)


# What an engine needs (installed, reachable), checked before any work starts (fail fast, one
# line).
REQUIREMENTS: dict[str, Callable[[str | None], None]] = {"ray": _check_ray}


def check_engine(name: str, address: str | None = None) -> None:
    REQUIREMENTS.get(name, lambda address: None)(address)

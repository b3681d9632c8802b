"""Refinement in a worker process, so a path that holds the GIL (pydensecrf does) cannot stall
capture, inference and drawing in the loop's other threads.

Frames, evidence maps and masks cross through shared memory (`multiprocessing.shared_memory`):
one buffer per role, keyed on shape and reused frame after frame; only a few names and shapes
go through the pipe. One frame is in flight at a time, so one set of buffers is enough: the
refine stage either waits for its answer (`refine`), or hands a frame over and collects the
answer on a later frame (`submit`, `collect`: the full path without its lag); a `refine` or
`submit` while a frame is in flight first takes that frame's answer in.

The worker never outlives the run: `close()` (called in the stage runner's finally) asks it to
quit, then terminates and kills it if it does not; it ignores SIGINT/SIGTERM, which reach the
whole process group on Ctrl-C, so that the parent decides when to stop and the frames in flight
are finished; and if the parent dies without closing it, its end of the pipe reports EOF and it
exits.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from edge.errors import RustsegError
from edge.method.refine.base import RefineResult, Refiner

_START_TIMEOUT_S = 60.0     # spawn + imports (numpy, OpenCV, pydensecrf) on a slow device
_POLL_S = 0.1               # how often a wait re-checks that the worker is still alive
_CLOSE_TIMEOUT_S = 3.0


class RefineWorkerError(RustsegError):
    """The refine worker process failed to start, died, or failed on a frame."""


class RefineWorker:
    """A process holding the named refine paths; `refine(path, evidence, frame)` runs one."""

    def __init__(self, settings, paths: tuple[str, ...]) -> None:
        self.settings, self.paths = settings, tuple(paths)
        self.process: multiprocessing.process.BaseProcess | None = None
        self._conn = None
        self._buffers: dict[tuple, SharedMemory] = {}
        self._in_flight = False             # a submitted frame whose answer is not taken yet
        self._answered: RefineResult | None = None   # taken in early, handed out by collect()
        self._mask_view: np.ndarray | None = None    # where the frame in flight's mask lands

    def refiner(self, path: str) -> "ProcessRefiner":
        """The proxy that runs `path` here (the factory's way in, so it imports no worker)."""
        return ProcessRefiner(path, self.settings, self)

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> "RefineWorker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Start the worker and wait until its paths are built; a no-op while it runs (the
        loop starts it before opening the source, so a camera does not wait on its start)."""
        if self.process is not None:
            return
        # spawn, not fork: the parent already runs TFLite and capture threads, which a fork
        # would copy in whatever state they were in.
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(child_end, self.settings, self.paths),
                                       name="rustseg-refine", daemon=True)
        self.process.start()
        child_end.close()  # so the parent sees EOF if the worker dies
        reply = self._receive(_START_TIMEOUT_S)
        if reply[0] != "ready":
            self.close()
            raise RefineWorkerError(f"refine worker did not start: {reply[1]}")

    def close(self) -> None:
        """Stop the worker (politely, then by force) and free every shared buffer."""
        process, self.process = self.process, None
        if process is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass  # already gone
            process.join(_CLOSE_TIMEOUT_S)
            if process.is_alive():
                process.terminate()
                process.join(_CLOSE_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
            self._conn.close()
        self._in_flight, self._answered, self._mask_view = False, None, None
        for key in list(self._buffers):
            _free(self._buffers.pop(key))

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    # --- one frame ------------------------------------------------------------------------

    def refine(self, path: str, evidence01: np.ndarray, frame_bgr: np.ndarray) -> RefineResult:
        """Run `path` on this frame and wait for its mask."""
        self.submit(path, evidence01, frame_bgr)
        return self._take_answer(None)   # its own answer; an earlier one stays for collect()

    def submit(self, path: str, evidence01: np.ndarray, frame_bgr: np.ndarray) -> None:
        """Hand a frame over without waiting; its mask comes from a later `collect()`."""
        if self.process is None:
            raise RefineWorkerError("refine worker is not running")
        if self._in_flight:
            self._answered = self._take_answer(None)
        frame = self._shared("frame", frame_bgr.shape, np.uint8)
        evidence = self._shared("evidence", evidence01.shape, np.float32)
        mask = self._shared("mask", frame_bgr.shape[:2], np.bool_)
        frame[1][...] = frame_bgr
        evidence[1][...] = evidence01
        self._conn.send((path, frame[0], evidence[0], mask[0]))
        self._in_flight = True
        self._mask_view = mask[1]

    @property
    def busy(self) -> bool:
        """A submitted frame is still being refined (its answer has not been taken in)."""
        return self._in_flight and not self._conn.poll(0)

    def collect(self, wait: bool = False) -> RefineResult | None:
        """The answer to the frame submitted last: waits for it with `wait`, else None while
        it is still being refined (or when nothing was submitted)."""
        if self._answered is not None:
            answered, self._answered = self._answered, None
            return answered
        if not self._in_flight or (not wait and not self._conn.poll(0)):
            return None
        return self._take_answer(None)

    def _take_answer(self, timeout_s: float | None) -> RefineResult:
        reply = self._receive(timeout_s)
        self._in_flight = False
        if reply[0] != "done":
            raise RefineWorkerError(f"refine worker failed on a frame: {reply[1]}")
        # A copy: the buffer is overwritten by the next frame while this mask is drawn.
        return RefineResult(self._mask_view.copy(), reply[1])

    def _shared(self, role: str, shape: tuple, dtype) -> tuple[tuple, np.ndarray]:
        """(name, shape, dtype) for the pipe, and the parent's view of the buffer."""
        key = (role, tuple(shape), np.dtype(dtype).str)
        buffer = self._buffers.get(key)
        if buffer is None:
            for old in [k for k in self._buffers if k[0] == role]:  # a new frame size
                _free(self._buffers.pop(old))
            size = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
            buffer = self._buffers[key] = SharedMemory(create=True, size=size)
        return (buffer.name, key[1], key[2]), np.ndarray(shape, dtype, buffer=buffer.buf)

    def _receive(self, timeout_s: float | None):
        waited = 0.0
        while not self._conn.poll(_POLL_S):
            waited += _POLL_S
            if not self.process.is_alive():
                raise RefineWorkerError(f"refine worker died (exit code "
                                        f"{self.process.exitcode})")
            if timeout_s is not None and waited >= timeout_s:
                raise RefineWorkerError(f"refine worker gave no answer in {timeout_s:.0f} s")
        try:
            return self._conn.recv()
        except EOFError as exc:
            raise RefineWorkerError("refine worker closed its pipe") from exc


def _free(buffer: SharedMemory) -> None:
    try:
        buffer.close()
    except BufferError:
        pass  # a view of it is still alive; the mapping goes with it, the name goes below
    buffer.unlink()


class ProcessRefiner(Refiner):
    """A refine path that runs in the worker; its measured cost includes the process hop."""

    def __init__(self, name: str, settings, worker: RefineWorker) -> None:
        super().__init__(settings)
        self.name, self.worker = name, worker

    def refine_clean(self, evidence01: np.ndarray, frame_bgr: np.ndarray) -> RefineResult:
        return self.worker.refine(self.name, evidence01, frame_bgr)


# --- the worker process -------------------------------------------------------------------

def _serve(conn, settings, paths: tuple[str, ...]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent stops the run, then closes us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import cv2
        cv2.setNumThreads(len(os.sched_getaffinity(0)))  # the cores it was pinned to, if any
        from edge.method.refine.factory import make_refiner
        refiners = {name: make_refiner(name, settings, 0.0) for name in paths}
    except Exception as exc:  # sent to the parent, which raises it as one line
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None))
    attached: dict[str, SharedMemory] = {}
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:  # the parent is gone: never outlive it
                return
            if message is None:
                return
            path, frame, evidence, mask = message
            try:
                result = refiners[path].refine_clean(_view(attached, *evidence),
                                                     _view(attached, *frame))
                _view(attached, *mask)[...] = result.mask
                conn.send(("done", result.path))
            except Exception as exc:  # one frame failed: the parent stops the run with it
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        for buffer in attached.values():
            buffer.close()


def _view(attached: dict[str, SharedMemory], name: str, shape: tuple, dtype: str) -> np.ndarray:
    """The worker's view of a parent buffer, attached once. Spawned children share the
    parent's resource tracker, so the parent's unlink is the only cleanup needed."""
    buffer = attached.get(name)
    if buffer is None:
        buffer = attached[name] = SharedMemory(name=name)
    return np.ndarray(shape, np.dtype(dtype), buffer=buffer.buf)

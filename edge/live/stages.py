"""The stage runner: items from a producer through stages to a consumer, with the plumbing.

It owns what every frame loop needs and no frame knowledge: one thread per stage joined by
small queues (so throughput is bounded by the slowest stage, not the sum), the worker process a
stage may drive (started before the first item, closed in finally, so it never outlives the
run), the newest-item policy for live sources, failure propagation and the accounting.

- Items: the producer is an iterable run on its own thread; every item it yields is `taken`.
  The consumer runs on the calling thread (GUI windows must live there).
- Live sources (`live=True`): a full queue drops its oldest item instead of blocking the stage
  before it, so the output stays close to the newest capture; with a queue depth of 1 (the
  loop's default) a stage always takes the newest item there is. Each dropped item is counted
  in `dropped`. From files every item waits its turn.
- Accounting: at the end, taken == consumed + dropped, exactly; stopping (`stop` set) stops
  the producer only and the items already taken are finished.
- Failure: an exception in any stage, the producer or the consumer stops the run and is
  re-raised on the calling thread once every thread has been joined.
- `overlap=False` runs the same stages one item at a time on the calling thread, so each
  stage's own cost is measured with nothing competing (`rustseg bench`).
"""

from __future__ import annotations

import queue
import threading
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Any, Callable, Iterable

_END = object()                 # flows down the queues after the last item
_QUEUE_POLL_S = 0.1             # how often a blocked thread re-checks for a failure elsewhere
_JOIN_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Stage:
    """One step: `work(item) -> item`. `process` is the worker process the step drives, if
    any (a context manager: entered before the run, exited after it)."""

    name: str
    work: Callable[[Any], Any]
    process: AbstractContextManager | None = None


class StageRunner:
    def __init__(self, live: bool, queue_depth: int = 2, stop: threading.Event | None = None,
                 overlap: bool = True) -> None:
        self.live, self.queue_depth, self.overlap = live, queue_depth, overlap
        self.stop = stop or threading.Event()
        self.taken = 0          # items the producer yielded
        self.consumed = 0       # items the consumer finished
        self._dropped = 0
        self._drop_lock = threading.Lock()
        self._failure: BaseException | None = None

    @property
    def dropped(self) -> int:
        """Stale live items dropped between stages."""
        return self._dropped

    def run(self, items: Iterable, stages: list[Stage], consume: Callable[[Any], None]) -> None:
        with ExitStack() as processes:
            for stage in stages:
                if stage.process is not None:
                    processes.enter_context(stage.process)
            if self.overlap:
                self._run_overlapped(items, stages, consume)
            else:
                self._run_in_turn(items, stages, consume)

    # --- one item at a time ----------------------------------------------------------------

    def _run_in_turn(self, items: Iterable, stages: list[Stage], consume) -> None:
        for item in items:
            self.taken += 1
            for stage in stages:
                item = stage.work(item)
            consume(item)
            self.consumed += 1
            if self.stop.is_set():
                break

    # --- overlapped -----------------------------------------------------------------------

    def _run_overlapped(self, items: Iterable, stages: list[Stage], consume) -> None:
        queues = [queue.Queue(self.queue_depth) for _ in range(len(stages) + 1)]
        threads = [threading.Thread(target=self._guard, args=(self._produce, items, queues[0]),
                                    name="produce", daemon=True)]
        threads += [threading.Thread(target=self._guard, name=stage.name, daemon=True,
                                     args=(self._serve, stage, queues[i], queues[i + 1]))
                    for i, stage in enumerate(stages)]
        for thread in threads:
            thread.start()
        try:
            for item in self._drain(queues[-1]):
                consume(item)
                self.consumed += 1
        except BaseException as exc:  # stops the threads (they poll _failure), re-raised below
            self._failure = self._failure or exc
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(_JOIN_TIMEOUT_S)
        if self._failure is not None:
            raise self._failure

    def _produce(self, items: Iterable, out: queue.Queue) -> None:
        for item in items:
            self.taken += 1
            self._put(out, item)
            if self._failure is not None:
                return
        self._put(out, _END)

    def _serve(self, stage: Stage, inbox: queue.Queue, out: queue.Queue) -> None:
        for item in self._drain(inbox):
            self._put(out, stage.work(item))
        self._put(out, _END)

    def _guard(self, target, *args) -> None:
        """Run a thread's job; a failure stops the run and is re-raised by run()."""
        try:
            target(*args)
        except BaseException as exc:  # handed to run(), which re-raises it
            if self._failure is None:
                self._failure = exc
            self.stop.set()

    def _put(self, target: queue.Queue, item) -> None:
        if self.live and item is not _END:
            self._put_newest(target, item)
            return
        while self._failure is None:
            try:
                target.put(item, timeout=_QUEUE_POLL_S)
                return
            except queue.Full:
                continue

    def _put_newest(self, target: queue.Queue, item) -> None:
        """A full queue drops its oldest item rather than block the stage before it."""
        while True:
            try:
                target.put_nowait(item)
                return
            except queue.Full:
                try:
                    stale = target.get_nowait()
                except queue.Empty:
                    continue
                if stale is _END:  # never lose the end marker (it is put last anyway)
                    target.put(stale)
                    return
                self._count_drop()

    def _drain(self, source: queue.Queue):
        while True:
            try:
                item = source.get(timeout=_QUEUE_POLL_S)
            except queue.Empty:
                if self._failure is not None:
                    return
                continue
            if item is _END:
                return
            yield item

    def _count_drop(self) -> None:
        with self._drop_lock:
            self._dropped += 1

"""The live loop: capture -> infer -> refine -> draw + outputs, as overlapping stages.

`Pipeline` is the frame recipe, one function per stage; edge/live/stages.py runs them (a thread per
stage, small queues, so throughput is bounded by the slowest stage; the refine worker process
when refine.worker = process, because pydensecrf holds the GIL). Every frame carries a
`StageTimes`; every stage adds its own milliseconds. Draw and outputs run on the calling
thread because GUI windows must live there.

Stopping (end of source, --frames reached, a stop request from a signal or a display window)
stops capture only; frames already inside the pipeline are finished and written, so that
frames read == frames processed + frames dropped, exactly. Each output counts the frames it
actually wrote; one that fails is recorded with the frame where it stopped and the reason.
Only live sources drop frames: the capture thread keeps the newest frame, and a stage that
falls behind lets the next queue drop its oldest frame (with loop.queue_depth 1 every stage
takes the newest frame there is) rather than show the inspector the past.

The infer stage warms the model up on its own thread before the first frame (interpreters are
per thread); that time is reported apart (`RunReport.warmup_ms`). Everything the loop says
about a frame is one `FrameRecord`: the HUD draws it, and every sink gets it (the log, the
record, the console, the terminal's line). Library code logs; the CLI decides what is printed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from edge.config import OverlayConfig
from edge.errors import OutputStopped, RustsegError, SinkError
from edge.live.overlay import draw_overlay
from edge.live.stages import Stage, StageRunner
from edge.method.grades import grades
from edge.method.profiler import StageTimes, summarize
from edge.method.segment import Segmenter
from edge.outputs import FrameRecord, FrameSink, OutputFrame
from edge.sources import Frame, FrameSource
from edge.stop_reason import StopReason, StopRequest

log = logging.getLogger(__name__)

_FPS_WINDOW = 30                # frames in the rolling FPS of the HUD
# A frame's stages in the order the recipe runs them, as its record names them (the method
# times preprocess, invoke, carry, refine and, for v3 models, states); bench reports these.
FRAME_STAGES = ("capture", "preprocess", "invoke", "carry", "refine", "states", "draw")
REPORT_STAGES = (*FRAME_STAGES, "output", "latency")


@dataclass(frozen=True)
class LoopOptions:
    frames: int = 0                  # 0: until the source ends
    queue_depth: int = 2
    sink_error_policy: str = "drop"  # drop | stop
    overlay: OverlayConfig | None = None
    overlap: bool = True             # False: one frame at a time on this thread (bench)
    # (position or None, why missing or None) of a frame, taken at capture (edge/live/locate.py)
    locate: Callable[[Frame], tuple[dict | None, str | None]] | None = None


@dataclass
class _Item:
    frame: Frame
    times: StageTimes
    prediction: object = None
    result: object = None
    located: tuple[dict | None, str | None] = (None, None)


@dataclass
class OutputTally:
    """What one output kept: frames written, and where and why it stopped if it failed."""

    written: int = 0
    lost_at_frame: int | None = None
    error: str | None = None
    stopped_on_purpose: bool = False   # OutputStopped (the free-space reserve), not a failure


@dataclass
class RunReport:
    frames_read: int = 0
    frames_processed: int = 0        # frames through the whole pipeline, whatever outputs kept
    dropped: int = 0
    wall_s: float = 0.0
    stage_ms: dict[str, list[float]] = field(default_factory=dict)
    lag_frames: list[int] = field(default_factory=list)
    paths: dict[str, int] = field(default_factory=dict)
    stopped_by: StopReason = StopReason.END_OF_SOURCE
    stop_detail: str | None = None     # e.g. "--frames 20", or the output that failed
    sink_failures: list[str] = field(default_factory=list)
    outputs: dict[str, OutputTally] = field(default_factory=dict)
    warmup_ms: float | None = None     # the infer stage's warm-up, before the first frame

    @property
    def interrupted_by(self) -> StopReason | None:
        """SIGINT / SIGTERM when a signal stopped the run."""
        return self.stopped_by if self.stopped_by.signal else None

    @property
    def fps(self) -> float:
        return self.frames_processed / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def lost_outputs(self) -> list[str]:
        return [name for name, tally in self.outputs.items() if tally.error is not None]

    @property
    def failed_outputs(self) -> list[str]:
        """Lost outputs that failed, not counting those that stopped on purpose."""
        return [name for name, tally in self.outputs.items()
                if tally.error is not None and not tally.stopped_on_purpose]

    def summary(self) -> dict:
        return {"frames_read": self.frames_read, "frames_processed": self.frames_processed,
                "dropped": self.dropped, "wall_s": self.wall_s, "fps": self.fps,
                "stopped_by": self.stopped_by, "stop_detail": self.stop_detail,
                "interrupted_by": self.interrupted_by, "warmup_ms": self.warmup_ms,
                "outputs": {name: dataclasses.asdict(t) for name, t in self.outputs.items()},
                "paths": self.paths,
                "lag_frames": summarize(self.lag_frames) if self.lag_frames else None,
                "stages": {name: summarize(values) for name, values in self.stage_ms.items()},
                "sink_failures": self.sink_failures}

    def format(self) -> str:
        lines = [f"frames: read {self.frames_read}, processed {self.frames_processed}, dropped "
                 f"{self.dropped} (live source)  |  {self.fps:.1f} FPS over {self.wall_s:.1f} s"
                 f"  |  stopped by {self.stopped_by}"
                 + (f" ({self.stop_detail})" if self.stop_detail else "")]
        if self.warmup_ms is not None:
            lines.append(f"warm-up before the first frame: {self.warmup_ms:.1f} ms")
        for name, tally in self.outputs.items():
            lost = "" if tally.error is None else \
                f", LOST at frame {tally.lost_at_frame}: {tally.error}"
            lines.append(f"output {name}: written {tally.written}{lost}")
        lines += [f"refine paths: {self.paths or '-'}",
                 f"{'stage':<11}{'mean ms':>9}{'p50':>9}{'p95':>9}{'count':>8}"]
        for name in REPORT_STAGES:
            values = self.stage_ms.get(name)
            if values:
                s = summarize(values)
                lines.append(f"{name:<11}{s['mean']:>9.2f}{s['p50']:>9.2f}{s['p95']:>9.2f}"
                             f"{s['count']:>8}")
        if self.lag_frames:
            lines.append(f"overlay lag behind newest capture: p50 {np.median(self.lag_frames):.0f}"
                         f", max {max(self.lag_frames)} frames")
        return "\n".join(lines)


class Pipeline:
    """The frame recipe: capture -> infer -> refine -> draw + outputs. The plumbing (threads,
    queues, the refine worker process, drops, failures, shutdown) is edge/live/stages.py's."""

    def __init__(self, source: FrameSource, segmenter: Segmenter, sinks: list[FrameSink],
                 options: LoopOptions, stop: StopRequest | None = None) -> None:
        self.source, self.segmenter, self.sinks = source, segmenter, list(sinks)
        self.options = options
        self.stop = stop if stop is not None else StopRequest()
        self.report = RunReport(outputs={sink.name: OutputTally() for sink in self.sinks
                                         if sink.is_output})
        self._runner = StageRunner(source.live, options.queue_depth, self.stop, options.overlap)
        self._output_times: deque[float] = deque(maxlen=_FPS_WINDOW)
        self._source_end = StopReason.END_OF_SOURCE  # how capture ended if nobody stopped it
        self.notices: list[str] = []   # for the operator: on the live page and in STATUS=

    def run(self) -> RunReport:
        started = time.perf_counter()
        self.segmenter.start_source(self.source.live, not self.source.stills)
        try:
            self._runner.run(self._capture(),
                             [Stage("infer", self._infer, warmup=self.segmenter.warm_up),
                              Stage("refine", self._refine, self.segmenter.refine_worker)],
                             self._draw_and_output)
        finally:
            self.report.wall_s = time.perf_counter() - started
            self.report.dropped = self._dropped()
            # Read = everything the source delivered, including frames it overwrote itself.
            self.report.frames_read = self._runner.taken + self.source.dropped
            self.report.warmup_ms = self._runner.warmup_ms.get("infer")
            # Whoever asked for the stop says why (first asker wins); else the source ended
            # or the frame limit was reached.
            self.report.stopped_by = self.stop.reason or self._source_end
        return self.report

    # --- the recipe: one function per stage ---------------------------------------------------

    def _capture(self):
        limit = self.options.frames
        while not self.stop.is_set() and not (limit and self._runner.taken >= limit):
            times = StageTimes()
            with times.stage("capture"):
                frame = self.source.read()
            if frame is not None:
                item = _Item(frame, times)
                if self.options.locate is not None:
                    item.located = self.options.locate(frame)
                yield item
            elif self.source.ended:
                break  # else: a live source with nothing new yet
        if self.stop.is_set():
            self.stop.request(StopReason.STOP_REQUEST)  # keeps a reason already given
        elif limit and self._runner.taken >= limit:
            self._source_end = StopReason.FRAME_LIMIT
            self.report.stop_detail = f"--frames {limit}"

    def _infer(self, item: _Item) -> _Item:
        item.prediction = self.segmenter.infer(item.frame.image, item.times,
                                               still=self.source.stills)
        return item

    def _refine(self, item: _Item) -> _Item:
        index = None if self.source.stills else item.frame.index  # stills carry nothing
        item.result = self.segmenter.refine(item.frame.image, item.prediction, item.times, index)
        return item

    def _draw_and_output(self, item: _Item) -> None:
        frame, result, times = item.frame, item.result, item.times
        self._output_times.append(time.perf_counter())
        record = self._record(item)  # before drawing: the HUD shows it
        with times.stage("draw"):
            overlay = draw_overlay(frame.image, result.mask, self.options.overlay,
                                   result.cam01, record, result.state, result.surface)
        record = dataclasses.replace(record, ms=dict(times.ms), output_at=time.time())
        with times.stage("output"):
            self._write_all(OutputFrame(frame.index, frame.name, overlay, result.mask,
                                        record, frame.image, tuple(self.notices)))
        self._account(frame, result, times)
        self.segmenter.observe_frame(times)
        if any(sink.wants_stop for sink in self.sinks):
            self.stop.request(StopReason.WINDOW_CLOSED)
        if self.report.outputs and not any(sink.is_output for sink in self.sinks):
            self.stop.request(StopReason.NO_OUTPUT_LEFT)  # every output it had has failed

    # --- helpers --------------------------------------------------------------------------

    def _lag(self, frame: Frame) -> int | None:
        """Frames the overlay trails the newest capture; only meaningful for live sources
        (files are read ahead on purpose and every frame is shown)."""
        return max(0, self.source.latest_index - frame.index) if self.source.live else None

    def _dropped(self) -> int:
        """Live frames never shown: overwritten in the capture thread or stale in a queue."""
        return self.source.dropped + self._runner.dropped

    def _write_all(self, out: OutputFrame) -> None:
        for sink in list(self.sinks):
            if not sink.is_output:  # a view (the terminal's line): its failure ends the run
                sink.write(out)
                continue
            tally = self.report.outputs[sink.name]
            try:
                sink.write(out)
                tally.written += 1
            except OutputStopped as exc:
                tally.lost_at_frame, tally.error = out.index, str(exc)
                tally.stopped_on_purpose = True
                self.sinks.remove(sink)
                _close_quietly(sink)
                self.notices.append(str(exc))
                log.warning("%s", exc)
            except (SinkError, OSError) as exc:
                message = str(exc) if isinstance(exc, SinkError) else \
                    f"output {sink.name}: {exc.strerror or exc}"
                tally.lost_at_frame, tally.error = out.index, message
                self.report.sink_failures.append(message)
                self.sinks.remove(sink)
                _close_quietly(sink)
                if self.options.sink_error_policy == "stop":
                    log.warning("%s; stopping cleanly (loop.sink_error_policy=stop)", message)
                    self.report.stop_detail = sink.name
                    self.stop.request(StopReason.OUTPUT_FAILURE)
                else:
                    log.warning("%s; dropped that output and going on "
                                "(loop.sink_error_policy=drop)", message)
        self.report.frames_processed += 1

    def _rolling_fps(self) -> float:
        window = self._output_times
        return (len(window) - 1) / (window[-1] - window[0]) if len(window) > 1 and \
            window[-1] > window[0] else 0.0

    def _record(self, item: _Item) -> FrameRecord:
        frame, result, times = item.frame, item.result, item.times
        position, position_missing = item.located
        return FrameRecord(index=frame.index, name=frame.name, captured_at=frame.captured_at,
                           output_at=time.time(), score=result.score, valid=result.valid,
                           corroded_fraction=result.corroded_fraction, path=result.path,
                           grades={**grades(result.rusted_percent), "over": result.grades_over},
                           area_by_state=result.area_by_state,
                           **mask_origin(frame.index, result),
                           ms=dict(times.ms), dropped=self._dropped(),
                           lag_frames=self._lag(frame), fps=self._rolling_fps(),
                           position=position, position_missing=position_missing)

    def _account(self, frame: Frame, result, times: StageTimes) -> None:
        for name, ms in times.ms.items():
            self.report.stage_ms.setdefault(name, []).append(ms)
        self.report.stage_ms.setdefault("latency", []).append(
            (time.time() - frame.captured_at) * 1000.0)
        if self.source.live:
            self.report.lag_frames.append(self._lag(frame))
        self.report.paths[result.path] = self.report.paths.get(result.path, 0) + 1


def mask_origin(index: int, result) -> dict:
    """Where a frame's mask came from, for its record: `mask` fresh (refined on this frame) or
    carried (an earlier frame's mask moved along the motion), `mask_from` the frame it was
    refined on, `evidence_from` the frame whose evidence was blended into this one's (None:
    none was) and `carry_reset` why not."""
    carried = result.mask_from is not None
    return {"mask": "carried" if carried else "fresh",
            "mask_from": result.mask_from if carried else index,
            "evidence_from": result.evidence_from, "carry_reset": result.carry_reset}


def _close_quietly(sink: FrameSink) -> None:
    try:
        sink.close()
    except (RustsegError, OSError):
        pass  # the sink already failed; its error has been reported


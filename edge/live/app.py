"""`rustseg run` and `rustseg demo`: build source, model, refiner and outputs, run the loop.

A stop request (the CLI makes one of Ctrl-C and SIGTERM, a batch driver of its own Ctrl-C)
stops capture; frames already in flight are finished, then every output is closed in
`finally` (video files get their index and stay playable, the log is flushed and synced), and
the report names the reason. No output is allowed to write over a source file: that is checked
before anything is written. What happens is logged (logger `edge.live.app`); the CLI decides
what reaches the terminal.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from edge.config import Config
from edge.console.server import HttpFeedSink
from edge.live.notify import SystemdNotifySink
from edge.live.locate import open_locator
from edge.live.pipeline import LoopOptions, Pipeline, RunReport
from edge.method.segment import Segmenter, build_segmenter
from edge.outputs import FrameLineSink, JsonlLogSink, MaskFolderSink, open_output
from edge.outputs.footage_guard import check_no_overwrite
from edge.record.catalogue import new_record_folder
from edge.record.layout import RecordLayout
from edge.record.recorder import RunRecorder
from edge.sources import open_source
from edge.sources.telemetry.mavlink import check_telemetry_uri
from edge.stop_reason import StopRequest
from edge.untrusted import printable

log = logging.getLogger(__name__)
DEMO_RECORD = "demo_record"      # the demo's record folder, inside demo.out_dir
_SOURCE_WARNINGS_SHOWN = 5       # inputs passed over that are named, one line each


@dataclass(frozen=True)
class RunRequest:
    source: str
    outputs: tuple[str, ...]
    log: str | None = None
    save_masks: str | None = None
    headless: bool = False
    frame_lines: TextIO | None = None  # the per-frame line goes here (the CLI: stdout)
    record: str | None = None        # run record folder (edge/record/layout.py)
    replace_record: bool = False     # a folder holding an earlier record is emptied first
    record_root: str | None = None   # no `record`: a new record folder under this one
    telemetry: str | None = None     # live MAVLink (udpin:HOST:PORT or a serial device)

    def __post_init__(self) -> None:
        # It was `print_frames: bool` in this place; a bool here is a caller not yet updated.
        if isinstance(self.frame_lines, bool):
            raise TypeError("RunRequest.frame_lines is a text stream or None (the per-frame "
                            "line is a sink now), not a bool")


# What the caller wraps around the loop itself (not the start-up): the CLI's signal handlers.
LoopGuard = Callable[[StopRequest], AbstractContextManager]


def run_loop(config: Config, request: RunRequest, stop: StopRequest | None = None,
             guard: LoopGuard | None = None) -> RunReport:
    """Open everything, run the pipeline, close everything (in finally), return the report.
    With a record, its summary.json is written once every output is closed, however it ended.

    `guard(stop)` is entered just before the first frame and left after the last one."""
    segmenter = build_segmenter(config, allow_worker=True)
    new_folder = None
    if request.record_root and not request.record:
        new_folder = new_record_folder(Path(request.record_root))
        request = dataclasses.replace(request, record=str(new_folder))
    recorder = RunRecorder(RecordLayout(Path(request.record)), config, request.source,
                           request.replace_record) if request.record else None
    report, failure = None, None
    try:
        report = _run_pipeline(config, request, segmenter, recorder,
                               stop if stop is not None else StopRequest(), guard)
        return report
    except BaseException as exc:  # recorded in summary.json, then re-raised
        failure = exc
        raise
    finally:
        try:
            if recorder is not None and recorder.started_at is not None:
                try:
                    recorder.finish(report, failure)
                except OSError:
                    if failure is None:
                        raise  # the summary could not be written: not a success
                    # else the run's own failure is the one to report
        finally:
            if recorder is not None:
                recorder.release()  # after summary.json: the record is no longer live
            if new_folder is not None and (recorder is None or recorder.started_at is None):
                _remove_if_empty(new_folder)  # the source never opened: no record, no litter


def _remove_if_empty(folder: Path) -> None:
    """A service whose camera is missing restarts every few seconds; each try made a folder
    (and an empty findings/) for its record. Only empty folders are removed (rmdir), never a
    file, so no record can ever be lost here."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [folder]:
        try:
            path.rmdir()
        except OSError:
            pass  # a file, or a folder that holds one: kept


def record_run(source_uri: str, record_dir: str | os.PathLike, config: Config,
               stop: StopRequest | None = None, replace: bool = False) -> dict:
    """Record one run of `source_uri` into `record_dir` and return its summary.json.

    For callers in Python (`rustseg batch` workers); errors are raised as by `run_loop`. Once
    the source is open, summary.json says how the run ended whatever happens; a source that
    cannot be opened leaves the folder without run.json (RecordLayout.is_record() is False)."""
    request = RunRequest(source_uri, (), headless=True, record=str(record_dir),
                         replace_record=replace)
    run_loop(config, request, stop)
    return RecordLayout(Path(record_dir)).read_summary()


def _run_pipeline(config: Config, request: RunRequest, segmenter: Segmenter,
                  recorder: RunRecorder | None, stop: StopRequest,
                  guard: LoopGuard | None) -> RunReport:
    loop = config.loop
    with ExitStack() as stack:
        if segmenter.refine_worker is not None:  # started before the camera starts capturing
            stack.enter_context(segmenter.refine_worker)
        # push, not enter_context: closed on the way out, but not started (nothing written)
        # until the overwrite check below has passed. Built before the source: fail fast.
        if recorder is not None:  # before a sink makes its folder in there
            recorder.refuse_outputs_inside(paths=[request.log, request.save_masks])
        sinks = [stack.push(sink) for sink in _build_sinks(config, request)]
        if recorder is not None:
            recorder.refuse_outputs_inside(sinks)
            sinks += [stack.push(sink) for sink in recorder.sinks]
        if request.telemetry:
            check_telemetry_uri(request.telemetry)  # a typo fails before the source opens
        notify = SystemdNotifySink.from_environment()
        if notify is not None:  # last: its start() says READY=1 once everything else started
            sinks.append(stack.push(notify))
        log.info("opening source %s", printable(request.source))
        source = stack.enter_context(open_source(request.source, loop.loop_video,
                                                 loop.reconnect_timeout_s,
                                                 loop.reconnect_backoff_s))
        locator = open_locator(request.telemetry, source, config.telemetry)
        if locator is not None:
            stack.callback(locator.close)
        check_no_overwrite(source.input_files() + (locator.files() if locator else []),
                           sinks)  # before anything is written
        if recorder is not None:
            recorder.begin(source, segmenter)
            log.info("record %s: %.0f MB free, the video stops under %g MB (record.reserve_mb)",
                     printable(str(recorder.layout.root)), recorder.free_mb_at_start,
                     config.record.reserve_mb)
        for sink in sinks:
            sink.start()
        for sink in sinks:
            if sink.url:
                log.info("live page: %s", sink.url)
            for note in sink.notes:
                log.info("%s", note)
            for warning in sink.warnings:
                log.warning("%s", warning)
        options = LoopOptions(loop.frames, loop.queue_depth, loop.sink_error_policy,
                              config.overlay, locate=locator.locate if locator else None)
        log.info("model %s (%s, %d threads), refine %s, source %s", segmenter.model.path,
                 segmenter.model.runtime, config.model.threads, config.refine.mode,
                 printable(request.source))
        with guard(stop) if guard is not None else nullcontext():
            report = Pipeline(source, segmenter, sinks, options, stop).run()
        for warning in source.warnings[:_SOURCE_WARNINGS_SHOWN]:
            log.warning("skipped %s", printable(warning))
    return report


def _build_sinks(config: Config, request: RunRequest):
    """Every output the request names; building one checks it can write but writes nothing.
    Each sink is returned as soon as it is built, so that if a later one fails, the ones
    already built (a listening http server) are closed by the caller's ExitStack."""
    http_sink = functools.partial(HttpFeedSink.from_uri, settings=config.http,
                                  overlay=config.overlay)
    for uri in request.outputs:
        yield open_output(uri, config.loop.target_fps, request.headless, http_sink,
                          stream_settings=config.stream)
    if request.log:
        yield JsonlLogSink(Path(request.log))
    if request.save_masks:
        yield MaskFolderSink(Path(request.save_masks))
    if request.frame_lines is not None:
        yield FrameLineSink(request.frame_lines)


def demo_request(config: Config) -> RunRequest:
    """The demo records its run (replacing the previous demo's record) for `rustseg report`."""
    out = Path(config.demo.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return RunRequest(config.demo.source, (), headless=True, record=str(out / DEMO_RECORD),
                      replace_record=True)

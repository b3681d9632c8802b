"""`rustseg bench`: the pipeline's latency stage by stage, in the manner of TFLite's
benchmark_model: init time, first-frame time, warm-up, then N timed frames run one after the
other (the stage runner with overlap off, so each stage's own cost is measured), peak RSS, and
per-stage statistics. The refine worker process, when refine.worker = process, is the same one
the loop uses, so `refine` includes the process hop.

`--cpus N` pins the process (and so the refine worker it starts) to N of the cores it may use,
with os.sched_setaffinity, and runs TFLite and OpenCV with N threads: a small-device profile.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import resource
import sys
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path

import cv2

from edge.config import Config
from edge.data.imageio import list_images, read_image_bgr
from edge.errors import ConfigError, DataError, SourceError
from edge.live.overlay import HudStats, draw_overlay
from edge.live.stages import Stage, StageRunner
from edge.measure.progress import Progress
from edge.method.profiler import StageTimes, summarize
from edge.method.segment import Segmenter, build_segmenter
from edge.sources import open_source

BENCH_STAGES = ("decode", "preprocess", "invoke", "cam_upsample", "carry", "refine", "overlay",
                "total")
DEFAULT_SOURCE = "synthetic://?width=640&height=480&frames=0&seed=3"  # the demo clip


@dataclass(frozen=True)
class BenchRequest:
    source: str | None = None
    data: str | None = None
    frames: int = 300
    warmup: int = 10
    json_out: str | None = None
    csv_out: str | None = None
    cpus: int | None = None         # pin to this many cores (None: as started)


def cpu_model() -> str:
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text()
                      .splitlines() if ":" in line)
    except OSError:
        fields = {}
    fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
    for key in ("model name", "hardware", "cpu model"):  # x86, Raspberry Pi, others
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def pin_to_cpus(count: int) -> list[int]:
    """Pin this process to the first `count` cores it may run on and return them (read back).

    Children started afterwards (the refine worker) inherit the affinity."""
    allowed = sorted(os.sched_getaffinity(0))
    if not 1 <= count <= len(allowed):
        raise ConfigError(f"--cpus {count}: expected 1..{len(allowed)} (the cores this "
                          "process may use)")
    os.sched_setaffinity(0, allowed[:count])
    cv2.setNumThreads(count)
    return sorted(os.sched_getaffinity(0))


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


class _FrameFeed:
    """Frames for the bench: decoded from an image folder (decode = imread) or a source."""

    def __init__(self, request: BenchRequest) -> None:
        self.source = None
        if request.data:
            folder = Path(request.data)
            folder = folder / "images" if (folder / "images").is_dir() else folder
            if not folder.is_dir():
                raise DataError(f"--data {request.data}: not a folder of images")
            paths = list_images(folder)
            if not paths:
                raise DataError(f"--data {request.data}: no images found")
            self._paths = cycle(paths)
        else:
            self.source = open_source(request.source or DEFAULT_SOURCE, loop_video=True)
        self.describe = request.data or request.source or DEFAULT_SOURCE
        self.loops = 0              # times a finite source was restarted to supply enough frames
        self._frames_this_pass = 0

    def next(self):
        """(frame_bgr, its index in a source of consecutive frames, or None for a still)."""
        if self.source is None:
            return read_image_bgr(next(self._paths)), None
        while True:
            frame = self.source.read()
            if frame is not None:
                self._frames_this_pass += 1
                return frame.image, None if self.source.stills else frame.index
            if self.source.ended:
                self._restart()

    def _restart(self) -> None:
        """A finite source (a short clip, a folder) starts again, as image folders cycle."""
        if not self._frames_this_pass:
            raise SourceError(f"source {self.describe} gave no frame to measure")
        self.source.close()
        self.source = open_source(self.describe, loop_video=True)
        self.loops += 1
        self._frames_this_pass = 0

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


def run_bench(config: Config, request: BenchRequest) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    if request.cpus is not None:
        cpus = pin_to_cpus(request.cpus)
        config = config.replace({"model.threads": request.cpus})
    with ExitStack() as stack:
        # Start-up, the refine worker's spawn included, counts as init, not as frame time.
        init_started = time.perf_counter()
        segmenter = build_segmenter(config, allow_worker=True)
        worker = segmenter.refine_worker
        if worker is not None:
            stack.enter_context(worker)
        init_ms = (time.perf_counter() - init_started) * 1000
        worker_cpus = sorted(os.sched_getaffinity(worker.pid)) if worker is not None else None
        model = segmenter.model
        feed = stack.enter_context(closing(_FrameFeed(request)))
        measured = _Measured(request.warmup)
        progress = stack.enter_context(closing(Progress(request.warmup + request.frames,
                                                        "bench")))

        def consume(item: _BenchItem) -> None:
            measured.add(item)
            progress.update()

        started = time.perf_counter()
        StageRunner(live=False, overlap=False).run(
            _decoded(feed, request.warmup + request.frames),
            [Stage("infer", lambda item: _infer(segmenter, item)),
             Stage("refine", lambda item: _refine(segmenter, config, item), worker)],
            consume)
        wall_s = time.perf_counter() - started
    stages = {name: summarize(values) for name, values in measured.samples.items()}
    mean_total = stages["total"]["mean"] or 0.0
    report = {
        "model": str(model.path), "runtime": model.runtime, "threads": config.model.threads,
        "quantization": model.card.quantization if model.card else None,
        "contract": model.contract,
        "refine": config.refine.mode, "paths_used": measured.paths, "source": feed.describe,
        "refine_worker": "process" if worker is not None else "thread",
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "cpus": cpus,
        "worker_cpus": worker_cpus,
        "machine": platform.machine(),
        "frames": request.frames, "warmup": request.warmup, "source_loops": feed.loops,
        "init_ms": init_ms, "first_frame_ms": measured.first_frame_ms,
        "peak_rss_mb": peak_rss_mb(),
        "fps": 1000.0 / mean_total if mean_total else 0.0, "wall_s": wall_s, "stages": stages,
    }
    _write_outputs(report, request)
    return report


@dataclass
class _BenchItem:
    frame: object
    index: int | None       # position in a source of consecutive frames; None: a still
    times: StageTimes
    prediction: object = None
    result: object = None


class _Measured:
    """Per-stage samples of the frames after the warm-up."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.seen = warmup, 0
        self.samples: dict[str, list[float]] = {name: [] for name in BENCH_STAGES}
        self.paths: dict[str, int] = {}
        self.first_frame_ms = 0.0

    def add(self, item: _BenchItem) -> None:
        self.seen += 1
        times = item.times
        if self.seen == 1:
            self.first_frame_ms = times.total()
        if self.seen <= self.warmup:
            return
        for name in BENCH_STAGES[:-1]:
            if name in times.ms:
                self.samples[name].append(times.ms[name])
        self.samples["total"].append(times.total())
        path = item.result.path
        self.paths[path] = self.paths.get(path, 0) + 1


def _decoded(feed: _FrameFeed, count: int):
    for _ in range(count):
        times = StageTimes()
        with times.stage("decode"):
            frame, index = feed.next()
        yield _BenchItem(frame, index, times)


def _infer(segmenter: Segmenter, item: _BenchItem) -> _BenchItem:
    item.prediction = segmenter.infer(item.frame, item.times)
    return item


def _refine(segmenter: Segmenter, config: Config, item: _BenchItem) -> _BenchItem:
    frame, times = item.frame, item.times
    with times.stage("cam_upsample"):
        cam_frame = segmenter.model.cam_to_frame(item.prediction.cam01, frame.shape[:2])
    result = item.result = segmenter.refine(frame, item.prediction, times, item.index)
    with times.stage("overlay"):
        draw_overlay(frame, result.mask, config.overlay, cam_frame,
                     HudStats(0.0, dict(times.ms), result.score, result.corroded_fraction,
                              result.path, area_by_state=result.area_by_state), result.state)
    segmenter.observe_frame(times)
    return item


def _write_outputs(report: dict, request: BenchRequest) -> None:
    if request.json_out:
        Path(request.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(request.json_out).write_text(json.dumps(report, indent=2) + "\n")
    if request.csv_out:
        Path(request.csv_out).parent.mkdir(parents=True, exist_ok=True)
        with open(request.csv_out, "w", newline="") as handle:
            writer = csv.writer(handle)
            keys = ["count", "mean", "std", "min", "p50", "p90", "p95", "p99", "max"]
            writer.writerow(["stage", *keys])
            for name, s in report["stages"].items():
                writer.writerow([name, *[s[k] for k in keys]])


def format_bench(report: dict) -> str:
    lines = [f"model {report['model']} ({report['quantization']}) on {report['runtime']}, "
             f"{report['threads']} threads, refine {report['refine']} {report['paths_used']}",
             f"cpu {report['cpu']} x{report['cpu_count']}, pinned to {report['cpus']}; refine "
             f"worker: {report['refine_worker']}; source {report['source']}",
             f"init {report['init_ms']:.1f} ms, first frame {report['first_frame_ms']:.1f} ms, "
             f"peak RSS {report['peak_rss_mb']:.1f} MB; {report['frames']} frames after "
             f"{report['warmup']} warm-up: {report['fps']:.1f} FPS (1000 / mean total)"
             + (f"; the source was restarted {report['source_loops']} time(s) to supply them"
                if report["source_loops"] else ""),
             f"{'stage':<13}" + "".join(f"{k:>9}" for k in ("count", "mean", "std", "min",
                                                            "p50", "p90", "p95", "p99", "max"))]
    for name in BENCH_STAGES:
        s = report["stages"][name]
        if not s["count"]:
            why = "every frame scored below threshold" if name == "refine" else "off"
            lines.append(f"{name:<13}{0:>9}   (not run: {why})")
            continue
        lines.append(f"{name:<13}{s['count']:>9}" + "".join(
            f"{s[k]:>9.2f}" for k in ("mean", "std", "min", "p50", "p90", "p95", "p99", "max")))
    return "\n".join(lines)

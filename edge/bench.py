"""`rustseg bench`: the pipeline's latency stage by stage, in the manner of TFLite's
benchmark_model: init time, first-frame time, warm-up, then N timed frames run one after the
other (no overlap, so each stage's own cost is measured), peak RSS, and per-stage statistics.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path

from edge.config import Config, resolve_resource
from edge.errors import DataError, SourceError
from edge.imageio import list_images, read_image_bgr
from edge.overlay import HudStats, draw_overlay
from edge.profiler import StageTimes, summarize
from edge.progress import Progress
from edge.segment import Segmenter, build_segmenter
from edge.sources import open_source

BENCH_STAGES = ("decode", "preprocess", "invoke", "cam_upsample", "refine", "overlay", "total")
DEFAULT_SOURCE = "synthetic://?width=640&height=480&frames=0&seed=3"  # the demo clip


@dataclass(frozen=True)
class BenchRequest:
    source: str | None = None
    data: str | None = None
    frames: int = 300
    warmup: int = 10
    json_out: str | None = None
    csv_out: str | None = None


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
        if self.source is None:
            return read_image_bgr(next(self._paths))
        while True:
            frame = self.source.read()
            if frame is not None:
                self._frames_this_pass += 1
                return frame.image
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
    init_started = time.perf_counter()
    segmenter = build_segmenter(config)
    model = segmenter.model
    init_ms = (time.perf_counter() - init_started) * 1000
    feed = _FrameFeed(request)
    samples: dict[str, list[float]] = {name: [] for name in BENCH_STAGES}
    paths: dict[str, int] = {}
    first_frame_ms = 0.0
    progress = Progress(request.warmup + request.frames, "bench")
    started = time.perf_counter()
    try:
        for i in range(request.warmup + request.frames):
            times, result = _one_frame(feed, segmenter, config)
            progress.update()
            if i == 0:
                first_frame_ms = times.total()
            if i < request.warmup:
                continue
            for name in BENCH_STAGES[:-1]:
                if name in times.ms:
                    samples[name].append(times.ms[name])
            samples["total"].append(times.total())
            paths[result.path] = paths.get(result.path, 0) + 1
    finally:
        progress.close()
        feed.close()
    wall_s = time.perf_counter() - started
    stages = {name: summarize(values) for name, values in samples.items()}
    mean_total = stages["total"]["mean"] or 0.0
    report = {
        "model": str(model.path), "runtime": model.runtime, "threads": config.model.threads,
        "quantization": model.card.quantization if model.card else None,
        "contract": model.contract,
        "refine": config.refine.mode, "paths_used": paths, "source": feed.describe,
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "frames": request.frames, "warmup": request.warmup, "source_loops": feed.loops,
        "init_ms": init_ms, "first_frame_ms": first_frame_ms, "peak_rss_mb": peak_rss_mb(),
        "fps": 1000.0 / mean_total if mean_total else 0.0, "wall_s": wall_s, "stages": stages,
    }
    _write_outputs(report, request)
    return report


def _one_frame(feed: _FrameFeed, segmenter: Segmenter, config: Config):
    times = StageTimes()
    with times.stage("decode"):
        frame = feed.next()
    prediction = segmenter.infer(frame, times)
    with times.stage("cam_upsample"):
        cam_frame = segmenter.model.cam_to_frame(prediction.cam01, frame.shape[:2])
    result = segmenter.refine(frame, prediction, times)
    with times.stage("overlay"):
        draw_overlay(frame, result.mask, config.overlay, cam_frame,
                     HudStats(0.0, dict(times.ms), result.score, result.corroded_fraction,
                              result.path))
    return times, result


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
             f"cpu {report['cpu']} x{report['cpu_count']}; source {report['source']}",
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
            lines.append(f"{name:<13}{0:>9}   (not run: every frame scored below threshold)")
            continue
        lines.append(f"{name:<13}{s['count']:>9}" + "".join(
            f"{s[k]:>9.2f}" for k in ("mean", "std", "min", "p50", "p90", "p95", "p99", "max")))
    return "\n".join(lines)

"""`rustseg bench`: the pipeline's latency stage by stage, in the manner of TFLite's
benchmark_model: init time, the interpreter's warm-up, first-frame time, warm-up frames, then N
timed frames, peak RSS, and per-stage statistics.

It runs `rustseg run`'s own frame recipe (edge/live/pipeline.py `Pipeline`: capture, infer,
refine, draw, the same functions), with the stage runner's overlap off so each stage's own
cost is measured with nothing competing, and with one sink that takes the frames' records
instead of outputs. The refine worker process, when refine.worker = process, is the same one
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
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from edge.config import Config
from edge.errors import ConfigError, DataError, SourceError
from edge.live.pipeline import FRAME_STAGES, LoopOptions, Pipeline
from edge.method.profiler import summarize
from edge.method.segment import build_segmenter
from edge.outputs import FrameSink, OutputFrame
from edge.sources import Frame, FrameSource, open_source

# The loop's own stages ("capture" decodes the file or the image), and their sum.
BENCH_STAGES = (*FRAME_STAGES, "total")
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


class _Cycling(FrameSource):
    """A finite source (a short clip, a folder) started again whenever it ends, so that any
    number of frames can be measured."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri
        self.inner = open_source(uri, loop_video=True)
        self.live, self.stills = self.inner.live, self.inner.stills  # run treats them so
        self.loops = 0              # times it was restarted to supply enough frames
        self._frames_this_pass = 0

    def read(self) -> Frame | None:
        while True:
            frame = self.inner.read()
            if frame is not None:
                self._frames_this_pass += 1
                self.dropped, self.latest_index = self.inner.dropped, self.inner.latest_index
                return frame
            if not self.inner.ended:
                return None  # a live source with nothing new yet
            if not self._frames_this_pass:
                raise SourceError(f"source {self.uri} gave no frame to measure")
            self.inner.close()
            self.inner = open_source(self.uri, loop_video=True)
            self.loops += 1
            self._frames_this_pass = 0

    def close(self) -> None:
        self.inner.close()
        super().close()


def _bench_source_uri(request: BenchRequest) -> str:
    if not request.data:
        return request.source or DEFAULT_SOURCE
    folder = Path(request.data)
    folder = folder / "images" if (folder / "images").is_dir() else folder
    if not folder.is_dir():
        raise DataError(f"--data {request.data}: not a folder of images")
    return str(folder)


class _Measured(FrameSink):
    """Takes each frame's record: per-stage samples of the frames after the warm-up frames."""

    is_output = False

    def __init__(self, warmup: int, progress: tqdm) -> None:
        self.name = "bench"
        self.warmup, self.seen, self.progress = warmup, 0, progress
        self.samples: dict[str, list[float]] = {name: [] for name in BENCH_STAGES}
        self.paths: dict[str, int] = {}
        self.first_frame_ms = 0.0

    def write(self, frame: OutputFrame) -> None:
        self.seen += 1
        self.progress.update()
        ms = frame.record.ms
        if self.seen == 1:
            self.first_frame_ms = sum(ms.values())
        if self.seen <= self.warmup:
            return
        for name in BENCH_STAGES[:-1]:
            if name in ms:
                self.samples[name].append(ms[name])
        self.samples["total"].append(sum(ms.values()))
        path = frame.record.path
        self.paths[path] = self.paths.get(path, 0) + 1


def run_bench(config: Config, request: BenchRequest) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    if request.cpus is not None:
        cpus = pin_to_cpus(request.cpus)
        config = config.replace({"model.threads": request.cpus})
    uri = _bench_source_uri(request)
    with ExitStack() as stack:
        # Start-up, the refine worker's spawn included, counts as init, not as frame time.
        init_started = time.perf_counter()
        segmenter = build_segmenter(config, allow_worker=True)
        worker = segmenter.refine_worker
        if worker is not None:
            stack.enter_context(worker)
        init_ms = (time.perf_counter() - init_started) * 1000
        worker_cpus = sorted(os.sched_getaffinity(worker.pid)) if worker is not None else None
        source = stack.enter_context(_Cycling(uri))
        progress = stack.enter_context(tqdm(total=request.warmup + request.frames, desc="bench",
                                            unit="frame", dynamic_ncols=True))
        measured = _Measured(request.warmup, progress)
        options = LoopOptions(frames=request.warmup + request.frames, overlay=config.overlay,
                              overlap=False)
        run = Pipeline(source, segmenter, [measured], options).run()
    model = segmenter.model
    stages = {name: summarize(values) for name, values in measured.samples.items()}
    mean_total = stages["total"]["mean"] or 0.0
    report = {
        "model": str(model.path), "runtime": model.runtime, "threads": config.model.threads,
        "quantization": model.card.quantization if model.card else None,
        "contract": model.contract,
        "refine": config.refine.mode, "paths_used": measured.paths, "source": uri,
        "refine_worker": "process" if worker is not None else "thread",
        "cpu": cpu_model(), "cpu_count": os.cpu_count(), "cpus": cpus,
        "worker_cpus": worker_cpus,
        "machine": platform.machine(),
        "frames": request.frames, "warmup": request.warmup, "source_loops": source.loops,
        "init_ms": init_ms, "warmup_ms": run.warmup_ms,
        "first_frame_ms": measured.first_frame_ms,
        "peak_rss_mb": peak_rss_mb(),
        "fps": 1000.0 / mean_total if mean_total else 0.0, "wall_s": run.wall_s,
        "stages": stages,
    }
    _write_outputs(report, request)
    return report


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
             f"init {report['init_ms']:.1f} ms, interpreter warm-up {report['warmup_ms']:.1f} ms"
             f", first frame {report['first_frame_ms']:.1f} ms, "
             f"peak RSS {report['peak_rss_mb']:.1f} MB; {report['frames']} frames after "
             f"{report['warmup']} warm-up: {report['fps']:.1f} FPS (1000 / mean total)"
             + (f"; the source was restarted {report['source_loops']} time(s) to supply them"
                if report["source_loops"] else ""),
             f"{'stage':<13}" + "".join(f"{k:>9}" for k in ("count", "mean", "std", "min",
                                                            "p50", "p90", "p95", "p99", "max"))]
    for name in BENCH_STAGES:
        s = report["stages"][name]
        if not s["count"]:
            lines.append(f"{name:<13}{0:>9}   (not run: no frame needed it; refine and "
                         "states run only when the mask gate opens, states only for v3 models)")
            continue
        lines.append(f"{name:<13}{s['count']:>9}" + "".join(
            f"{s[k]:>9.2f}" for k in ("mean", "std", "min", "p50", "p90", "p95", "p99", "max")))
    return "\n".join(lines)

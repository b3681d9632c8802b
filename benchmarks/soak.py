"""Soak: many synthetic frames through the whole loop at full speed, watching for leaks.

Reports RSS after warm-up and at the end (growth must stay under 20 MB), the thread count
before and after (must not grow), and the frame accounting (read == processed + dropped).
Outputs are a JSONL log and a counting sink, so disk speed does not set the pace.

    python benchmarks/soak.py --frames 20000 --json benchmarks/results/soak.json   (make soak)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.config import load_config  # noqa: E402
from edge.live.app import build_segmenter  # noqa: E402
from edge.live.pipeline import LoopOptions, Pipeline  # noqa: E402
from edge.outputs import FrameSink, JsonlLogSink, OutputFrame  # noqa: E402
from edge.sources import open_source  # noqa: E402

_WARMUP_FRAMES = 200
_MAX_RSS_GROWTH_MB = 20.0


def rss_mb() -> float:
    """Resident set size now (not the peak), from /proc."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


class _CountingSink(FrameSink):
    """Counts frames and samples RSS once the warm-up is over."""

    name = "counter"

    def __init__(self) -> None:
        self.count = 0
        self.rss_after_warmup: float | None = None
        self.threads_after_warmup: int | None = None

    def write(self, frame: OutputFrame) -> None:
        self.count += 1
        if self.count == _WARMUP_FRAMES:
            self.rss_after_warmup = rss_mb()
            self.threads_after_warmup = threading.active_count()


def soak(frames: int, refine: str = "light", width: int = 640, height: int = 480) -> dict:
    config = load_config(overrides={"refine.mode": refine, "loop.frames": frames})
    threads_before = threading.active_count()
    segmenter = build_segmenter(config)
    counter = _CountingSink()
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "soak.jsonl"
        # frames=0: the clip repeats, so the source never ends before --frames does.
        with open_source(f"synthetic://?width={width}&height={height}&frames=0&seed=3") \
                as source, JsonlLogSink(log_path) as log:
            options = LoopOptions(frames=frames, queue_depth=config.loop.queue_depth,
                                  overlay=config.overlay, print_frames=False)
            report = Pipeline(source, segmenter, [counter, log], options).run()
        log_lines = sum(1 for _ in log_path.open())
    rss_end = rss_mb()
    start = counter.rss_after_warmup if counter.rss_after_warmup is not None else rss_end
    result = {
        "frames_requested": frames, "refine": refine, "frame_size": [width, height],
        "frames_read": report.frames_read, "frames_processed": report.frames_processed,
        "dropped": report.dropped, "log_lines": log_lines, "sink_count": counter.count,
        "accounting_exact": report.frames_read == report.frames_processed + report.dropped
        == log_lines + report.dropped,
        "rss_after_warmup_mb": start, "rss_end_mb": rss_end, "rss_growth_mb": rss_end - start,
        "threads_before": threads_before, "threads_after_warmup": counter.threads_after_warmup,
        "threads_after": threading.active_count(), "fps": report.fps, "wall_s": report.wall_s,
    }
    result["passed"] = bool(result["accounting_exact"] and
                            result["rss_growth_mb"] < _MAX_RSS_GROWTH_MB and
                            result["threads_after"] <= result["threads_before"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--refine", default="light")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    result = soak(args.frames, args.refine)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

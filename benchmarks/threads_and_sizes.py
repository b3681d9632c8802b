"""(e) Threads 1/2/4 x frame sizes 320x240, 640x480, 1280x720: `rustseg bench` figures with
the light refine path (fixed, so every row does the same work) on the synthetic moving-camera
clip of the demo (seed 3, rust in most frames).
"""

from __future__ import annotations

from common import bar_plot, save

SIZES = ((320, 240), (640, 480), (1280, 720))
THREADS = (1, 2, 4)


def main() -> None:
    from edge.config import load_config
    from edge.measure.bench import BenchRequest, run_bench

    rows = []
    for width, height in SIZES:
        for threads in THREADS:
            config = load_config(overrides={"model.threads": threads, "refine.mode": "light"})
            report = run_bench(config, BenchRequest(
                f"synthetic://?width={width}&height={height}&frames=0&seed=3", None, 100, 10))
            row = {"size": f"{width}x{height}", "threads": threads, "fps": report["fps"],
                   "total_p50_ms": report["stages"]["total"]["p50"],
                   "invoke_p50_ms": report["stages"]["invoke"]["p50"],
                   "refine_p50_ms": report["stages"]["refine"]["p50"],
                   "refine": report["refine"], "paths_used": report["paths_used"]}
            rows.append(row)
            print(row)
    save("threads_and_sizes", {"frames": 100, "warmup": 10, "rows": rows})
    bar_plot("threads_and_sizes", [f"{r['size']} t{r['threads']}" for r in rows],
             [r["fps"] for r in rows], "FPS (sequential stages)",
             "rustseg bench by frame size and TFLite threads")


if __name__ == "__main__":
    main()

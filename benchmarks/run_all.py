"""`make bench`: every benchmark suite in turn; each writes benchmarks/results/NAME.json/.png."""

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITES = ("cam_vs_gradienttape", "cam_overhead", "quantization", "refine_paths", "quality",
          "gate_choice", "threads_and_sizes", "live_loop", "device_profile", "h264_stream")

if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    for suite in SUITES:
        print(f"== {suite}", flush=True)
        runpy.run_path(str(HERE / f"{suite}.py"), run_name="__main__")

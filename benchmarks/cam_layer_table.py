"""Choose the CAM layer and input size by measurement (needs the train extra).

For every (layer, input size) pair: export a float32 TFLite model with the CAM at that layer,
run it through the edge runtime on the `tune` part of an images+masks folder, and measure
- pooled IoU of the upsampled CAM thresholded at 0.1 .. 0.7 (masks are used for evaluation
  only; no score gating, so this is pure localisation quality), and
- ms per invoke (median, 1 thread, after warm-up).

    python benchmarks/cam_layer_table.py --model runs/default/model.keras \
        --data ../shared/data/vt_corrosion/train --out benchmarks/results/cam_layer_table

Writes OUT.json and OUT.md (a table); the best trade-off becomes export.cam_layer in config.yaml.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_report  # noqa: E402

from converter.export import ExportRequest, export  # noqa: E402
from edge.data.datasets import find_masked_images  # noqa: E402
from edge.data.imageio import read_image_bgr, read_mask  # noqa: E402
from edge.measure.metrics import SegmentationTally  # noqa: E402
from edge.method.model import CorrosionModel  # noqa: E402

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
DEFAULT_LAYERS = ("out_relu", "block_13_expand_relu", "block_12_add", "block_10_expand_relu",
                  "block_6_expand_relu", "block_5_add")
_WARMUP, _TIMED = 5, 30


def measure(model_path: Path, pairs) -> dict:
    model = CorrosionModel(model_path, threads=1)
    tallies = {t: SegmentationTally() for t in THRESHOLDS}
    for pair in pairs:
        frame, truth = read_image_bgr(pair.image), read_mask(pair.mask)
        prediction = model.predict(frame)
        cam = model.cam_to_frame(prediction.cam01, frame.shape[:2])
        for threshold, tally in tallies.items():
            tally.add(cam >= threshold, truth)
    image = model.preprocess(read_image_bgr(pairs[0].image))
    for _ in range(_WARMUP):
        model.infer(image)
    times = []
    for _ in range(_TIMED):
        started = time.perf_counter()
        model.infer(image)
        times.append((time.perf_counter() - started) * 1000)
    ious = {f"{t:.1f}": tallies[t].summary()["pooled_iou"] for t in THRESHOLDS}
    best = max(ious, key=ious.get)
    return {"cam_size": list(model.cam_hw), "pooled_iou_by_threshold": ious,
            "best_threshold": float(best), "best_pooled_iou": ious[best],
            "pooled_iou_at_0.5": ious["0.5"], "ms_per_invoke_p50": float(np.median(times))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="trained NAME.keras")
    parser.add_argument("--data", default="../shared/data/vt_corrosion/train")
    parser.add_argument("--split", default="tune", choices=("all", "tune", "holdout"))
    parser.add_argument("--holdout-fraction", type=float, default=0.25)
    parser.add_argument("--layers", nargs="+", default=list(DEFAULT_LAYERS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[224, 320])
    parser.add_argument("--out", default="benchmarks/results/cam_layer_table")
    args = parser.parse_args()

    pairs = find_masked_images(args.data, args.split, args.holdout_fraction)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            for layer in args.layers:
                path = Path(scratch) / f"{layer}_{size}.tflite"
                export(ExportRequest(args.model, str(path), "float32", layer, size,
                                     verify_images=0))
                row = {"layer": layer, "input_size": size, **measure(path, pairs)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    report = {"model": args.model, "data": args.data, "split": args.split,
              "n_images": len(pairs), "machine": platform.processor() or platform.machine(),
              "rows": rows}
    lines = [f"CAM layer x input size on {args.data} ({args.split}, {len(pairs)} images); pooled "
             "IoU of the thresholded, upsampled CAM; ms per invoke p50 (1 thread)", "",
             "| layer | input | cam | IoU@0.5 | best IoU (thr) | ms/invoke |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['input_size']} | {r['cam_size'][0]}x{r['cam_size'][1]}"
                     f" | {r['pooled_iou_at_0.5']:.3f} | {r['best_pooled_iou']:.3f} "
                     f"({r['best_threshold']:.1f}) | {r['ms_per_invoke_p50']:.2f} |")
    write_report(args.out, report, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

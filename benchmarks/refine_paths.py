"""(c) The refine paths none / light / full / auto: pooled IoU and latency on the held-back
part of vt_corrosion/train (never used for training or tuning), one rustseg eval per path.
"""

from __future__ import annotations

from common import DEFAULT_TFLITE, SHARED_DATA, bar_plot, save


def main() -> None:
    from edge.config import load_config
    from edge.measure.evaluate import EvalRequest, evaluate
    from edge.method.gate import MaskGate
    from edge.method.model import CorrosionModel
    from edge.method.refine.factory import make_refiner
    from edge.method.refine.registry import REFINE_MODES
    from edge.method.segment import Segmenter

    data = SHARED_DATA / "vt_corrosion" / "train"
    if not data.is_dir():
        raise SystemExit(f"skipped: {data} is not available")
    config = load_config()
    model = CorrosionModel(DEFAULT_TFLITE, config.model.threads)
    rows = {}
    for mode in REFINE_MODES:
        segmenter = Segmenter(model, make_refiner(mode, config.refine, config.loop.target_fps),
                              MaskGate.from_config(model.threshold, config.gate))
        rows[mode] = evaluate(segmenter, EvalRequest(str(data), None, "holdout",
                                                     config.data.holdout_fraction))
        print(mode, rows[mode]["pooled_iou"], rows[mode]["ms_per_image"])
    from tune_refine import baselines, load_samples
    from edge.data.datasets import find_masked_images
    holdout = find_masked_images(data, "holdout", config.data.holdout_fraction)
    report = {"model": str(DEFAULT_TFLITE), "data": str(data), "split": "holdout",
              "baselines": baselines(load_samples(model, holdout)),
              "frame_size": "512x512", "threads": config.model.threads, "paths": rows,
              "light_over_full_iou": rows["light"]["pooled_iou"] / max(rows["full"]["pooled_iou"], 1e-9),
              "full_over_light_time": rows["full"]["ms_per_image"] / rows["light"]["ms_per_image"]}
    save("refine_paths", report)
    bar_plot("refine_paths", list(rows), [r["pooled_iou"] for r in rows.values()],
             "pooled IoU (holdout)", "Refine paths on vt_corrosion holdout")


if __name__ == "__main__":
    main()

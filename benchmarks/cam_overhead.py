"""(b) What the in-graph CAM (and the seg head) cost: invokes of a plain classifier, of the v1
graph (score + CAM), of the same graph with the CAM by GradientTape instead of the closed form
(the cost before issue 13), and of the shipped graph (score + CAM + seg for a contract v2 model).

All are exported from the same Keras model at the same input size and quantisation, and timed
in the same run, interleaved (one invoke of each per round, rotating order), so a busy spell of
the shared machine hits every variant alike. The ratios of median invoke times are the CAM
overhead (target <= 1.05x) and the seg overhead (v2 vs v1, target <= 1.5x).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from common import (DEFAULT_KERAS, DEFAULT_TFLITE, bar_plot, interleaved_median_ms,
                    invoke_functions, real_images, save)

_INVOKES = 300   # timed invokes per variant and thread count
_WARMUP = 30


def main() -> None:
    import keras

    from converter.export import build_cam_function, build_score_function, convert
    from converter.student import has_head, without_head
    from edge.method.model import load_interpreter_class

    card = json.loads(DEFAULT_TFLITE.with_suffix(".json").read_text())
    size, quant, layer = card["input_size"][0], card["quantization"], card["cam_layer"]
    model = keras.models.load_model(DEFAULT_KERAS)
    classifier = without_head(model) if has_head(model) else model
    interpreter_class, runtime = load_interpreter_class("auto")
    image = real_images(1, size)[0:1]
    with tempfile.TemporaryDirectory() as scratch:
        def exported(name, frozen):
            path = Path(scratch) / f"{name}.tflite"
            path.write_bytes(convert(frozen, quant, None))
            return path

        variants = {"plain_classifier": exported("plain", build_score_function(model, size)),
                    "score_and_cam": exported("v1", build_cam_function(classifier, layer, size)),
                    "score_and_cam_tape": exported("tape", build_cam_function(
                        classifier, layer, size, closed_form=False))}
        if has_head(model):
            variants["score_cam_and_seg"] = DEFAULT_TFLITE
        rows = {}
        for threads in (1, 2):
            invokes = invoke_functions(interpreter_class, variants, threads, image)
            row = interleaved_median_ms(invokes, _INVOKES, _WARMUP)
            row["cam_overhead_ratio"] = row["score_and_cam"] / row["plain_classifier"]
            row["tape_cam_overhead_ratio"] = row["score_and_cam_tape"] / row["plain_classifier"]
            if "score_cam_and_seg" in row:
                row["seg_overhead_ratio_v2_over_v1"] = (row["score_cam_and_seg"]
                                                        / row["score_and_cam"])
            rows[f"threads_{threads}"] = row
        sizes = {f"{name}_bytes": path.stat().st_size for name, path in variants.items()}
    report = {"model": str(DEFAULT_TFLITE), "cam_layer": layer, "input_size": size,
              "quantization": quant, "runtime": runtime, "invokes_per_variant": _INVOKES,
              "timing": "interleaved rounds, median", "load_average": os.getloadavg(),
              "ms_per_invoke_median": rows, **sizes,
              "target": "CAM overhead <= 1.05x a plain classifier invoke; v2 (with seg) <= 1.5x "
                        "the v1 invoke"}
    save("cam_overhead", report)
    names = list(variants)
    labels = [f"{name} ({t.replace('threads_', '')} thr)" for t in rows for name in names]
    values = [rows[t][name] for t in rows for name in names]
    bar_plot("cam_overhead", labels, values, "ms per invoke (median)",
             "Plain classifier vs score + Grad-CAM++ (+ seg) in one invoke")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""(b) What the in-graph CAM (and the seg head) cost: invokes of a plain classifier, of the v1
graph (score + CAM) and of the shipped graph (score + CAM + seg for a contract v2 model).

All are exported from the same Keras model at the same input size and quantisation; the
ratios of median invoke times, measured in the same run, are the CAM overhead and the seg
overhead (v2 vs v1, target <= 1.5x).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from common import DEFAULT_KERAS, DEFAULT_TFLITE, bar_plot, median_ms, real_images, save


def main() -> None:
    import keras

    from converter.export import build_cam_function, build_score_function, convert
    from converter.student import has_head, without_head
    from edge.runtime import load_interpreter_class

    card = json.loads(DEFAULT_TFLITE.with_suffix(".json").read_text())
    size, quant = card["input_size"][0], card["quantization"]
    model = keras.models.load_model(DEFAULT_KERAS)
    interpreter_class, runtime = load_interpreter_class("auto")
    image = real_images(1, size)[0:1]
    with tempfile.TemporaryDirectory() as scratch:
        plain_path = Path(scratch) / "plain.tflite"
        plain_path.write_bytes(convert(build_score_function(model, size), quant, None))
        variants = [("plain_classifier", plain_path)]
        if has_head(model):
            v1_path = Path(scratch) / "v1.tflite"
            v1_path.write_bytes(convert(build_cam_function(without_head(model), card["cam_layer"],
                                                           size), quant, None))
            variants += [("score_and_cam", v1_path), ("score_cam_and_seg", DEFAULT_TFLITE)]
        else:
            variants += [("score_and_cam", DEFAULT_TFLITE)]
        rows = {}
        for threads in (1, 2):
            row = {}
            for name, path in variants:
                interpreter = interpreter_class(model_path=str(path), num_threads=threads)
                interpreter.allocate_tensors()
                index = interpreter.get_input_details()[0]["index"]

                def invoke(i=interpreter, k=index):
                    i.set_tensor(k, image)
                    i.invoke()
                row[name] = median_ms(invoke, 300, 30)
            row["cam_overhead_ratio"] = row["score_and_cam"] / row["plain_classifier"]
            if "score_cam_and_seg" in row:
                row["seg_overhead_ratio_v2_over_v1"] = row["score_cam_and_seg"] / row["score_and_cam"]
            rows[f"threads_{threads}"] = row
        sizes = {f"{name}_bytes": path.stat().st_size for name, path in variants}
    report = {"model": str(DEFAULT_TFLITE), "cam_layer": card["cam_layer"], "input_size": size,
              "quantization": quant, "runtime": runtime, "ms_per_invoke_median": rows, **sizes,
              "target": "CAM overhead <= 1.15x a plain classifier invoke; v2 (with seg) <= 1.5x "
                        "the v1 invoke"}
    save("cam_overhead", report)
    names = [name for name, _ in variants]
    labels = [f"{name} ({t.replace('threads_', '')} thr)" for t in rows for name in names]
    values = [rows[t][name] for t in rows for name in names]
    bar_plot("cam_overhead", labels, values, "ms per invoke (median)",
             "Plain classifier vs score + Grad-CAM++ (+ seg) in one invoke")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

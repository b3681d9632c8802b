"""(b) What the in-graph CAM costs: the CAM model's invoke vs a plain classifier's invoke.

Both are exported from the same Keras model at the same input size and quantisation; the
ratio of median invoke times, measured in the same run, is the CAM overhead.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from common import DEFAULT_KERAS, DEFAULT_TFLITE, bar_plot, median_ms, real_images, save


def main() -> None:
    import keras

    from converter.export import build_score_function, convert
    from edge.runtime import load_interpreter_class

    card = json.loads(DEFAULT_TFLITE.with_suffix(".json").read_text())
    size, quant = card["input_size"][0], card["quantization"]
    model = keras.models.load_model(DEFAULT_KERAS)
    interpreter_class, runtime = load_interpreter_class("auto")
    image = real_images(1, size)[0:1]
    with tempfile.TemporaryDirectory() as scratch:
        plain_path = Path(scratch) / "plain.tflite"
        plain_path.write_bytes(convert(build_score_function(model, size), quant, None))
        rows = {}
        for threads in (1, 2):
            row = {}
            for name, path in (("plain_classifier", plain_path), ("score_and_cam", DEFAULT_TFLITE)):
                interpreter = interpreter_class(model_path=str(path), num_threads=threads)
                interpreter.allocate_tensors()
                index = interpreter.get_input_details()[0]["index"]

                def invoke(i=interpreter, k=index):
                    i.set_tensor(k, image)
                    i.invoke()
                row[name] = median_ms(invoke, 300, 30)
            row["cam_overhead_ratio"] = row["score_and_cam"] / row["plain_classifier"]
            rows[f"threads_{threads}"] = row
        sizes = {"plain_classifier_bytes": plain_path.stat().st_size,
                 "score_and_cam_bytes": DEFAULT_TFLITE.stat().st_size}
    report = {"model": str(DEFAULT_TFLITE), "cam_layer": card["cam_layer"], "input_size": size,
              "quantization": quant, "runtime": runtime, "ms_per_invoke_median": rows, **sizes,
              "target": "CAM overhead <= 1.15x a plain classifier invoke"}
    save("cam_overhead", report)
    labels = [f"{name} ({t.replace('threads_', '')} thr)" for t in rows
              for name in ("plain_classifier", "score_and_cam")]
    values = [rows[t][name] for t in rows for name in ("plain_classifier", "score_and_cam")]
    bar_plot("cam_overhead", labels, values, "ms per invoke (median)",
             "Plain classifier vs score + Grad-CAM++ in one invoke")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

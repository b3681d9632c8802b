"""(d) Quantisation variants of the shipped Keras model: file size, invoke latency, and score
and CAM fidelity against the float reference (same images, same run).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from common import DEFAULT_KERAS, DEFAULT_TFLITE, SHARED_DATA, bar_plot, median_ms, real_images, save


def main() -> None:
    import keras

    from converter.export import ExportRequest, export, fidelity
    from edge.runtime import CorrosionModel

    card = json.loads(DEFAULT_TFLITE.with_suffix(".json").read_text())
    layer, size = card["cam_layer"], card["input_size"][0]
    model = keras.models.load_model(DEFAULT_KERAS)
    rep = SHARED_DATA / "corrosion_cls" / "train"
    images = real_images(24, size, seed=9)
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for quant in ("float32", "float16", "dynamic", "int8"):
            path = Path(scratch) / f"{quant}.tflite"
            export(ExportRequest(str(DEFAULT_KERAS), str(path), quant, layer, size,
                                 rep_data=str(rep) if rep.is_dir() else None,
                                 rep_images=100, verify_images=0))
            runtime = CorrosionModel(path, threads=1)
            row = {"bytes": path.stat().st_size,
                   "ms_per_invoke_median": median_ms(lambda: runtime.invoke_rgb(images[0]),
                                                     200, 20),
                   **fidelity(model, layer, path, images)}
            rows[quant] = row
            print(quant, json.dumps(row))
    report = {"model": str(DEFAULT_KERAS), "cam_layer": layer, "input_size": size,
              "threads": 1, "variants": rows,
              "images": "corrosion_cls/validation" if rep.is_dir() else "synthetic"}
    save("quantization", report)
    bar_plot("quantization", list(rows), [r["ms_per_invoke_median"] for r in rows.values()],
             "ms per invoke (median, 1 thread)", "Quantisation variants (score + CAM model)")


if __name__ == "__main__":
    main()

"""(d) Quantisation variants of the shipped Keras model: file size, invoke latency, and score
and CAM fidelity against the float reference (same images, same run).

Calibration (int8) uses corrosion_cls/train; fidelity is measured on corrosion_cls/validation
photos. Invokes of the variants are timed interleaved, so their ratios share the machine's mood.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from common import (DEFAULT_KERAS, DEFAULT_TFLITE, SHARED_DATA, bar_plot, interleaved_median_ms,
                    real_images, save)

_QUANTS = ("float32", "float16", "dynamic", "int8")


def main() -> None:
    import keras

    from converter.export import ExportRequest, export, fidelity
    from edge.method.model import CorrosionModel

    card = json.loads(DEFAULT_TFLITE.with_suffix(".json").read_text())
    layer, size = card["cam_layer"], card["input_size"][0]
    model = keras.models.load_model(DEFAULT_KERAS)
    rep = SHARED_DATA / "corrosion_cls" / "train"
    images = real_images(24, size, seed=9)
    rows, runtimes = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for quant in _QUANTS:
            path = Path(scratch) / f"{quant}.tflite"
            export(ExportRequest(str(DEFAULT_KERAS), str(path), quant, layer, size,
                                 rep_data=str(rep) if rep.is_dir() else None,
                                 rep_images=100, verify_images=0))
            runtimes[quant] = CorrosionModel(path, threads=1)
            rows[quant] = {"bytes": path.stat().st_size, **fidelity(model, layer, path, images)}
            print(quant, json.dumps(rows[quant]))
        timings = interleaved_median_ms(
            {quant: (lambda r=runtime: r.invoke_rgb(images[0])) for quant, runtime in
             runtimes.items()}, 200, 20)
    for quant, ms in timings.items():
        rows[quant]["ms_per_invoke_median"] = ms
        rows[quant]["speed_vs_float16"] = timings["float16"] / ms
    report = {"model": str(DEFAULT_KERAS), "cam_layer": layer, "input_size": size,
              "threads": 1, "timing": "interleaved rounds, median of 200",
              "load_average": os.getloadavg(), "variants": rows,
              "calibration": "corrosion_cls/train (100 photos)" if rep.is_dir() else "synthetic",
              "images": "corrosion_cls/validation" if rep.is_dir() else "synthetic"}
    save("quantization", report)
    bar_plot("quantization", list(rows), [r["ms_per_invoke_median"] for r in rows.values()],
             "ms per invoke (median, 1 thread)", "Quantisation variants (score + CAM + seg model)")


if __name__ == "__main__":
    main()

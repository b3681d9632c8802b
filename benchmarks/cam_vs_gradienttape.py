"""(a) In-graph TFLite Grad-CAM++ vs the TF GradientTape reference and tf-keras-vis.

Same Keras model, same images, one image per call (as a live loop would). Reports ms per image
(median), the speed ratios, and the CAM agreement (Pearson correlation of the maps).
"""

from __future__ import annotations

import json

import numpy as np

from common import DEFAULT_KERAS, DEFAULT_TFLITE, bar_plot, median_ms, real_images, save


def main() -> None:
    import keras
    import tensorflow as tf

    from converter.gradcam import ReferenceGradCamPP
    from converter.model import at_input_size
    from converter.student import without_head
    from edge.method.model import CorrosionModel

    card = json.loads(DEFAULT_TFLITE.with_suffix(".json").read_text())
    layer, size = card["cam_layer"], card["input_size"][0]
    # The shipped model runs at the card's input size, so the Keras reference does too.
    # The CAM explains the classifier's logit; the seg head (contract v2) plays no part.
    model = at_input_size(without_head(keras.models.load_model(DEFAULT_KERAS)), size)
    runtime = CorrosionModel(DEFAULT_TFLITE, threads=1)
    images = real_images(8, size, seed=2)
    image = images[0]

    reference_cam = ReferenceGradCamPP(model, layer)  # built once, like the peer below
    timings = {"tflite_in_graph": median_ms(lambda: runtime.invoke_rgb(image), 100, 10),
               "tf_gradienttape_eager": median_ms(lambda: reference_cam(image[None]), 20, 3)}
    ours = np.stack([runtime.invoke_rgb(i)[1] for i in images])
    _, reference = reference_cam(images)
    agreement = {"tf_gradienttape_eager": _mean_corr(ours, reference)}
    try:
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.utils.scores import BinaryScore

        visualizer = GradcamPlusPlus(model, clone=True)
        score = BinaryScore(1.0)
        def peer(batch):
            return visualizer(score, tf.convert_to_tensor(batch, tf.float32),
                              penultimate_layer=layer, seek_penultimate_conv_layer=False,
                              normalize_cam=True, expand_cam=False)
        timings["tf_keras_vis_gradcampp"] = median_ms(lambda: peer(image[None]), 10, 2)
        peer_maps = np.asarray(peer(images))
        agreement["tf_keras_vis_gradcampp"] = _mean_corr(ours, peer_maps)
    except ImportError:
        timings["tf_keras_vis_gradcampp"] = None
    ratios = {k: v / timings["tflite_in_graph"] for k, v in timings.items() if v}
    report = {"model": str(DEFAULT_KERAS), "tflite": str(DEFAULT_TFLITE), "cam_layer": layer,
              "input_size": size, "threads": 1, "ms_per_image_median": timings,
              "speedup_of_tflite": ratios, "cam_correlation_with_tflite": agreement,
              "target": "in-graph CAM >= 50x faster than the GradientTape path"}
    save("cam_vs_gradienttape", report)
    labels = [k for k, v in timings.items() if v]
    bar_plot("cam_vs_gradienttape", labels, [timings[k] for k in labels], "ms per image (median)",
             f"Grad-CAM++ per {size}x{size} frame: in-graph TFLite vs eager TF", log=True)
    print(json.dumps(report, indent=2))


def _mean_corr(a: np.ndarray, b: np.ndarray) -> float:
    import cv2
    values = []
    for x, y in zip(a, b):
        y = cv2.resize(np.asarray(y, np.float32), x.shape[::-1], interpolation=cv2.INTER_AREA)
        if x.std() > 0 and y.std() > 0:
            values.append(float(np.corrcoef(x.ravel(), y.ravel())[0, 1]))
    return float(np.mean(values)) if values else 0.0


if __name__ == "__main__":
    main()

"""The one way from edge/ into converter/ (the workstation side, which needs TensorFlow).

`rustseg train`, `distill`, `states` and `export` call these; cli.py imports this module only when one of
those commands runs, and these functions import converter only when called. No other edge
module imports converter or TensorFlow (tests/test_architecture.py checks it), so the device
side installs and runs without either.
"""

from __future__ import annotations

from edge.config import Config


def train(data, out, val, tiles_from, config: Config) -> dict:
    """Fit the classifier on image-level labels; its validation metrics."""
    from converter.train import TrainRequest, train as run_train
    return run_train(TrainRequest(data, out, val, tiles_from), config)


def distill(model, out, data, photos_from, cache, config: Config) -> dict:
    """Teacher pseudo masks -> a segmentation head trained into the classifier (contract v2)."""
    from converter.distill import DistillRequest, distill as run_distill
    return run_distill(DistillRequest(model, out, data, photos_from, cache), config)


def states(model, photos_from, out, config: Config) -> dict:
    """Tile tags of condition states -> a state head in a v2 model (contract v3)."""
    from converter.states import StatesRequest, train_states
    return train_states(StatesRequest(model, photos_from, out, config.data.holdout_fraction,
                                      config.student.input_size, config.teacher.crf,
                                      config.refine))


def export(model, out, rep_data, config: Config) -> dict | None:
    """TFLite with Grad-CAM++ inside and its model card; the fidelity report, if one was made."""
    from converter.export import ExportRequest, export as run_export
    e = config.export
    return run_export(ExportRequest(model, out, e.quant, e.cam_layer, e.input_size, rep_data,
                                    e.rep_images, e.verify_images))

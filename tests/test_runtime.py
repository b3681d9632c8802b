"""The edge runtime: contract checks and one-line errors for every kind of bad model."""

import json
import shutil

import numpy as np
import pytest

from conftest import DEFAULT_MODEL, needs_tf
from edge.errors import ModelError
from edge.method.model import CorrosionModel


@pytest.fixture
def model_copy(tmp_path):
    """The shipped model and its card, copied so a test may damage them."""
    target = tmp_path / "m.tflite"
    shutil.copy(DEFAULT_MODEL, target)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), target.with_suffix(".json"))
    return target


def _one_line(exc_info):
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_shipped_model_loads_and_answers_per_contract():
    model = CorrosionModel(DEFAULT_MODEL, threads=1)
    assert model.runtime in ("ai_edge_litert", "tflite_runtime", "tensorflow")
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    prediction = model.predict(frame)
    assert 0.0 <= prediction.score <= 1.0 and prediction.valid
    assert prediction.cam01.shape == model.cam_hw and prediction.cam01.dtype == np.float32
    assert 0.0 <= prediction.cam01.min() and prediction.cam01.max() <= 1.0
    assert model.cam_to_frame(prediction.cam01, (480, 640)).shape == (480, 640)


def test_preprocess_squashes_and_swaps_bgr_to_rgb():
    model = CorrosionModel(DEFAULT_MODEL, threads=1)
    frame = np.zeros((300, 500, 3), np.uint8)
    frame[..., 0] = 255  # pure blue in BGR
    image = model.preprocess(frame)
    assert image.shape == (*model.input_hw, 3)
    assert image[..., 2].min() == 255 and image[..., 0].max() == 0  # blue is last in RGB


def test_missing_not_tflite_and_corrupt_models(tmp_path, model_copy):
    with pytest.raises(ModelError) as info:
        CorrosionModel(tmp_path / "absent.tflite")
    assert "does not exist" in _one_line(info)
    text = tmp_path / "notes.tflite"
    text.write_text("hello")
    with pytest.raises(ModelError) as info:
        CorrosionModel(text)
    assert "is not a TFLite file" in _one_line(info)
    data = model_copy.read_bytes()
    model_copy.write_bytes(data[: len(data) // 3])  # truncated download
    with pytest.raises(ModelError) as info:
        CorrosionModel(model_copy)
    assert "does not match" in _one_line(info)  # the card's sha256 catches it first
    with pytest.raises(ModelError) as info:
        CorrosionModel(model_copy, require_card=False)
    assert "could not be loaded" in _one_line(info)


def test_card_missing_invalid_or_for_another_model(model_copy):
    card_path = model_copy.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card_path.unlink()
    with pytest.raises(ModelError) as info:
        CorrosionModel(model_copy)
    assert "model card" in _one_line(info) and "missing" in str(info.value)
    card_path.write_text("{not json")
    with pytest.raises(ModelError) as info:
        CorrosionModel(model_copy)
    assert "not valid JSON" in _one_line(info)
    for broken, expected in ((dict(card, threshold=3), "threshold"),
                             ({k: v for k, v in card.items() if k != "cam_size"}, "cam_size"),
                             (dict(card, model_sha256="0" * 64), "does not match"),
                             (dict(card, format="other"), "format")):
        card_path.write_text(json.dumps(broken))
        with pytest.raises(ModelError) as info:
            CorrosionModel(model_copy)
        assert expected in _one_line(info)
    card_path.write_text(json.dumps(dict(card, input_size=[256, 256])))
    with pytest.raises(ModelError) as info:
        CorrosionModel(model_copy)
    assert "says input [256, 256]" in _one_line(info)


@needs_tf
def test_model_without_contract_outputs_is_refused(tmp_path):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = keras.layers.GlobalAveragePooling2D()(keras.ops.cast(inputs, "float32"))
    plain = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(plain)
    path = tmp_path / "plain.tflite"
    path.write_bytes(converter.convert())
    with pytest.raises(ModelError) as info:
        CorrosionModel(path, require_card=False)
    assert "no output named 'score' or 'cam'" in _one_line(info)


def test_nan_outputs_become_an_invalid_empty_prediction(monkeypatch):
    model = CorrosionModel(DEFAULT_MODEL, threads=1)
    bound = model._interpreter()
    outputs = {"score": np.array([[np.nan]], np.float32),
               "cam": np.full((1, *model.cam_hw), np.inf, np.float32)}
    if model.seg_hw is not None:
        outputs["seg"] = np.full((1, *model.seg_hw), np.nan, np.float32)
    if model.state_hw is not None:
        outputs["state"] = np.full((1, *model.state_hw, 3), np.nan, np.float32)
    monkeypatch.setattr(bound, "run", lambda batch: outputs)
    prediction = model.predict(np.zeros((64, 64, 3), np.uint8))
    assert not prediction.valid and prediction.score == 0.0 and not prediction.cam01.any()
    assert prediction.seg01 is None or not prediction.seg01.any()
    assert prediction.state is None or not prediction.state.any()


def test_interpreters_are_per_thread():
    import threading

    model = CorrosionModel(DEFAULT_MODEL, threads=1)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(model._interpreter()))
    thread.start()
    thread.join()
    assert seen[0] is not model._interpreter()

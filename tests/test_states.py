"""Model contract v3: condition states from tile tags, in the graph and on the device."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import needs_tf, shared_data
from edge.data.synthetic import make_state_scene
from edge.method.model import CorrosionModel
from edge.method.states import (StateThresholds, area_by_state, levels_in_mask, states_in_mask,
                                worst_state)

SIZE = 96          # tiny model input: state is 12x12


def test_the_device_rule_marks_states_only_inside_the_mask():
    cumulative = np.zeros((2, 2, 3), np.float32)
    cumulative[0, 0] = (0.9, 0.8, 0.7)      # severe
    cumulative[0, 1] = (0.9, 0.8, 0.1)      # poor
    cumulative[1, 0] = (0.9, 0.1, 0.05)     # fair
    cumulative[1, 1] = (0.9, 0.8, 0.7)      # severe, but outside the mask below
    mask = np.ones((4, 4), bool)
    mask[2:, 2:] = False
    levels = states_in_mask(cumulative, mask, StateThresholds(poor=0.5, severe=0.5))
    assert levels.dtype == np.uint8 and levels.shape == (4, 4)
    assert levels[0, 0] == 3 and levels[0, 3] == 2 and levels[3, 0] == 1 and levels[3, 3] == 0
    assert set(np.unique(levels)) <= {0, 1, 2, 3}


def test_severe_needs_poor_whatever_the_thresholds():
    upper = np.zeros((1, 3, 2), np.float32)
    upper[0] = [(0.4, 0.39), (0.6, 0.59), (0.6, 0.1)]
    levels = levels_in_mask(upper, np.ones((1, 3), bool), StateThresholds(poor=0.5, severe=0.2))
    assert levels.tolist() == [[1, 3, 2]]


def test_area_by_state_and_the_worst_state():
    levels = np.zeros((10, 10), np.uint8)
    levels[:2] = 1          # 20 % Fair
    levels[2, :5] = 2       # 5 % Poor
    levels[3, 0] = 3        # 1 % Severe
    assert area_by_state(levels) == pytest.approx({"fair": 0.2, "poor": 0.05, "severe": 0.01})
    assert area_by_state(None) is None
    assert worst_state(levels) == 3
    assert worst_state(levels, min_share=0.05) == 2     # Severe covers only 1 %
    assert worst_state(levels, min_share=0.5) == 0
    assert worst_state(np.zeros((4, 4), np.uint8)) == 0


def test_vt_palette_masks_read_as_states():
    from edge.data.imageio import state_mask_from_bgr

    mask = np.zeros((1, 5, 3), np.uint8)
    mask[0, 1] = (0, 0, 128)      # BGR Fair
    mask[0, 2] = (0, 128, 0)      # Poor
    mask[0, 3] = (0, 128, 128)    # Severe
    mask[0, 4] = (255, 255, 255)  # a binary mask's white: corrosion of unknown state
    assert state_mask_from_bgr(mask).tolist() == [[0, 1, 2, 3, 1]]


@needs_tf
def test_tile_tags_follow_the_worst_state_covering_enough():
    from converter.states import StateTraining, stacked_targets, tile_tags

    states = np.zeros((1, 80, 80), np.uint8)
    states[0, :40, :40] = 1                  # a Fair quarter
    states[0, :4, :4] = 3                    # a Severe speck: 1/400 of the photo
    tags = tile_tags(states, tile_cells=10, grid_cells=10, min_share=0.05)
    assert tags.shape == (1, 1, 1, 3) and tags[0, 0, 0].tolist() == [1, 0, 0]
    tags = tile_tags(states, tile_cells=5, grid_cells=10, min_share=0.01)
    assert tags[0, 0, 0].tolist() == [1, 1, 1]          # the speck is 16/1600 = 1 % ...
    tags = tile_tags(states, tile_cells=5, grid_cells=10, min_share=0.02)
    assert tags[0, 0, 0].tolist() == [1, 0, 0]          # ... so a 2 % rule ignores it
    assert tags[0, 1, 1].tolist() == [0, 0, 0]
    stacked = stacked_targets(states, StateTraining(tile_cells=(10, 5)), 10)
    assert stacked.shape == (1, 10, 10, 6)


@pytest.fixture(scope="module")
def random_v3(tmp_path_factory):
    """A random classifier with random seg and state heads, exported (contract v3)."""
    pytest.importorskip("tensorflow")
    import keras

    from converter.model import build_classifier
    from converter.states import attach_states, state_head_model
    from converter.student import attach_head

    keras.utils.set_random_seed(7)
    folder = tmp_path_factory.mktemp("v3")
    model = attach_head(build_classifier(SIZE, 0.35, None, 0.0))
    shapes = [(SIZE // 8, SIZE // 8, 96), (SIZE // 16, SIZE // 16, 192), (SIZE // 32, SIZE // 32, 1280)]
    model = attach_states(model, state_head_model(shapes))
    # Random batch-norm statistics leave the features near zero; a few forward passes in
    # training mode give them a scale, so the state maps vary from pixel to pixel.
    scenes = _rgb_state_scenes(16, seed=40)[0].astype(np.float32)
    for _ in range(4):
        model(scenes, training=True)
    return _export_v3(model, folder, StateThresholds(0.5, 0.5))


def _rgb_state_scenes(n, seed, size=SIZE):
    frames, states = zip(*(make_state_scene(size, size, seed + i) for i in range(n)))
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]), np.stack(states)


def _export_v3(model, folder: Path, thresholds: StateThresholds) -> dict:
    from converter.export import ExportRequest, export

    model.save(folder / "v3.keras")
    (folder / "v3.metrics.json").write_text(json.dumps(
        {"states": {"thresholds": {"poor": thresholds.poor, "severe": thresholds.severe},
                    "learnt_from": "synthetic tile tags (test)"}}))
    export(ExportRequest(str(folder / "v3.keras"), str(folder / "v3.tflite"), "float32",
                         "out_relu", SIZE, verify_images=4))
    return {"tflite": folder / "v3.tflite", "keras": folder / "v3.keras"}


@needs_tf
def test_tflite_state_agrees_with_keras_and_never_increases(random_v3):
    from converter.export import keras_states, load_keras_model

    card = json.loads(random_v3["tflite"].with_suffix(".json").read_text())
    assert card["contract"] == 3 and card["state_size"] == [SIZE // 8, SIZE // 8]
    assert card["states"]["thresholds"] == {"poor": 0.5, "severe": 0.5}
    assert card["fidelity"]["state_channel_rise_max"] <= 0.0
    model = CorrosionModel(random_v3["tflite"], threads=1)
    assert model.contract == 3 and model.state_hw == (SIZE // 8, SIZE // 8)
    images, _ = _rgb_state_scenes(4, seed=60)
    expected = keras_states(load_keras_model(random_v3["keras"]), images)
    for image, reference in zip(images, expected):
        state = model.invoke_rgb(image).state
        assert state.shape == (SIZE // 8, SIZE // 8, 3)
        assert np.abs(state - reference).max() < 1e-4
        assert np.all(np.diff(state, axis=-1) <= 0.0)
        assert state.std() > 1e-3                      # a real map, not a constant


@needs_tf
def test_a_v3_frame_result_carries_states_inside_its_mask(random_v3):
    from edge.config import load_config
    from edge.method.segment import build_segmenter

    # Gate always open and a low evidence threshold: the random model marks most pixels.
    config = load_config(None).replace({"model.path": str(random_v3["tflite"]),
                                        "refine.mode": "none", "refine.cam_threshold": 0.01,
                                        "gate.score_floor": 0.0, "gate.seg_min_area": 0.0})
    frame = make_state_scene(120, 160, seed=3)[0]
    result = build_segmenter(config).segment(frame)
    assert result.state is not None and result.state.shape == frame.shape[:2]
    assert result.state.dtype == np.uint8
    assert result.mask.any() and np.array_equal(result.state > 0, result.mask)
    assert set(result.area_by_state) == {"fair", "poor", "severe"}


@needs_tf
def test_v2_models_still_run_without_states(tiny_models):
    from edge.config import load_config
    from edge.method.segment import build_segmenter

    config = load_config(overrides={"model.path": str(tiny_models["v2"]),
                                    "refine.mode": "none", "gate.score_floor": 0.0,
                                    "gate.seg_min_area": 0.0})
    segmenter = build_segmenter(config)
    assert segmenter.model.contract == 2 and segmenter.state_thresholds is None
    result = segmenter.segment(make_state_scene(96, 128, seed=1)[0])
    assert result.mask.any()           # a random head marks part of it: states would show
    assert result.state is None and result.area_by_state is None


@needs_tf
def test_a_state_head_learnt_from_tile_tags_maps_light_and_heavy_rust(tmp_path):
    """The whole v3 recipe on synthetic scenes whose rust is painted by state: tile tags ->
    multiple-instance head -> TFLite -> the device rule. Light stain must come out Fair, dark
    pitted scale Severe, well above chance (1/3)."""
    weights = shared_data("weights", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5")
    import io

    import keras

    from converter.model import build_classifier
    from converter.states import (StateTraining, attach_states, choose_thresholds,
                                  frozen_features, predict_maps, train_state_head, upsample)
    from converter.student import attach_head

    keras.utils.set_random_seed(5)
    model = attach_head(build_classifier(SIZE, 0.35, weights, 0.0))
    images, states = _rgb_state_scenes(48, seed=0)
    settings = StateTraining(tile_cells=(12, 3), min_share=0.05, epochs=20, batch_size=16,
                             learning_rate=0.01)
    head = train_state_head(frozen_features(model, images, SIZE), states, settings,
                            io.StringIO())
    model = attach_states(model, head)
    _, cumulative = predict_maps(model, images)
    thresholds, _ = choose_thresholds(upsample(cumulative, SIZE), states > 0, states)
    exported = _export_v3(model, tmp_path, StateThresholds(*thresholds))

    device = CorrosionModel(exported["tflite"], threads=1)
    test_images, truth = _rgb_state_scenes(16, seed=1000)
    predicted = np.stack([
        states_in_mask(device.infer(image).state, level > 0, StateThresholds(*thresholds))
        for image, level in zip(test_images, truth)])
    inside = truth > 0
    assert np.mean(predicted[inside] == truth[inside]) >= 0.6
    for level in (1, 2, 3):   # each painted state is mostly read as itself
        counts = np.bincount(predicted[truth == level], minlength=4)
        assert counts.argmax() == level, (level, counts)


# --- the states teacher (converter/state_teacher.py) ----------------------------------------

@needs_tf
def test_the_teacher_calibrates_each_state_to_even_odds_at_its_threshold():
    from converter.state_teacher import calibrated, state_priors

    assert calibrated(np.float32(0.15), 0.15, 2.0) == pytest.approx(0.5)
    assert calibrated(np.float32(0.3), 0.15, 2.0) > 0.75 > 0.25 > calibrated(np.float32(0.07),
                                                                             0.15, 2.0)
    fused = np.random.default_rng(0).random((8, 8, 4)).astype(np.float32)
    fused[..., 1:] = np.sort(fused[..., 1:], axis=-1)[..., ::-1]      # ordered, as the head is
    priors = state_priors(fused, StateThresholds(0.15, 0.2), 2.0)
    assert priors.shape == (4, 8, 8) and (priors >= 0).all()
    np.testing.assert_allclose(priors.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(priors[0], 1 - fused[..., 0], atol=1e-6)   # seg says where


@needs_tf
def test_no_teacher_label_is_worse_than_a_tag_of_its_tiles():
    from converter.state_teacher import TeacherSettings, pseudo_states, tag_ceiling
    from converter.teacher import IGNORE
    from edge.config import load_config

    truth = np.zeros((64, 64), np.uint8)
    truth[:32, :32] = 3                       # a Severe quarter
    truth[32:, 32:] = 1                       # a Fair quarter
    ceiling = tag_ceiling(truth, (1.0, 0.5), min_share=0.05)
    assert ceiling[:32, :32].min() == 3 and ceiling[40, 40] == 1 and ceiling[40, 10] == 0
    # A teacher map that calls everything Severe: the tags pull each quarter back down.
    fused = np.ones((16, 16, 4), np.float32)
    image = np.full((64, 64, 3), 128, np.uint8)
    label = pseudo_states(image, fused, ceiling, StateThresholds(0.5, 0.5), TeacherSettings(),
                          load_config(None).teacher.crf)
    known = label != IGNORE
    assert known.mean() > 0.9
    assert (label[known] <= ceiling[known]).all()
    assert (label[:32, :32][known[:32, :32]] == 3).all()


@needs_tf
def test_dense_targets_are_shares_of_known_pixels_at_or_above_each_state():
    from converter.state_teacher import dense_targets
    from converter.teacher import IGNORE

    labels = np.zeros((1, 16, 16), np.uint8)
    labels[0, :8, :8] = 2                     # one cell Poor
    labels[0, :8, 8:] = IGNORE                # one cell unknown
    labels[0, 8:, :8] = 3                     # one cell Severe
    targets = dense_targets(labels, 2)
    assert targets.shape == (1, 2, 2, 4)
    np.testing.assert_allclose(targets[0, 0, 0], [1, 1, 0, 1])
    assert targets[0, 0, 1, 3] == 0           # an unknown cell weighs nothing
    np.testing.assert_allclose(targets[0, 1, 0], [1, 1, 1, 1])
    np.testing.assert_allclose(targets[0, 1, 1], [0, 0, 0, 1])


@needs_tf
def test_the_dense_loss_counts_only_cells_the_teacher_was_sure_of():
    """Round two's loss: the tags' part is unchanged, and the teacher's per-cell part adds
    weighted BCE on the channels after the tags, where a cell of weight 0 adds nothing."""
    import tensorflow as tf

    from converter.states import StateTraining, tile_mil_loss

    settings = StateTraining(tile_cells=(4, 2), dense_weight=2.0)
    probability = tf.fill([1, 4, 4, 3], 0.5)
    tags = np.zeros((1, 4, 4, 6), np.float32)            # 2 tile sizes x 3 states, all clean
    tags_only = float(tile_mil_loss(settings)(tf.constant(tags), probability))
    unsure = np.concatenate([tags, np.ones((1, 4, 4, 3), np.float32),
                             np.zeros((1, 4, 4, 1), np.float32)], axis=-1)
    assert float(tile_mil_loss(settings, dense=True)(tf.constant(unsure), probability)) == \
        pytest.approx(tags_only)
    sure = unsure.copy()
    sure[..., -1] = 1.0                                  # every cell sure, every state present
    with_teacher = float(tile_mil_loss(settings, dense=True)(tf.constant(sure), probability))
    # BCE of 0.5 against 1 is log 2, weighted per state (1, 1.5, 3) and averaged over states
    expected = tags_only + 2.0 * np.log(2) * np.mean(settings.positive_weight)
    assert with_teacher == pytest.approx(expected, rel=1e-5)

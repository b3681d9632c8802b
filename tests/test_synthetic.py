import cv2
import numpy as np
import pytest

from edge.data.datasets import find_labelled_images, find_masked_images
from edge.data.imageio import read_image_bgr, read_mask
from edge.data.synthetic import (SURFACES, SceneOptions, iter_clip, make_scene,
                            write_classification_folder, write_mask_folder)


def test_same_seed_same_scene_different_seed_different_scene():
    a, mask_a = make_scene(120, 160, seed=5)
    b, mask_b = make_scene(120, 160, seed=5)
    c, _ = make_scene(120, 160, seed=6)
    assert np.array_equal(a, b) and np.array_equal(mask_a, mask_b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.shape == (120, 160, 3) and mask_a.dtype == bool


@pytest.mark.parametrize("surface", SURFACES)
def test_mask_marks_exactly_the_rust_that_was_drawn(surface):
    options = SceneOptions(surface=surface, shadow_prob=0, decoy_paint_prob=0, blur_prob=0,
                           noise_sigma=0)
    for seed in range(4):
        rusty, mask = make_scene(160, 200, seed, options)
        clean, empty = make_scene(160, 200, seed, SceneOptions(
            rust=False, surface=surface, shadow_prob=0, decoy_paint_prob=0, blur_prob=0,
            noise_sigma=0))
        assert mask.any() and not empty.any()
        changed = np.abs(rusty.astype(int) - clean.astype(int)).max(axis=2) > 0
        # Every masked pixel was painted; unmasked pixels change only at the soft patch edge
        # (opacity below the mask threshold), which is a thin rim, not a region.
        assert changed[mask].mean() > 0.99
        outside = changed & ~mask
        rim = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        assert (outside & ~rim).sum() <= 0.01 * mask.size


def test_rust_is_rust_coloured_and_negatives_have_none():
    frame, mask = make_scene(200, 200, seed=3, options=SceneOptions(
        shadow_prob=0, decoy_paint_prob=0, blur_prob=0))
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    hue = hsv[..., 0][mask]
    assert np.median(hue) <= 25  # orange-brown on OpenCV's 0..180 hue circle
    assert np.median(hsv[..., 1][mask]) > np.median(hsv[..., 1][~mask])


def test_clip_moves_and_masks_follow(tmp_path):
    frames = list(iter_clip(96, 64, frames=6, seed=2))
    assert len(frames) == 6
    assert all(f.shape == (64, 96, 3) and m.shape == (64, 96) for f, m in frames)
    assert not np.array_equal(frames[0][0], frames[3][0])
    assert list(iter_clip(96, 64, frames=6, seed=2))[4][0].tobytes() == frames[4][0].tobytes()


def test_folder_writers_produce_the_layouts_the_loaders_read(tmp_path):
    classes = write_classification_folder(tmp_path / "cls", n_per_class=3, size=48, seed=1)
    items = find_labelled_images(classes)
    assert sorted(i.label for i in items) == [0, 0, 0, 1, 1, 1]
    masks = write_mask_folder(tmp_path / "seg", n_images=4, height=40, width=50, seed=1)
    pairs = find_masked_images(masks)
    assert len(pairs) == 4
    assert read_image_bgr(pairs[0].image).shape == (40, 50, 3)
    assert read_mask(pairs[0].mask).shape == (40, 50)

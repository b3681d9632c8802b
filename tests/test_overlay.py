"""Drawing condition states: one colour per state, told apart by colour-blind viewers."""

import itertools

import numpy as np
import pytest

from edge.config import load_config
from edge.live.overlay import draw_overlay, hud_lines
from edge.outputs import FrameRecord

# Machado et al. (2009) simulation of full protanomaly, deuteranomaly and tritanomaly.
_DEFICIENCIES = ("protanomaly", "deuteranomaly", "tritanomaly")
_MIN_DISTANCE = 25.0   # CAM02-UCS units; ~20+ reads as clearly different colours


def test_state_colours_stay_apart_for_colour_blind_viewers():
    colorspacious = pytest.importorskip("colorspacious", reason="needs the dev extra")
    colours_bgr = load_config(None).overlay.state_colours_bgr
    rgb = [np.array(c[::-1], float) / 255 for c in colours_bgr]
    for deficiency in (None, *_DEFICIENCIES):
        seen = rgb if deficiency is None else [np.clip(colorspacious.cspace_convert(
            c, {"name": "sRGB1+CVD", "cvd_type": deficiency, "severity": 100}, "sRGB1"), 0, 1)
            for c in rgb]
        ucs = [colorspacious.cspace_convert(c, "sRGB1", "CAM02-UCS") for c in seen]
        for a, b in itertools.combinations(range(3), 2):
            distance = float(np.linalg.norm(ucs[a] - ucs[b]))
            assert distance >= _MIN_DISTANCE, (deficiency, a + 1, b + 1, distance)
    # Worse states are drawn darker (lightness J' falls), so the order reads without hue.
    lightness = [colorspacious.cspace_convert(c, "sRGB1", "CAM02-UCS")[0] for c in rgb]
    assert lightness[0] > lightness[1] > lightness[2]


def test_each_state_is_filled_with_its_own_colour_and_the_hud_has_a_legend():
    settings = load_config(None).overlay
    frame = np.full((120, 160, 3), 128, np.uint8)
    state = np.zeros((120, 160), np.uint8)
    state[10:50, 10:50], state[10:50, 100:140], state[70:110, 60:100] = 1, 2, 3
    hud = FrameRecord(0, "0", 0.0, 0.0, 0.9, corroded_fraction=float(np.mean(state > 0)),
                      path="light", ms={"invoke": 5.0}, fps=15.0,
                      area_by_state={"fair": 0.08, "poor": 0.08, "severe": 0.08})
    out = draw_overlay(frame, state > 0, settings.__class__(**{**settings.__dict__,
                                                              "hud": False}), state=state)
    for level, (y, x) in zip((1, 2, 3), ((30, 30), (30, 120), (90, 80))):
        colour = np.array(settings.state_colours_bgr[level - 1], float)
        expected = 128 * (1 - settings.alpha) + colour * settings.alpha
        assert np.allclose(out[y, x], expected, atol=1.5), (level, out[y, x], expected)
    assert np.array_equal(out[115, 5], frame[115, 5])          # outside every state
    lines = hud_lines(hud)
    assert any("Severe (CS4) 8.0%" in line for line in lines)
    with_hud = draw_overlay(frame, state > 0, settings, hud=hud, state=state)
    assert not np.array_equal(with_hud[:60, :60], out[:60, :60])  # the panel was drawn


def test_the_configured_surface_is_outlined_and_nothing_else_changes():
    from edge.method.grades import surface_mask

    settings = load_config(overrides={"overlay.hud": False}).overlay
    frame = np.full((120, 160, 3), 60, np.uint8)
    mask = np.zeros((120, 160), bool)
    surface = surface_mask(((0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)), (120, 160))
    plain = draw_overlay(frame, mask, settings)
    outlined = draw_overlay(frame, mask, settings, surface=surface)
    changed = np.any(outlined != plain, axis=-1)
    ys, xs = np.nonzero(changed)
    # Only the rectangle's edge (x 40..119, y 30..89, give or take the line's width) is drawn.
    assert changed.any() and xs.min() >= 38 and xs.max() <= 121 and ys.min() >= 28
    assert ys.max() <= 91 and not changed[45:75, 55:105].any()
    assert (outlined[30, 80] > 200).all()                    # white on the top edge

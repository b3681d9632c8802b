"""Rust grades: every bin edge of ASTM D610 and ISO 4628-3, on both sides."""

import csv
import html
import math

import numpy as np
import pytest

from edge.method.grades import (ASTM_D610_UPPER_PERCENT, ISO_4628_3_UPPER_PERCENT, astm_d610,
                                grades, iso_4628_3, surface_share)

_JUST = 1e-6


@pytest.mark.parametrize("grade,upper", ASTM_D610_UPPER_PERCENT)
def test_astm_d610_edges_on_both_sides(grade, upper):
    assert astm_d610(upper) == grade            # the bound is inclusive
    assert astm_d610(upper + _JUST) == grade - 1
    assert astm_d610(upper - _JUST) >= grade


def test_astm_d610_table_is_the_standard():
    assert [g for g, _ in ASTM_D610_UPPER_PERCENT] == list(range(10, 0, -1))
    assert [u for _, u in ASTM_D610_UPPER_PERCENT] == [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 16, 33, 50]
    assert astm_d610(0.0) == 10 and astm_d610(100.0) == 0


@pytest.mark.parametrize("degree,upper", enumerate(ISO_4628_3_UPPER_PERCENT))
def test_iso_4628_3_edges_on_both_sides(degree, upper):
    assert iso_4628_3(upper) == f"Ri {degree}"
    assert iso_4628_3(upper + _JUST) == f"Ri {degree + 1}"


def test_iso_4628_3_points_fall_in_their_own_bins():
    for degree, point in enumerate((0.0, 0.05, 0.5, 1.0, 8.0, 40.0)):
        assert iso_4628_3(point) == f"Ri {degree}"
    assert iso_4628_3(50.0) == iso_4628_3(100.0) == "Ri 5"
    assert ISO_4628_3_UPPER_PERCENT[2] == pytest.approx(math.sqrt(0.5), abs=1e-4)


@pytest.mark.parametrize("bad", [-0.1, 100.1, float("nan")])
def test_grades_refuse_a_share_outside_0_to_100(bad):
    with pytest.raises(ValueError, match="expected a number from 0 to 100"):
        grades(bad)


def test_surface_share_counts_only_the_coated_surface():
    mask = np.zeros((10, 10), bool)
    mask[:, :2] = True                      # 20 % of the frame
    surface = np.zeros((10, 10), bool)
    surface[:, :4] = True                   # the steel: 40 % of the frame, half of it rusted
    assert surface_share(mask, None) == pytest.approx(20.0)
    assert surface_share(mask, surface) == pytest.approx(50.0)
    assert surface_share(mask, np.zeros_like(surface)) == 0.0


# --- the coated surface a user outlines (grades.surface) ------------------------------------

def test_a_surface_polygon_is_read_from_the_config():
    from edge.config import load_config

    config = load_config(overrides={"grades.surface": "0,0 0.5,0 0.5,1 0,1"})
    assert config.grades.surface_points == ((0, 0), (0.5, 0), (0.5, 1), (0, 1))
    assert load_config(None).grades.surface_points == ()


@pytest.mark.parametrize("text,why", [
    ("0,0 1,1", "has 2 points"),
    ("0,0 1,0 1,1.5", "outside 0..1"),
    ("0,0 1,0 one,1", "not a number pair"),
    ("0,0 1,0 1", "not a number pair"),
    ("0,0 0.5,0.5 1,1", "encloses no area"),
    ("0,0 1,0 nan,1", "outside 0..1"),
])
def test_a_bad_surface_polygon_is_one_line_naming_the_key(text, why):
    from edge.config import load_config
    from edge.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"grades.surface": text})
    message = str(caught.value)
    assert "grades.surface" in message and why in message and "\n" not in message


def test_the_surface_mask_is_the_polygon_at_frame_resolution():
    from edge.method.grades import surface_mask

    assert surface_mask((), (11, 11)) is None
    left_half = surface_mask(((0, 0), (0.5, 0), (0.5, 1), (0, 1)), (11, 21))
    assert left_half.shape == (11, 21) and left_half.dtype == bool
    assert left_half[:, :11].all() and not left_half[:, 11:].any()   # x = 0.5 -> column 10
    triangle = surface_mask(((0, 0), (1, 0), (0, 1)), (101, 101))
    assert triangle[0, 0] and triangle[0, 99] and triangle[99, 0] and not triangle[99, 99]
    assert triangle.mean() == pytest.approx(0.5, abs=0.02)


def test_frames_are_graded_over_the_configured_surface(tmp_path):
    """With grades.surface, the grade is read from the rusted share of that surface: the
    frame's record says so, its share is the mask's inside the polygon, and the report's
    caveat changes with it."""
    pytest.importorskip("matplotlib", reason="the report needs the report extra")
    from edge.config import load_config
    from edge.live.app import record_run
    from edge.method.grades import SURFACE_GRADE_NOTE
    from edge.method.segment import build_segmenter
    from edge.data.synthetic import make_scene
    from edge.record.layout import RecordLayout
    from edge.record.report import write_report

    overrides = {"refine.mode": "light", "grades.surface": "0,0 0.5,0 0.5,1 0,1"}
    frame = make_scene(120, 161, seed=3)[0]
    result = build_segmenter(load_config(overrides=overrides)).segment(frame)
    assert result.mask.any() and result.grades_over == "surface"
    left = np.zeros(result.mask.shape, bool)
    left[:, :81] = True                                              # x = 0.5 -> column 80
    assert result.rusted_percent == pytest.approx(surface_share(result.mask, left))
    assert result.rusted_percent != pytest.approx(100 * result.corroded_fraction)

    layout = RecordLayout(tmp_path / "rec")
    record_run("synthetic://?width=160&height=120&frames=6&seed=3", layout.root,
               load_config(overrides=overrides))
    assert {f.grades["over"] for f in layout.read_frames()} == {"surface"}
    write_report(layout.root)
    assert SURFACE_GRADE_NOTE in html.unescape(layout.report_html.read_text())
    rows = list(csv.DictReader(layout.findings_csv.open()))
    assert rows and {row["graded_over"] for row in rows} == {"surface"}

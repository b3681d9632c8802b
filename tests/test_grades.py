"""Rust grades: every bin edge of ASTM D610 and ISO 4628-3, on both sides."""

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

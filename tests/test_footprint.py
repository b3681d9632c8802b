"""The ground footprint of a finding's frame (issue 21, item 4): exact on flat ground for a
camera looking down, refused (point kept, reason given) where the camera looks at structure."""

from __future__ import annotations

import math

import pytest

from edge.record.footprint import METRES_PER_DEGREE, footprint

_LAT, _LON = 48.0, 11.0


def _position(pitch, yaw=0.0, rel_alt=100.0):
    return {"lat": _LAT, "lon": _LON, "alt": 600.0, "rel_alt": rel_alt,
            "gimbal": {"pitch": pitch, "yaw": yaw, "roll": 0.0}}


def _metres(ring):
    """East/north metres of each corner from the drone."""
    cos_lat = math.cos(math.radians(_LAT))
    return [((lon - _LON) * METRES_PER_DEGREE * cos_lat, (lat - _LAT) * METRES_PER_DEGREE)
            for lon, lat in ring[:-1]]


def test_straight_down_is_the_rectangle_under_the_drone():
    # 90 x 60 degrees from 100 m: half-widths 100 m (east-west, yaw 0) and 57.7 m
    ring, note = footprint(_position(-90.0), 90.0, 60.0, 60.0)
    assert ring[0] == ring[-1] and len(ring) == 5 and "flat level ground" in note
    corners = _metres(ring)
    assert sorted(round(abs(e), 1) for e, _ in corners) == [100.0] * 4
    assert sorted(round(abs(n), 1) for _, n in corners) == [57.7] * 4
    area = 0.5 * sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(corners, corners[1:] + corners[:1]))
    assert area > 0, "RFC 7946: the exterior ring runs counter-clockwise"


def test_the_heading_turns_the_footprint():
    ring, _ = footprint(_position(-90.0, yaw=90.0), 90.0, 60.0, 60.0)
    corners = _metres(ring)    # facing east: the frame's width now runs north-south
    assert sorted(round(abs(n), 1) for _, n in corners) == [100.0] * 4
    assert sorted(round(abs(e), 1) for e, _ in corners) == [57.7] * 4


def test_an_oblique_view_reaches_further_ahead_than_behind():
    ring, _ = footprint(_position(-70.0), 60.0, 40.0, 60.0)
    norths = [n for _, n in _metres(ring)]
    # the near edge lies at 100 m * tan(90 - 70 - 20) = 0 m, the far one at tan(40 deg) * 100
    assert min(norths) == pytest.approx(0.0, abs=0.5)
    assert max(norths) > 80.0


@pytest.mark.parametrize("position, why", [
    (_position(-15.0), "at the structure rather than the ground"),   # a bridge girder, sideways
    (_position(10.0), "at the structure rather than the ground"),    # up at a deck
    (_position(-90.0, rel_alt=None), "height above take-off is not known"),
    ({"lat": _LAT, "lon": _LON, "alt": None, "rel_alt": 30.0, "gimbal": None}, "pitch and yaw"),
])
def test_no_footprint_where_it_would_not_be_sound(position, why):
    ring, note = footprint(position, 73.7, 45.7, 60.0)
    assert ring is None and why in note


def test_a_view_that_reaches_the_horizon_has_no_footprint():
    ring, note = footprint(_position(-60.0), 73.7, 130.0, 60.0)
    assert ring is None and "above the horizon" in note

"""Where on the ground a finding's frame looked: a footprint polygon, only where that is sound.

The position of a finding is the drone's (its camera's), not the corrosion's. When the camera
looks steeply down at flat ground, the frame's four corners can be cast onto that ground and
the finding lies inside the polygon they make. The assumptions, written into every polygon's
properties:
- the ground is flat and level at the take-off point's height (so the camera is `rel_alt`
  above it);
- the lens is a pinhole with the configured fields of view (`telemetry.camera_*fov_deg`),
  centred, with no distortion; the camera's roll is 0;
- the camera's heading is the gimbal's yaw (degrees clockwise from north).

For a bridge these often fail: the camera looks sideways at a girder or up at a deck, and the
ground below is a river or a road at another height. So a footprint is made only when the
camera looks down at least `footprint_min_pitch_deg` below the horizon and the height above
take-off is known; otherwise the finding keeps its point, with the reason why it has no
polygon.
"""

from __future__ import annotations

import math

import numpy as np

METRES_PER_DEGREE = 111_320.0    # along a meridian / the equator (spherical Earth)
ASSUMPTIONS = ("flat level ground at the take-off height; pinhole camera with the configured "
               "field of view, no roll; heading = gimbal yaw; the finding lies somewhere in "
               "this frame's footprint")


def footprint(position: dict, hfov_deg: float, vfov_deg: float,
              min_pitch_deg: float) -> tuple[list[list[float]] | None, str]:
    """(closed ring of [lon, lat] corners, counter-clockwise, or None; what was assumed or why
    there is no footprint)."""
    gimbal = position.get("gimbal") or {}
    pitch, yaw, height = gimbal.get("pitch"), gimbal.get("yaw"), position.get("rel_alt")
    if pitch is None or yaw is None:
        return None, "not estimated: the camera's pitch and yaw are not known"
    if height is None or height <= 0:
        return None, "not estimated: the height above take-off is not known"
    if -pitch < min_pitch_deg:
        return None, (f"not estimated: the camera looks {-pitch:.0f} deg below the horizon "
                      f"(< {min_pitch_deg:g}), at the structure rather than the ground; the "
                      "point is the drone's position")
    corners = _ground_corners_m(math.radians(pitch), math.radians(yaw), height,
                                math.radians(hfov_deg) / 2, math.radians(vfov_deg) / 2)
    if corners is None:
        return None, "not estimated: part of the frame looks above the horizon"
    lat0, lon0 = position["lat"], position["lon"]
    ring = [[lon0 + east / (METRES_PER_DEGREE * math.cos(math.radians(lat0))),
             lat0 + north / METRES_PER_DEGREE] for east, north in corners]
    if _signed_area(ring) < 0:
        ring.reverse()  # RFC 7946: exterior rings counter-clockwise
    return ring + [ring[0]], ASSUMPTIONS


def _ground_corners_m(pitch: float, yaw: float, height: float, half_h: float,
                      half_v: float) -> list[tuple[float, float]] | None:
    """East/north metres from the point below the camera where each frame corner's ray meets
    the ground; None when a corner's ray does not go down."""
    forward = np.array([math.sin(yaw) * math.cos(pitch), math.cos(yaw) * math.cos(pitch),
                        math.sin(pitch)])                       # east, north, up
    right = np.array([math.cos(yaw), -math.sin(yaw), 0.0])
    up = np.cross(right, forward)
    corners = []
    for x, y in ((-1, 1), (1, 1), (1, -1), (-1, -1)):        # image corners, clockwise
        ray = forward + x * math.tan(half_h) * right + y * math.tan(half_v) * up
        if ray[2] >= -1e-6:
            return None
        distance = height / -ray[2]
        corners.append((distance * ray[0], distance * ray[1]))
    return corners


def _signed_area(ring: list[list[float]]) -> float:
    return 0.5 * sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:] + ring[:1]))

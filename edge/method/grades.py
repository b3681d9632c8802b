"""Rust grades of a coating from its rusted share: ASTM D610 and ISO 4628-3.

Both standards grade the share of a *coated surface* that is rusted. A camera frame also holds
sky, water and concrete, so a grade computed over a whole frame is only an indication: every
place that shows a grade says so (GRADE_CAVEAT). Where the steel's outline is known, the share
should be taken over that surface instead (`surface_share`).

ASTM D610 (= SSPC-VIS 2) gives upper bounds of percent rusted for grades 10 .. 0. ISO 4628-3
gives points, not ranges (Ri 0 = 0 %, Ri 1 = 0.05, Ri 2 = 0.5, Ri 3 = 1, Ri 4 = 8,
Ri 5 = 40-50); we bin them at the geometric mean of neighbouring points, because the points
themselves sit on a roughly logarithmic scale, and put the Ri 0 / Ri 1 edge at half of Ri 1's
0.05 % (the geometric mean with 0 is undefined). Those edges are ISO_4628_3_UPPER_PERCENT.
"""

from __future__ import annotations

import bisect
import math

import cv2
import numpy as np

GRADE_CAVEAT = ("rust grades are of the rusted share of the whole frame, which may hold more "
                "than coated steel: an indication, not an ASTM D610 / ISO 4628-3 rating")
SURFACE_GRADE_NOTE = ("rust grades are of the rusted share of the coated surface outlined in the "
                      "config (grades.surface), for a fixed camera; the outline is the user's, "
                      "and the mask is the model's")


def grade_caveat(over: str) -> str:
    """What a grade was read over, said where it is shown: 'surface' or 'frame'."""
    return SURFACE_GRADE_NOTE if over == "surface" else GRADE_CAVEAT

# (grade, upper bound of percent rusted, inclusive); above the last bound: grade 0.
ASTM_D610_UPPER_PERCENT = ((10, 0.01), (9, 0.03), (8, 0.1), (7, 0.3), (6, 1.0), (5, 3.0),
                           (4, 10.0), (3, 16.0), (2, 33.0), (1, 50.0))

_ISO_POINTS = (0.0, 0.05, 0.5, 1.0, 8.0, 40.0)   # Ri 0 .. Ri 5 (Ri 5 is given as 40-50 %)
# Upper bound (inclusive) of percent rusted for Ri 0 .. Ri 4; above the last: Ri 5.
ISO_4628_3_UPPER_PERCENT = tuple(
    [round(_ISO_POINTS[1] / 2, 4)]
    + [round(math.sqrt(a * b), 4) for a, b in zip(_ISO_POINTS[1:-1], _ISO_POINTS[2:])])


def astm_d610(percent_rusted: float) -> int:
    """ASTM D610 grade (10 best .. 0 worst) of a percent rusted in [0, 100]."""
    _check_percent(percent_rusted)
    bounds = [upper for _, upper in ASTM_D610_UPPER_PERCENT]
    index = bisect.bisect_left(bounds, percent_rusted)
    return ASTM_D610_UPPER_PERCENT[index][0] if index < len(bounds) else 0


def iso_4628_3(percent_rusted: float) -> str:
    """ISO 4628-3 degree 'Ri 0' .. 'Ri 5' of a percent rusted in [0, 100]."""
    _check_percent(percent_rusted)
    return f"Ri {bisect.bisect_left(ISO_4628_3_UPPER_PERCENT, percent_rusted)}"


def grades(percent_rusted: float) -> dict:
    """Both grades and the share they were read from, for records and reports."""
    return {"rusted_percent": round(float(percent_rusted), 4),
            "astm_d610": astm_d610(percent_rusted), "iso_4628_3": iso_4628_3(percent_rusted)}


def surface_share(mask: np.ndarray, surface: np.ndarray | None) -> float:
    """Percent of `surface` (bool [H, W], the coated steel; None = the whole frame) that the
    corrosion mask (bool [H, W]) covers; 0 for an empty surface."""
    if surface is None:
        return 100.0 * float(np.count_nonzero(mask)) / mask.size if mask.size else 0.0
    area = np.count_nonzero(surface)
    return 100.0 * float(np.count_nonzero(mask & surface)) / area if area else 0.0


def surface_mask(points: tuple[tuple[float, float], ...], frame_hw: tuple[int, int]
                 ) -> np.ndarray | None:
    """bool [H, W] inside the polygon of `points` (fractions of the frame's width, height);
    None for no points (the whole frame)."""
    if not points:
        return None
    height, width = frame_hw
    corners = np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in points],
                       np.int32)
    mask = np.zeros(frame_hw, np.uint8)
    cv2.fillPoly(mask, [corners], 1)
    return mask.astype(bool)


def _check_percent(percent: float) -> None:
    if not (0.0 <= percent <= 100.0):  # also refuses NaN
        raise ValueError(f"percent rusted {percent!r}: expected a number from 0 to 100")

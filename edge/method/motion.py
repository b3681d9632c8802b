"""Camera motion between two consecutive frames, and maps carried along it.

The motion is dense optical flow: OpenCV's DIS (Kroeger et al., ECCV 2016) with its ultrafast
preset, on grey frames shrunk to `flow_side_px`, where it costs well under a millisecond. Flow
is computed both ways, so each estimate checks itself:

- backward flow b (newer -> older): the newer frame's pixel x was at x + b(x) in the older one,
  which is what warping an older map onto the newer frame needs;
- forward-backward check: a pixel agrees when f(x + b(x)) + b(x) ~ 0, f being the forward flow
  (older -> newer); few agreeing pixels mean the flow cannot be trusted;
- residual: the mean grey difference between the newer frame and the older one warped onto it;
  a jump to another scene leaves a large one even where the flow happens to agree.

A drone's camera looking at steel or concrete sees a nearly flat scene, so the motion is taken
as one affine map fitted to the agreeing vectors, which is accurate to a fraction of a pixel
where single vectors are not; where no affine map explains them, the dense flow is used as is.

Maps of any size that cover the whole frame (the model's 40x40 evidence, a full-size mask) are
warped with the flow scaled to their own grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.config import CarryConfig

_FIT_STRIDE = 3     # every 3rd pixel each way feeds the motion fit (about 2,000 of 160x120)
_RIDGE = 1e-9 * np.eye(3)   # keeps the 3x3 solve defined when the points lie on a line
_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}   # pixel grids by shape


@dataclass(frozen=True)
class Motion:
    """How the newer of two frames maps onto the older one."""

    back: np.ndarray        # float32 [h, w, 2]: (dx, dy) newer -> older, in px of the flow grid
    consistent: float       # share of pixels that pass the forward-backward check, 0..1
    residual: float         # mean |newer - older warped onto it|, grey levels 0..255
    shift: float            # mean length of the flow, as a share of the flow grid's width
    unreliable: str | None  # why nothing may be carried ("scene cut", ...), None when it may
    affine: np.ndarray | None = None   # float64 [3, 3] newer px -> older px on the flow grid,
                                       # when one affine map explains the flow (else None)

    def warp(self, older: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`older` (float32 [H, W], a map of the older frame) carried onto the newer frame,
        bilinear, and valid (bool [H, W]): False where the point was outside the older view."""
        height, width = older.shape[:2]
        if self.affine is not None:
            moved = self.moved(older)
            inside = self.moved(np.ones((height, width), np.float32), edge=0.0)
            return moved, inside > 0.5
        return _remap(older.astype(np.float32, copy=False), self._back_on(height, width))

    def moved(self, older: np.ndarray, edge: float | None = None) -> np.ndarray:
        """`older` carried onto the newer frame, bilinear; beyond the older view the nearest
        edge value is repeated, or `edge` where given."""
        height, width = older.shape[:2]
        older = older.astype(np.float32, copy=False)
        if self.affine is None:
            warped, inside = _remap(older, self._back_on(height, width))
            if edge is not None:
                warped[~inside] = edge
            return warped
        flow_h, flow_w = self.back.shape[:2]
        # pixel centres: x on the flow grid = (u + 0.5) * flow_w / width - 0.5
        to_flow = np.array([[flow_w / width, 0, 0.5 * flow_w / width - 0.5],
                            [0, flow_h / height, 0.5 * flow_h / height - 0.5], [0, 0, 1]])
        on_map = np.linalg.inv(to_flow) @ self.affine @ to_flow
        border = (cv2.BORDER_REPLICATE, 0.0) if edge is None else (cv2.BORDER_CONSTANT, edge)
        return cv2.warpAffine(older, on_map[:2], (width, height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=border[0], borderValue=border[1])

    def _back_on(self, height: int, width: int) -> np.ndarray:
        """The flow on a map's grid, its vectors scaled to that grid's pixels."""
        flow_h, flow_w = self.back.shape[:2]
        if (height, width) == (flow_h, flow_w):
            return self.back
        interpolation = cv2.INTER_AREA if height < flow_h else cv2.INTER_LINEAR
        back = cv2.resize(self.back, (width, height), interpolation=interpolation)
        return back * np.array([width / flow_w, height / flow_h], np.float32)


class MotionEstimator:
    """`estimate(frame_bgr)` -> the Motion from the previous frame given, or None for the first.

    Frames come in their order (a short gap is measured like any step); where the chain
    breaks (a long gap, a new clip) call `forget()`."""

    def __init__(self, settings: CarryConfig) -> None:
        self.settings = settings
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._previous: np.ndarray | None = None

    def forget(self) -> None:
        self._previous = None

    def estimate(self, frame_bgr: np.ndarray) -> Motion | None:
        grey = small_grey(frame_bgr, self.settings.flow_side_px)
        previous, self._previous = self._previous, grey
        if previous is None or previous.shape != grey.shape:
            return None
        back = self._flow.calc(grey, previous, None)
        forward = self._flow.calc(previous, grey, None)
        warped_forward, inside = _remap(forward, back)
        trip = back + warped_forward
        round_trip = cv2.magnitude(trip[..., 0], trip[..., 1])
        agree = inside & (round_trip <= self.settings.fb_tolerance_px)
        consistent = float(np.count_nonzero(agree)) / max(1, np.count_nonzero(inside))
        warped_previous, _ = _remap(previous.astype(np.float32), back)
        residual = float(cv2.mean(cv2.absdiff(warped_previous, grey.astype(np.float32)),
                                   inside.astype(np.uint8))[0]) if inside.any() else 255.0
        affine = _camera_motion(back, agree, self.settings.fb_tolerance_px)
        if affine is not None:
            back = _affine_flow(affine, *back.shape[:2])
        shift = float(cv2.mean(cv2.magnitude(back[..., 0], back[..., 1]))[0]) / grey.shape[1]
        return Motion(back, consistent, residual, shift,
                      self._judge(consistent, residual, inside), affine)

    def _judge(self, consistent: float, residual: float, inside: np.ndarray) -> str | None:
        if residual > self.settings.max_residual:
            return "scene cut"
        if consistent < self.settings.min_consistent:
            return "unreliable flow"
        if np.count_nonzero(inside) < 0.5 * inside.size:
            return "unreliable flow"  # most of the view is new: too little to carry
        return None


def _camera_motion(back: np.ndarray, agree: np.ndarray, tolerance_px: float
                   ) -> np.ndarray | None:
    """The flow as one affine camera motion (float64 [3, 3], newer px -> older px), fitted by
    least squares to the pixels that passed the forward-backward check (twice, the second time
    without the worst fits), where it explains them within `tolerance_px`; else None (a scene
    far from flat: the dense flow is used as it is). Thousands of noisy vectors average into a
    motion accurate to a fraction of a pixel."""
    xs, ys = _grid(*back.shape[:2])
    every = (slice(None, None, _FIT_STRIDE),) * 2
    pick = agree[every]
    if np.count_nonzero(pick) < 12:
        return None
    x, y = xs[every][pick].astype(np.float64), ys[every][pick].astype(np.float64)
    target = back[every][pick].astype(np.float64)
    design = np.stack([x, y, np.ones_like(x)], axis=1)
    keep = np.ones(len(x), bool)
    for _ in range(2):  # normal equations: a 3x3 solve, far cheaper than a general lstsq
        kept = design[keep]
        coef = np.linalg.solve(kept.T @ kept + _RIDGE, kept.T @ target[keep])
        error = np.hypot(*(design @ coef - target).T)
        keep = error <= max(tolerance_px, 2.0 * float(np.median(error)))
    if float(np.median(error)) > tolerance_px:
        return None
    # coef maps (x, y, 1) to the displacement; the motion is the point plus it
    return np.vstack([coef.T + np.array([[1.0, 0, 0], [0, 1.0, 0]]), [0, 0, 1]])


def _affine_flow(affine: np.ndarray, height: int, width: int) -> np.ndarray:
    """The displacement field float32 [height, width, 2] of an affine motion."""
    xs, ys = _grid(height, width)
    m = (affine[:2] - np.array([[1.0, 0, 0], [0, 1.0, 0]])).astype(np.float32)
    return np.dstack([xs * m[0, 0] + ys * m[0, 1] + m[0, 2],
                      xs * m[1, 0] + ys * m[1, 1] + m[1, 2]])


def small_grey(frame_bgr: np.ndarray, longest_px: int) -> np.ndarray:
    """uint8 grey frame with its longest side at most `longest_px` (area-averaged)."""
    height, width = frame_bgr.shape[:2]
    scale = min(1.0, longest_px / max(height, width))
    small = frame_bgr
    if scale < 1.0:  # shrink first: the colour conversion then touches few pixels
        size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        small = cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)
    grey = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    return np.ascontiguousarray(grey)


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of every pixel, float32 [height, width] each, made once per shape."""
    grid = _GRIDS.get((height, width))
    if grid is None:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        grid = _GRIDS[(height, width)] = (xs, ys)
    return grid


def _remap(older: np.ndarray, back: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """older sampled at x + back(x) for every x of the newer grid; and which x fell inside."""
    height, width = back.shape[:2]
    grid = _grid(height, width)
    map_x = grid[0] + back[..., 0]
    map_y = grid[1] + back[..., 1]
    inside = (map_x >= -0.5) & (map_x <= width - 0.5) & (map_y >= -0.5) & (map_y <= height - 0.5)
    warped = cv2.remap(older, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return warped, inside

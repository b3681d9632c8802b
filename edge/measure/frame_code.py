"""A frame counter burnt into the picture and read back after a lossy trip (H.264, JPEG).

Glass-to-glass lag and frame order can only be measured on what the receiver decodes, so the
sender writes each frame's number into its top-left corner as a row of black and white
squares (one bit each, most significant first, framed by a white start square and a black
stop square), big enough that compression cannot flip them, and the receiver reads them back.
"""

from __future__ import annotations

import numpy as np

COUNTER_BITS = 16                 # counts 0..65535, then wraps
_CELL_FRACTION = 1 / 24           # side of one square as a share of the frame width
_MIN_CELL_PX = 8


def _cell_px(width: int) -> int:
    return max(_MIN_CELL_PX, int(width * _CELL_FRACTION))


def burn_counter(frame_bgr: np.ndarray, counter: int) -> np.ndarray:
    """A copy of `frame_bgr` (uint8 [H, W, 3]) with `counter` drawn in its top-left corner."""
    out = frame_bgr.copy()
    cell = _cell_px(out.shape[1])
    bits = [1] + [(counter >> (COUNTER_BITS - 1 - i)) & 1 for i in range(COUNTER_BITS)] + [0]
    if cell * len(bits) > out.shape[1] or cell > out.shape[0]:
        raise ValueError(f"frame {out.shape[1]}x{out.shape[0]} is too small for the counter")
    for i, bit in enumerate(bits):
        out[:cell, i * cell:(i + 1) * cell] = 255 if bit else 0
    return out


def read_counter(frame_bgr: np.ndarray) -> int | None:
    """The counter `burn_counter` drew, or None when the start and stop squares are not there
    (a frame that carries no counter, or one too damaged to trust)."""
    cell = _cell_px(frame_bgr.shape[1])
    margin = max(1, cell // 4)     # read the middle of each square: its edges blur
    levels = [float(frame_bgr[margin:cell - margin, i * cell + margin:(i + 1) * cell - margin]
                    .mean()) for i in range(COUNTER_BITS + 2)]
    if levels[0] < 170 or levels[-1] > 85:
        return None
    if any(85 < level < 170 for level in levels[1:-1]):
        return None                # a square neither black nor white: do not guess
    value = 0
    for level in levels[1:-1]:
        value = (value << 1) | (level >= 128)
    return value

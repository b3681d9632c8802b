"""Reading images and masks from disk into the one layout the pipeline uses.

Every image becomes `frame_bgr`: uint8, shape [H, W, 3], OpenCV's BGR order. Grayscale is
replicated to three channels, alpha is dropped (composited on black would invent colours, so it
is simply ignored), and 16-bit or float images are scaled to 0..255.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def to_bgr_u8(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Any 2-D or 3-D image array (gray, BGR, BGRA; uint8/uint16/float) -> uint8 BGR [H, W, 3]."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        shape = getattr(image, "shape", None)
        raise DataError(f"{what}: expected an image array [H, W] or [H, W, C], got shape {shape}")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise DataError(f"{what}: expected 1, 3 or 4 channels, got {image.shape[2]}")
    if image.dtype == np.uint8:
        u8 = image
    elif image.dtype == np.uint16:
        u8 = (image >> 8).astype(np.uint8)  # 16-bit sensors: keep the top 8 bits
    elif np.issubdtype(image.dtype, np.floating):
        finite = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0  # [0, 1] floats or 0..255
        u8 = np.clip(finite * scale, 0, 255).astype(np.uint8)
    elif np.issubdtype(image.dtype, np.integer) or image.dtype == bool:
        u8 = np.clip(image, 0, 255).astype(np.uint8)
    else:
        raise DataError(f"{what}: unsupported pixel type {image.dtype}")
    if u8.ndim == 2 or u8.shape[2] == 1:
        return cv2.cvtColor(u8.reshape(u8.shape[:2]), cv2.COLOR_GRAY2BGR)
    if u8.shape[2] == 4:
        return np.ascontiguousarray(u8[:, :, :3])
    return u8


def read_image_bgr(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 BGR [H, W, 3]; DataError if missing, corrupt or empty."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} does not exist")
    data = np.fromfile(str(path), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise DataError(f"image {path} is not a readable image (corrupt or unsupported format)")
    return to_bgr_u8(image, what=f"image {path}")


def read_mask(path: str | Path) -> np.ndarray:
    """A corrosion mask as bool [H, W]: any non-black pixel is corrosion (palette PNGs too)."""
    return read_state_mask(path) > 0


# vt_corrosion palette as OpenCV reads it (BGR): Fair (0,0,128), Poor (0,128,0),
# Severe (0,128,128). A channel above half its palette level counts as set.
_CHANNEL_ON = 64


def read_state_mask(path: str | Path) -> np.ndarray:
    """A condition-state mask as uint8 [H, W]: 0 background, 1 Fair, 2 Poor, 3 Severe."""
    path = Path(path)
    data = np.fromfile(str(path), np.uint8) if path.is_file() else np.zeros(0, np.uint8)
    mask = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if mask is None:
        raise DataError(f"mask {path} is missing or not a readable image")
    return state_mask_from_bgr(mask)


def state_mask_from_bgr(mask_bgr: np.ndarray) -> np.ndarray:
    """A vt_corrosion palette mask (uint8 BGR [H, W, 3]) -> uint8 [H, W] states. Any other
    non-black colour counts as Fair: corrosion of an unknown state is at least Fair, so a
    binary mask (white = rust) reads as all Fair."""
    palette = mask_bgr[..., 0] < _CHANNEL_ON          # no palette state uses blue
    green = palette & (mask_bgr[..., 1] >= _CHANNEL_ON)
    red = mask_bgr[..., 2] >= _CHANNEL_ON
    states = (mask_bgr.max(axis=2) > 0).astype(np.uint8)
    states[green & ~red] = 2
    states[green & red] = 3
    return states


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

"""Synthetic inspection scenes with exact corrosion masks (numpy + OpenCV only, seeded).

A scene is a photo-like view of a structural surface (painted, galvanised or bare steel, or
concrete) with plate edges, seams and bolts, irregular textured rust patches from light
staining to heavy scale, and the things that fool a CAM: hard shadows, red/brown paint that is
not rust, blur and sensor noise. Every scene comes with the boolean mask of exactly the pixels
that were painted as rust (shadows and blur change how rust looks, never where it is).

Used by the tests, the demo (`synthetic://` source) and the benchmarks. All functions are
deterministic for a given seed.
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

SURFACES = ("painted", "galvanised", "bare_steel", "concrete")

# Paint colours (BGR) of coated steel; red/brown ones are the "not rust" decoys.
_PAINT_BGR = [(150, 150, 150), (140, 110, 60), (70, 120, 60), (200, 200, 200), (40, 170, 210),
              (110, 90, 80)]
_DECOY_PAINT_BGR = [(40, 40, 170), (30, 50, 120), (35, 70, 150), (50, 60, 95)]
# Rust palette in OpenCV HSV (H 0..180): orange-brown, from fresh stain to dark scale.
_RUST_HUE = (4, 19)
_RUST_SAT = (110, 230)
_RUST_VAL = (45, 190)
# Mask threshold on the rust opacity map: what is drawn at >= this opacity is "rust".
_MASK_OPACITY = 0.5


@dataclass(frozen=True)
class SceneOptions:
    """What a scene may contain. Fractions are of the frame area; probabilities per scene."""

    rust: bool = True               # False draws a scene with no corrosion at all
    surface: str | None = None      # one of SURFACES; None picks one at random
    max_patches: int = 4
    shadow_prob: float = 0.4
    decoy_paint_prob: float = 0.35
    blur_prob: float = 0.25
    noise_sigma: float = 4.0        # sensor noise, in 0..255 units (scaled at random 0.3..1.5x)
    patch_scale: float = 1.0        # rust patch size relative to the scene (clips use < 1)


def fractal_noise(rng: np.random.Generator, height: int, width: int, base_cells: int = 4,
                  octaves: int = 4, persistence: float = 0.5) -> np.ndarray:
    """Smooth multi-octave value noise, float32 in [0, 1], shape (height, width)."""
    total = np.zeros((height, width), np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        cells = base_cells * 2 ** octave
        grid_h = max(2, int(round(cells * height / max(height, width))) + 1)
        grid_w = max(2, int(round(cells * width / max(height, width))) + 1)
        grid = rng.random((grid_h, grid_w), dtype=np.float32)
        total += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        norm += amplitude
        amplitude *= persistence
    total /= norm
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / (hi - lo + 1e-6)


def make_scene(height: int, width: int, seed: int,
               options: SceneOptions = SceneOptions()) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (frame_bgr uint8 [H, W, 3], mask bool [H, W] true where rust was drawn)."""
    if height < 1 or width < 1:
        raise ValueError(f"scene size must be positive, got {width}x{height}")
    rng = np.random.default_rng(seed)
    surface = options.surface or SURFACES[rng.integers(len(SURFACES))]
    if surface not in SURFACES:
        raise ValueError(f"unknown surface {surface!r}; expected one of {', '.join(SURFACES)}")
    frame = _surface(rng, height, width, surface)
    _draw_structure(rng, frame)
    if rng.random() < options.decoy_paint_prob:
        _draw_decoy_paint(rng, frame)
    mask = np.zeros((height, width), bool)
    if options.rust:
        opacity = _rust_opacity(rng, height, width, options.max_patches, options.patch_scale)
        _paint_rust(rng, frame, opacity)
        mask = opacity >= _MASK_OPACITY
    if rng.random() < options.shadow_prob:
        _cast_shadow(rng, frame)
    if rng.random() < options.blur_prob:
        sigma = rng.uniform(0.8, 2.5) * max(height, width) / 640
        frame[:] = cv2.GaussianBlur(frame, (0, 0), max(sigma, 0.3))
    noise = rng.normal(0, options.noise_sigma * rng.uniform(0.3, 1.5), frame.shape)
    frame = np.clip(frame + noise, 0, 255).astype(np.uint8)
    return frame, mask


def make_state_scene(height: int, width: int, seed: int,
                     options: SceneOptions = SceneOptions()) -> tuple[np.ndarray, np.ndarray]:
    """A scene whose rust patches each have a condition state, drawn as inspectors see them:
    (frame_bgr uint8 [H, W, 3], states uint8 [H, W]: 0 background, 1 Fair, 2 Poor, 3 Severe).

    Fair is a thin, light stain; Poor is darker scale with pitting; Severe is dark, heavily
    pitted pack rust. A later patch paints over an earlier one, and the map says so."""
    rng = np.random.default_rng(seed)
    surface = options.surface or SURFACES[rng.integers(len(SURFACES))]
    frame = _surface(rng, height, width, surface)
    _draw_structure(rng, frame)
    states = np.zeros((height, width), np.uint8)
    if options.rust:
        for _ in range(int(rng.integers(1, max(1, options.max_patches) + 1))):
            level = int(rng.integers(1, 4))
            opacity = _rust_opacity(rng, height, width, 1, options.patch_scale)
            _paint_state_rust(rng, frame, opacity, level)
            states[opacity >= _MASK_OPACITY] = level
    noise = rng.normal(0, options.noise_sigma * rng.uniform(0.3, 1.5), frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8), states


# Per state: (value range 0..255, share of pitted pixels, opacity) of the painted rust.
_STATE_LOOKS = {1: ((150, 190), 0.0, 0.7), 2: ((85, 115), 0.03, 0.95), 3: ((35, 60), 0.12, 1.0)}


def _paint_state_rust(rng: np.random.Generator, frame: np.ndarray, opacity: np.ndarray,
                      level: int) -> None:
    """Blend rust of one condition state into the frame where opacity > 0, in place."""
    h, w = opacity.shape
    (v_lo, v_hi), pit_share, strength = _STATE_LOOKS[level]
    grain = fractal_noise(rng, h, w, base_cells=64, octaves=2)
    hue = rng.uniform(*_RUST_HUE) + 3 * (grain - 0.5)
    sat = np.full((h, w), rng.uniform(*_RUST_SAT), np.float32)
    val = rng.uniform(v_lo, v_hi) * (0.8 + 0.4 * grain)
    hsv = np.stack([np.clip(hue, 0, 179), np.clip(sat, 0, 255), np.clip(val, 0, 255)], -1)
    rust_bgr = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    pits = (rng.random((h, w), dtype=np.float32) < pit_share)[..., None]
    rust_bgr = np.where(pits, rust_bgr * 0.35, rust_bgr)
    alpha = np.clip(opacity * strength, 0, 1)[..., None]
    frame[:] = frame * (1 - alpha) + rust_bgr * alpha


def _surface(rng: np.random.Generator, h: int, w: int, surface: str) -> np.ndarray:
    """Base texture of the surface, float32 BGR in 0..255."""
    low = fractal_noise(rng, h, w, base_cells=3, octaves=3)[..., None]
    fine = fractal_noise(rng, h, w, base_cells=48, octaves=2)[..., None]
    if surface == "painted":
        colour = np.array(_PAINT_BGR[rng.integers(len(_PAINT_BGR))], np.float32)
        frame = colour * (0.85 + 0.3 * low) + 8 * (fine - 0.5)
    elif surface == "galvanised":
        spangle = fractal_noise(rng, h, w, base_cells=24, octaves=1)
        spangle = np.floor(spangle * 6) / 6  # flat facets like zinc spangle
        grey = 120 + 60 * spangle[..., None] + 30 * (low - 0.5)
        frame = np.repeat(grey, 3, axis=2) * np.array([1.02, 1.0, 0.97], np.float32)
    elif surface == "bare_steel":
        streaks = cv2.blur(rng.random((h, w), dtype=np.float32), (max(3, w // 8), 1))
        grey = 70 + 50 * low + 40 * (streaks[..., None] - 0.5)
        frame = np.repeat(grey, 3, axis=2) * np.array([1.05, 1.0, 0.95], np.float32)
    else:  # concrete
        speckle = (rng.random((h, w, 1), dtype=np.float32) - 0.5) * 30
        grey = 150 + 40 * (low - 0.5) + 20 * (fine - 0.5) + speckle
        frame = np.repeat(grey, 3, axis=2) * np.array([0.98, 1.0, 1.02], np.float32)
        for _ in range(int(h * w / 4000)):  # aggregate pits
            cv2.circle(frame, (int(rng.integers(w)), int(rng.integers(h))),
                       int(rng.integers(1, 3)), (90, 92, 95), -1)
    return np.ascontiguousarray(frame, np.float32)


def _draw_structure(rng: np.random.Generator, frame: np.ndarray) -> None:
    """Plate edges (light/dark line pairs), weld seams and bolt rows, in place."""
    h, w = frame.shape[:2]
    scale = max(h, w) / 640
    for _ in range(rng.integers(1, 4)):
        if rng.random() < 0.5:
            y = int(rng.integers(h))
            p0, p1, offset = (0, y), (w, y + int(rng.integers(-h // 8, h // 8 + 1))), (0, 2)
        else:
            x = int(rng.integers(w))
            p0, p1, offset = (x, 0), (x + int(rng.integers(-w // 8, w // 8 + 1)), h), (2, 0)
        thick = max(1, int(2 * scale))
        cv2.line(frame, p0, p1, (35, 35, 35), thick + 1)
        cv2.line(frame, (p0[0] + offset[0], p0[1] + offset[1]),
                 (p1[0] + offset[0], p1[1] + offset[1]), (215, 215, 215), thick)
        if rng.random() < 0.5:  # a row of bolts along the edge
            count = int(rng.integers(3, 8))
            radius = max(2, int(rng.uniform(5, 10) * scale))
            for t in np.linspace(0.1, 0.9, count):
                cx = int(p0[0] + t * (p1[0] - p0[0])) + 4 * radius * (offset[1] > 0)
                cy = int(p0[1] + t * (p1[1] - p0[1])) + 4 * radius * (offset[0] > 0)
                cv2.circle(frame, (cx, cy), radius, (60, 60, 60), -1)
                cv2.circle(frame, (cx - radius // 3, cy - radius // 3), max(1, radius // 3),
                           (200, 200, 200), -1)
    if rng.random() < 0.4:  # weld seam: a bumpy bead
        y = int(rng.integers(h))
        for x in range(0, w, max(2, int(4 * scale))):
            cv2.circle(frame, (x, y + int(rng.integers(-1, 2))), max(1, int(3 * scale)),
                       (110, 112, 115), -1)


def _draw_decoy_paint(rng: np.random.Generator, frame: np.ndarray) -> None:
    """Red/brown paint that is NOT corrosion: flat colour, straight edges, in place."""
    h, w = frame.shape[:2]
    colour = np.array(_DECOY_PAINT_BGR[rng.integers(len(_DECOY_PAINT_BGR))], np.float32)
    shade = 0.9 + 0.2 * fractal_noise(rng, h, w, base_cells=2, octaves=2)[..., None]
    region = np.zeros((h, w), np.uint8)
    if rng.random() < 0.5:  # a painted band or marking
        x0, y0 = int(rng.integers(w)), int(rng.integers(h))
        cv2.rectangle(region, (x0, y0), (x0 + int(rng.integers(w // 8, w // 2)),
                                         y0 + int(rng.integers(h // 10, h // 3))), 1, -1)
    else:  # a painted triangle/warning shape
        pts = rng.integers(0, [w, h], size=(3, 2)).astype(np.int32)
        cv2.fillPoly(region, [pts], 1)
    sel = region.astype(bool)
    frame[sel] = (colour * shade)[sel]


def _rust_opacity(rng: np.random.Generator, h: int, w: int, max_patches: int,
                  patch_scale: float) -> np.ndarray:
    """Opacity of rust, float32 [0, 1]: irregular blobs with fractal edges and drip streaks."""
    opacity = np.zeros((h, w), np.float32)
    rough = fractal_noise(rng, h, w, base_cells=max(6, int(6 / patch_scale)), octaves=5,
                          persistence=0.6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(1, max(1, max_patches) + 1))):
        cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
        ry = rng.uniform(0.06, 0.3) * h * patch_scale
        rx = rng.uniform(0.06, 0.3) * w * patch_scale
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        radial = np.sqrt(u * u + v * v)
        # The fractal term makes the edge ragged; the steep ramp keeps the boundary crisp.
        field = 1.0 - radial + 0.8 * (rough - 0.5)
        opacity = np.maximum(opacity, np.clip(field * 6.0 + 0.5, 0, 1))
        if rng.random() < 0.5:  # a rust run dripping down from the patch
            x0 = int(np.clip(cx + rng.uniform(-0.5, 0.5) * rx, 0, w - 1))
            length = int(rng.uniform(0.5, 1.5) * ry)
            width = max(2, int(rng.uniform(0.05, 0.15) * rx))
            streak = np.zeros((h, w), np.float32)
            cv2.line(streak, (x0, int(cy)), (x0 + int(rng.integers(-3, 4)), int(cy) + length),
                     1.0, width)
            opacity = np.maximum(opacity, streak)
    return opacity


def _paint_rust(rng: np.random.Generator, frame: np.ndarray, opacity: np.ndarray) -> None:
    """Blend textured rust (stain to scale) into the frame where opacity > 0, in place."""
    h, w = opacity.shape
    heavy = fractal_noise(rng, h, w, base_cells=5, octaves=3)  # 0 = light stain, 1 = heavy scale
    grain = fractal_noise(rng, h, w, base_cells=64, octaves=2)
    severity = rng.uniform(0.2, 1.0)
    hue = rng.uniform(*_RUST_HUE) + 3 * (grain - 0.5)
    sat = rng.uniform(*_RUST_SAT) * (0.8 + 0.3 * heavy)
    val = rng.uniform(*_RUST_VAL) * (1.1 - 0.5 * severity * heavy) * (0.75 + 0.5 * grain)
    hsv = np.stack([np.clip(hue, 0, 179), np.clip(sat, 0, 255), np.clip(val, 0, 255)], -1)
    rust_bgr = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    pits = (rng.random((h, w), dtype=np.float32) < 0.02 * severity)[..., None]
    rust_bgr = np.where(pits, rust_bgr * 0.45, rust_bgr)  # dark pitting in heavy scale
    alpha = np.clip(opacity * rng.uniform(0.85, 1.0), 0, 1)[..., None]
    frame[:] = frame * (1 - alpha) + rust_bgr * alpha


def _cast_shadow(rng: np.random.Generator, frame: np.ndarray) -> None:
    """A hard-edged shadow (a beam or a cable) darkening a polygon, in place."""
    h, w = frame.shape[:2]
    region = np.zeros((h, w), np.float32)
    if rng.random() < 0.6:
        pts = rng.integers(0, [w, h], size=(4, 2)).astype(np.int32)
        cv2.fillPoly(region, [cv2.convexHull(pts)], 1.0)
    else:
        y0 = int(rng.integers(h))
        cv2.line(region, (0, y0), (w, y0 + int(rng.integers(-h // 4, h // 4 + 1))), 1.0,
                 int(rng.integers(max(2, h // 20), max(3, h // 5))))
    region = cv2.GaussianBlur(region, (0, 0), 1.0)[..., None]
    frame[:] = frame * (1 - region * rng.uniform(0.4, 0.65))


# --- folders and clips ----------------------------------------------------------------------

def write_classification_folder(root: str | Path, n_per_class: int, size: int = 224,
                                seed: int = 0, options: SceneOptions = SceneOptions()) -> Path:
    """`root/corrosion/*.png` and `root/no_corrosion/*.png`, n_per_class each. Returns root.

    `options` shapes both classes' scenes; only its `rust` flag is set per class."""
    root = Path(root)
    for label, rust in (("corrosion", True), ("no_corrosion", False)):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            frame, _ = make_scene(size, size, seed=_mix(seed, i, rust),
                                  options=dataclasses.replace(options, rust=rust))
            cv2.imwrite(str(root / label / f"{label}_{i:04d}.png"), frame)
    return root


def write_mask_folder(root: str | Path, n_images: int, height: int = 256, width: int = 256,
                      seed: int = 0) -> Path:
    """`root/images/N.png` with `root/masks/N.png` (255 = rust, 0 = background). Returns root."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        frame, mask = make_scene(height, width, seed=_mix(seed, i, True))
        cv2.imwrite(str(root / "images" / f"{i}.png"), frame)
        cv2.imwrite(str(root / "masks" / f"{i}.png"), mask.astype(np.uint8) * 255)
    return root


def iter_clip(width: int, height: int, frames: int, seed: int = 0,
              ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A moving-camera clip: (frame_bgr, mask) pairs panning and zooming over one large scene.

    The scene is 2.5x the frame on each side; the camera follows a smooth Lissajous path and
    zooms between 1x and 1.6x, so rust moves across the view like a drone inspection pass.
    """
    if frames < 0:
        raise ValueError(f"frames must be >= 0, got {frames}")
    scene_w, scene_h = int(width * 2.5), int(height * 2.5)
    options = SceneOptions(max_patches=12, patch_scale=0.5, blur_prob=0.0)
    scene, scene_mask = make_scene(scene_h, scene_w, seed, options)
    mask_u8 = scene_mask.astype(np.uint8)
    for i in range(frames):
        t = 2 * np.pi * i / max(frames, 1)
        zoom = 1.3 + 0.3 * np.sin(1.5 * t)
        view_w, view_h = scene_w / 2.5 / zoom * 1.6, scene_h / 2.5 / zoom * 1.6
        cx = scene_w / 2 + (scene_w - view_w) / 2 * 0.9 * np.sin(t)
        cy = scene_h / 2 + (scene_h - view_h) / 2 * 0.9 * np.sin(2 * t + 0.5)
        sx, sy = width / view_w, height / view_h
        affine = np.array([[sx, 0, width / 2 - sx * cx], [0, sy, height / 2 - sy * cy]],
                          np.float32)
        frame = cv2.warpAffine(scene, affine, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        mask = cv2.warpAffine(mask_u8, affine, (width, height), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_REFLECT)
        yield frame, mask.astype(bool)


def _mix(seed: int, index: int, rust: bool) -> int:
    """Distinct, reproducible per-image seeds for folders (positives and negatives differ)."""
    return (seed * 1_000_003 + index * 2 + int(rust)) % (2**32)


def write_clip_video(path: str | Path, width: int, height: int, frames: int, seed: int = 0,
                     fps: float = 10.0) -> Path:
    """`iter_clip` written as an MJPEG .avi (what the batch tests and benchmarks read back)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot open a video writer for {path}")
    try:
        for frame_bgr, _mask in iter_clip(width, height, frames, seed):
            writer.write(frame_bgr)
    finally:
        writer.release()
    return path

"""Shared fixtures: paths to the real data (skipped when absent) and tiny models built once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RUSTSEG_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_MODEL = ROOT / "models" / "rustseg_default.tflite"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (a fresh checkout has no ../shared)")
    return path


def has_tensorflow() -> bool:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


needs_tf = pytest.mark.skipif(not has_tensorflow(), reason="needs the train extra (TensorFlow)")


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable


def video_frames(path) -> int:
    """Frames a video file really holds, decoded one by one (its header may say otherwise)."""
    import cv2  # here, not at the top: conftest is imported before any test needs OpenCV
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count

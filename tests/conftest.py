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


LIVE_TEST_SOURCE = "synthetic://?width=160&height=120&frames=0&fps=30"  # a paced camera


def start_logged_run(log: Path, *args: str, lines: int = 10, timeout_s: float = 60,
                     **popen):
    """A headless `rustseg run` of LIVE_TEST_SOURCE logging to `log`, returned once `lines`
    frames are logged (or `timeout_s` has passed: the caller's assertions then say why)."""
    import subprocess
    import time
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--source", LIVE_TEST_SOURCE, "--log",
         str(log), "--quiet", "--headless", *args], cwd=ROOT, **popen)
    deadline = time.time() + timeout_s
    while time.time() < deadline and (not log.exists() or log.read_text().count("\n") < lines):
        time.sleep(0.2)
    return process


def output_frame(index: int, image, mask=None, name: str | None = None, **record):
    """The OutputFrame the loop would hand its sinks for frame `index`: `record` sets fields of
    its FrameRecord (times and score default to 0), `mask` defaults to nothing marked."""
    import numpy as np
    from edge.outputs import FrameRecord, OutputFrame

    name = str(index) if name is None else name
    mask = np.zeros(image.shape[:2], bool) if mask is None else mask
    fields = {"captured_at": 0.0, "output_at": 0.0, "score": 0.0, **record}
    return OutputFrame(index, name, image, mask, FrameRecord(index, name, **fields))

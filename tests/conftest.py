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


TINY_SIZE = 96     # input side of the tiny models: seg is 12x12, cam (out_relu) 3x3


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A random classifier exported twice: without (v1) and with (v2) a random seg head."""
    pytest.importorskip("tensorflow")
    import keras

    from converter.export import ExportRequest, export
    from converter.model import build_classifier
    from converter.student import attach_head

    keras.utils.set_random_seed(5)
    folder = tmp_path_factory.mktemp("v2")
    classifier = build_classifier(TINY_SIZE, 0.35, None, 0.0)
    classifier.save(folder / "v1.keras")
    attach_head(classifier).save(folder / "v2.keras")
    paths = {}
    for name in ("v1", "v2"):
        paths[name] = folder / f"{name}.tflite"
        export(ExportRequest(str(folder / f"{name}.keras"), str(paths[name]), "float32",
                             "out_relu", TINY_SIZE, verify_images=0))
    paths["keras_v2"] = folder / "v2.keras"
    return paths


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

"""What the reliability tests (test_bad_input, test_faults, test_live_feed,
test_exit_codes) share: the CLI in a subprocess, the one-line error check, the loop run on given
sinks, a counting sink, a flaky camera device, and the threads a test left behind."""

import subprocess
import sys
import threading
import time

from conftest import ROOT
from edge.data.synthetic import make_scene
from edge.live.app import build_segmenter
from edge.live.pipeline import LoopOptions, Pipeline
from edge.outputs import FrameSink


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=timeout)


def assert_one_line_error(result, code, *fragments):
    assert result.returncode == code, (result.returncode, result.stderr)
    error_lines = [l for l in result.stderr.splitlines() if l.startswith("rustseg: error:")]
    assert len(error_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


class FlakyDevice:
    """A camera device (cv2.VideoCapture's read/release) that gives `frames` frames."""

    def __init__(self, frames: int) -> None:
        self.left, self.released = frames, False

    def read(self):
        time.sleep(0.01)
        if self.left <= 0:
            return False, None
        self.left -= 1
        return True, make_scene(48, 64, self.left)[0]

    def release(self) -> None:
        self.released = True


def run_with(source, config, sinks=(), frames=0):
    options = LoopOptions(frames=frames, overlay=config.overlay,
                          sink_error_policy=config.loop.sink_error_policy)
    return Pipeline(source, build_segmenter(config), list(sinks), options).run()


class Counter(FrameSink):
    name, count = "counter", 0

    def write(self, frame):
        self.count += 1

    def close(self):
        pass


def threads_started_since(before: set) -> list:
    """Threads alive now that were not in `before` (threading.enumerate() then): what a test
    itself left running, whatever other threads the process has."""
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()

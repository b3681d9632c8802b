"""Native libraries' chatter kept out of normal output, and let through with --verbose.

FFmpeg (inside OpenCV) prints decoder complaints such as "[mjpeg @ 0x...] overread 8", OpenCV
its own "[ WARN:0@...]" lines, and the TFLite runtime "INFO: Created TensorFlow Lite XNNPACK
delegate for CPU." on first use. None of them is addressed to the inspector: rustseg reports
what matters in its own words. They print from C straight to file descriptor 2, so Python's
logging cannot filter them: the FFmpeg level is set through its environment variable,
OpenCV's through its API, and the TFLite line is caught on fd 2 around the one call that
prints it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager

_AV_LOG_QUIET = "-8"      # FFmpeg's quiet level; OpenCV reads it when it first loads FFmpeg
_state = {"verbose": True}  # library default: hide nothing; the CLI decides


def configure(verbose: bool) -> None:
    """Hide native log lines unless `verbose`. Call before the first video is opened."""
    _state["verbose"] = verbose
    if not verbose:
        import cv2

        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", _AV_LOG_QUIET)
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


@contextmanager
def tflite_info_hidden():
    """Run the block with fd 2 captured, then pass on every line except TFLite's "INFO: "
    lines (warnings and errors still reach the terminal, only later)."""
    if _state["verbose"]:
        yield
        return
    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True)
                    if not line.startswith("INFO: ")]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()

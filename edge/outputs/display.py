"""`display://0`: an OpenCV window (q or Esc stops the run)."""

from __future__ import annotations

import cv2

from edge.errors import SinkError
from edge.outputs.base import FrameSink, OutputFrame

_QUIT_KEYS = (ord("q"), 27)  # q and Esc


class DisplaySink(FrameSink):
    """An OpenCV window; pressing q or Esc asks the loop to stop."""

    def __init__(self, title: str = "RustSEG Edge") -> None:
        if not display_available():
            raise SinkError("output display://: this OpenCV has no GUI support "
                            "(opencv-python-headless); use http://127.0.0.1:8080 instead, or "
                            "install opencv-python")
        self.title, self.name = title, "display"
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def write(self, frame: OutputFrame) -> None:
        cv2.imshow(self.title, frame.overlay_bgr)
        if (cv2.waitKey(1) & 0xFF) in _QUIT_KEYS:
            self.wants_stop = True

    def close(self) -> None:
        cv2.destroyWindow(self.title)


def display_available() -> bool:
    import re
    match = re.search(r"GUI:\s*(\S+)", cv2.getBuildInformation())
    return bool(match and match.group(1).upper() != "NONE")

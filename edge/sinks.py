"""Outputs behind one interface: every sink gets every finished frame through `write`.

    display://0          an OpenCV window (q or Esc stops the run)
    out.mp4 / out.avi    a video file of the overlay (closed properly on Ctrl-C / SIGTERM)
    dir/                 one overlay JPEG per frame
    http://HOST:PORT     the inspector's live page (edge/http_feed.py)
    --log frames.jsonl   one JSON record per frame, flushed as it goes
    --save-masks DIR     one binary PNG mask per frame (named after the image for image sources)

Building a sink checks that it can write (and fails at start with the OS's reason) but writes
nothing: `start()` does the first write (the log is truncated there), after the run has checked
with `writes_to` that no output would replace a source file. A sink raises SinkError when it
cannot write; the loop then applies loop.sink_error_policy (drop that sink and go on, or stop
cleanly).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np

from edge.errors import SinkError
from edge.writable import check_writable, disk_full, make_folder

_VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
_IMAGE_QUALITY = 90
_QUIT_KEYS = (ord("q"), 27)  # q and Esc


@dataclass
class OutputFrame:
    """What the loop hands every sink for one frame."""

    index: int
    name: str                    # image stem or zero-padded index
    overlay_bgr: np.ndarray      # uint8 [H, W, 3] frame with mask, heatmap and HUD drawn
    mask: np.ndarray             # bool [H, W]
    record: dict = field(default_factory=dict)   # the JSON log record of this frame
    frame_bgr: np.ndarray | None = None          # uint8 [H, W, 3] the frame as captured


class FrameSink(ABC):
    name = "sink"
    wants_stop = False           # a sink may ask the loop to stop (display window closed)

    def __enter__(self) -> "FrameSink":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Acquire what writes files (called once the run knows no source gets overwritten)."""

    def writes_to(self, frame_name: str | None) -> Path | None:
        """The file this sink writes for the frame named `frame_name` (None: a frame whose name
        is not known up front), or None when it writes no file."""
        return None

    def owned_folder(self) -> Path | None:
        """A folder this sink writes files of its own choosing into (a run record), so no
        source file may lie inside it; None for sinks that name each file via `writes_to`."""
        return None

    @abstractmethod
    def write(self, frame: OutputFrame) -> None: ...

    def close(self) -> None:
        """Flush and release; safe to call twice."""


class VideoFileSink(FrameSink):
    """mp4 (mp4v) or avi (MJPG) of the overlay; opened on the first frame (its size)."""

    def __init__(self, path: Path, fps: float) -> None:
        suffix = path.suffix.lower()
        if suffix not in _VIDEO_CODECS:
            raise SinkError(f"output {path}: expected a .mp4 or .avi file")
        if not path.parent.exists():
            raise SinkError(f"output {path}: folder {path.parent} does not exist")
        try:
            check_writable(path)  # OpenCV only says "could not open", and only at frame 1
        except OSError as exc:
            raise SinkError(f"output {path}: cannot write ({exc.strerror})") from None
        self.path, self.fps = path, fps
        self.name = str(path)
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] | None = None
        self.written = 0

    def writes_to(self, frame_name: str | None) -> Path:
        return self.path

    def write(self, frame: OutputFrame) -> None:
        image = frame.overlay_bgr
        size = (image.shape[1], image.shape[0])
        if self.writer is None:
            self.writer = cv2.VideoWriter(str(self.path),
                                          cv2.VideoWriter_fourcc(*_VIDEO_CODECS[self.path.suffix.lower()]),
                                          self.fps, size)
            if not self.writer.isOpened():
                raise SinkError(f"output {self.path}: could not open a video writer")
            self.size = size
        elif size != self.size:  # a video has one frame size; later frames are fitted to it
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.written += 1
        if not self.path.exists() or (self.written % 30 == 0 and disk_full(self.path.parent)):
            raise SinkError(f"output {self.path}: the disk is full or the file vanished")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()  # writes the index (moov atom): the file is playable
            self.writer = None


class _FolderSink(FrameSink):
    """One image file per frame, FOLDER/NAME.SUFFIX, NAME being the frame's unique name."""

    suffix = ".jpg"

    def __init__(self, folder: Path, label: str, name: str) -> None:
        try:
            make_folder(folder)
        except OSError as exc:
            raise SinkError(f"{label} {folder}: cannot create the folder ({exc.strerror})") \
                from None
        self.folder, self.name = folder, name

    def writes_to(self, frame_name: str | None) -> Path | None:
        return None if frame_name is None else self.folder / f"{frame_name}{self.suffix}"


class ImageFolderSink(_FolderSink):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder, "output", str(folder))

    def write(self, frame: OutputFrame) -> None:
        write_image(self.writes_to(frame.name), frame.overlay_bgr,
                 [cv2.IMWRITE_JPEG_QUALITY, _IMAGE_QUALITY])


class MaskFolderSink(_FolderSink):
    """Binary PNG masks (255 = corrosion), one per frame, named after the frame."""

    suffix = ".png"

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, "--save-masks", f"masks {folder}")

    def write(self, frame: OutputFrame) -> None:
        write_image(self.writes_to(frame.name), frame.mask.astype(np.uint8) * 255, [])


class JsonlLogSink(FrameSink):
    """One JSON object per line, flushed after each so a crash loses at most one line."""

    def __init__(self, path: Path) -> None:
        try:
            make_folder(path.parent)
            check_writable(path)
        except OSError as exc:
            raise SinkError(f"--log {path}: cannot write ({exc.strerror})") from None
        self.path, self.name = path, f"log {path}"
        self.file = None

    def start(self) -> None:
        if self.file is not None:
            return
        try:
            self.file = open(self.path, "w", buffering=1)
        except OSError as exc:
            raise SinkError(f"--log {self.path}: cannot write ({exc.strerror})") from None

    def writes_to(self, frame_name: str | None) -> Path:
        return self.path

    def write(self, frame: OutputFrame) -> None:
        try:
            self.file.write(json.dumps(frame.record, separators=(",", ":")) + "\n")
            self.file.flush()
        except OSError as exc:
            raise SinkError(f"--log {self.path}: write failed ({exc.strerror})") from None

    def close(self) -> None:
        if self.file is not None and not self.file.closed:
            try:
                self.file.flush()
                os.fsync(self.file.fileno())
            except OSError:
                pass  # nothing more can be saved; closing still releases the handle
            self.file.close()


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


def write_image(path: Path, image: np.ndarray, params: list) -> None:
    """Encode by `path`'s suffix and write; SinkError (one line) when that fails."""
    ok, encoded = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise SinkError(f"output {path}: could not encode the image")
    try:
        encoded.tofile(str(path))
    except OSError as exc:
        raise SinkError(f"output {path}: write failed ({exc.strerror or exc})") from None


def open_output(uri: str, fps: float, http_settings=None, headless: bool = False,
                overlay=None) -> FrameSink:
    """The sink an --output URI names; SinkError (one line) for anything malformed."""
    uri = str(uri).strip()
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower() if len(parsed.scheme) > 1 else ""
    if scheme == "display":
        if headless:
            raise SinkError("output display:// cannot be used with --headless")
        return DisplaySink()
    if scheme in ("http", "https"):
        if scheme == "https":
            raise SinkError(f"output {uri}: https is not served; use http:// behind a TLS proxy")
        from edge.http_feed import HttpFeedSink
        return HttpFeedSink.from_uri(uri, http_settings, overlay)
    if scheme:
        raise SinkError(f"output {uri!r}: unknown scheme {scheme}://; expected display://0, "
                        "a .mp4/.avi file, a folder/ or http://HOST:PORT")
    if not uri:
        raise SinkError("output is empty; expected display://0, a .mp4/.avi file, a folder/ or "
                        "http://HOST:PORT")
    path = Path(uri).expanduser()
    if path.suffix.lower() in _VIDEO_CODECS:
        return VideoFileSink(path, fps)
    if uri.endswith(("/", os.sep)) or path.is_dir() or not path.suffix:
        return ImageFolderSink(path)
    raise SinkError(f"output {uri}: unsupported file type {path.suffix}; expected .mp4, .avi, "
                    "a folder/ or a URI")

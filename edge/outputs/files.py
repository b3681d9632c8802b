"""Outputs that write files or lines: the overlay video, one overlay JPEG per frame, the masks,
the per-frame JSON log and the terminal's per-frame line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from edge.errors import SinkError
from edge.outputs.base import FrameSink, OutputFrame, write_image
from edge.untrusted import OpenCvPath
from edge.writable import check_writable, disk_full, make_folder

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
_IMAGE_QUALITY = 90


class VideoFileSink(FrameSink):
    """mp4 (mp4v) or avi (MJPG) of the overlay; opened on the first frame (its size)."""

    def __init__(self, path: Path, fps: float) -> None:
        suffix = path.suffix.lower()
        if suffix not in VIDEO_CODECS:
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
            self._opencv_path = OpenCvPath(self.path)  # any file name, even one not UTF-8
            self.writer = cv2.VideoWriter(self._opencv_path.path,
                                          cv2.VideoWriter_fourcc(*VIDEO_CODECS[self.path.suffix.lower()]),
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
            self._opencv_path.close()


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
            self.file.write(json.dumps(frame.record.to_json(), separators=(",", ":")) + "\n")
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


class FrameLineSink(FrameSink):
    """One line per frame (FrameRecord.line) on a text stream the caller owns (the CLI gives
    stdout). A view, not an output: a stream whose reader has gone (`| head`) ends the run."""

    is_output = False

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.name = stream, "frame lines"

    def write(self, frame: OutputFrame) -> None:
        self.stream.write(frame.record.line() + "\n")
        self.stream.flush()

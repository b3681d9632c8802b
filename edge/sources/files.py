"""Every-frame sources: one image, a folder or a glob of images, and video files."""

from __future__ import annotations

import glob as globlib
import time
from collections import Counter
from pathlib import Path

import cv2

from edge.data.imageio import IMAGE_SUFFIXES, read_image_bgr
from edge.errors import DataError, SourceError
from edge.sources.base import Frame, FrameSource, checked_frame
from edge.untrusted import OpenCvPath

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".h264")


# --- every-frame sources --------------------------------------------------------------------

class ImageListSource(FrameSource):
    """A single image, a folder or a glob: every image once, in name order."""

    stills = True

    def __init__(self, paths: list[Path], describe: str) -> None:
        super().__init__()
        if not paths:
            raise SourceError(f"source {describe}: no images found "
                              f"({', '.join(IMAGE_SUFFIXES)})")
        self.paths, self.describe, self.position = paths, describe, 0
        self.names = unique_frame_names(paths)
        self.expected_frames = len(paths)

    def input_files(self) -> list[tuple[Path, str | None]]:
        return list(zip(self.paths, self.names))

    def read(self) -> Frame | None:
        while self.position < len(self.paths):
            path = self.paths[self.position]
            index = self.position
            self.position += 1
            try:
                image = read_image_bgr(path)
            except DataError as exc:
                if len(self.paths) == 1:  # the one image asked for must be readable
                    raise SourceError(str(exc)) from None
                self.skipped += 1
                self.warnings.append(str(exc))
                continue
            self.latest_index = index
            return Frame(index, checked_frame(image, str(path)), time.time(), self.names[index])
        self.ended = True
        return None


class VideoFileSource(FrameSource):
    """Every frame of a video file; restarts at the end with `loop`. A truncated file ends at
    the last decodable frame."""

    def __init__(self, path: Path, loop: bool) -> None:
        super().__init__()
        problem = file_problem(path)
        if problem:
            raise SourceError(f"source {path}: video file {problem}")
        self.path, self.loop = path, loop
        self._opencv_path = OpenCvPath(path)  # any file name, even one that is not UTF-8
        self.capture = cv2.VideoCapture(self._opencv_path.path)
        if not self.capture.isOpened():
            self._opencv_path.close()
            raise SourceError(f"source {path}: not a readable video (corrupt or unsupported codec)")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 0.0
        self.count = 0
        self.in_file = 0          # frames read since the file (re)started: its video time
        # The header's frame count, so a file that decodes fewer is known to be cut short
        # (a looping video has no end to count to).
        announced = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.expected_frames = announced if announced > 0 and not loop else None

    def input_files(self) -> list[tuple[Path, str | None]]:
        return [(self.path, None)]

    def read(self) -> Frame | None:
        ok, image = self.capture.read()
        if not ok and self.loop and self.count:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self.in_file = 0
            ok, image = self.capture.read()
        if not ok or image is None:
            if self.count == 0:
                raise SourceError(f"source {self.path}: no decodable frame (empty or truncated "
                                  "video)")
            self.ended = True
            return None
        index, media_time_s = self.count, self.in_file / self.fps if self.fps > 0 else None
        self.count += 1
        self.in_file += 1
        self.latest_index = index
        return Frame(index, checked_frame(image, str(self.path)), time.time(), f"{index:06d}",
                     media_time_s)

    def close(self) -> None:
        super().close()
        self.capture.release()
        self._opencv_path.close()


def unique_frame_names(paths: list[Path]) -> list[str]:
    """One distinct output name per image: the stem, or stem_suffix where stems clash (a.jpg
    and a.png), with a counter where even that clashes (a glob over several folders)."""
    stem_counts = Counter(p.stem for p in paths)
    names, used = [], set()
    for path in paths:
        stem = path.stem
        name = stem if stem_counts[stem] == 1 else f"{stem}_{path.suffix.lstrip('.').lower()}"
        candidate, n = name, 1
        while candidate in used:
            n += 1
            candidate = f"{name}_{n}"
        used.add(candidate)
        names.append(candidate)
    return names


def file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a video or image file, or None. A FIFO, socket or device
    is refused by name: reading (or hashing) one would wait for a writer that may never come."""
    if path.is_file():
        return None
    if path.exists() and not path.is_dir():
        return "is not a regular file (a FIFO, socket or device)"
    return "does not exist" if not path.exists() else "is a folder"


def is_glob(text: str) -> bool:
    """Whether `text` holds glob characters. Callers ask only after finding that no path of
    that name exists: an existing path (`DJI [1].mp4`) is always taken literally."""
    return any(ch in text for ch in "*?[")


def open_file_source(uri: str, loop_video: bool) -> FrameSource:
    path = Path(uri).expanduser()
    if not path.exists() and is_glob(uri):
        matches = sorted(Path(p) for p in globlib.glob(str(path))
                         if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        return ImageListSource(matches, uri)
    if path.is_dir():
        return ImageListSource(sorted(p for p in path.iterdir()
                                      if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), uri)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        problem = file_problem(path)
        if problem:
            raise SourceError(f"source {uri}: image file {problem}")
        return ImageListSource([path], uri)
    if suffix in VIDEO_SUFFIXES:
        return VideoFileSource(path, loop_video)
    if not path.exists():
        raise SourceError(f"source {uri!r} does not exist and is not a camera or URI")
    raise SourceError(f"source {uri}: unsupported file type {suffix or '(none)'}; expected an "
                      f"image ({', '.join(IMAGE_SUFFIXES)}) or a video "
                      f"({', '.join(VIDEO_SUFFIXES)})")


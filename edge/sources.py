"""Frame sources behind one interface, chosen from a URI (jetson-inference / Ultralytics style).

    0, /dev/video0, v4l2:///dev/video0     USB / V4L2 camera (OpenCV)
    csi://0                                Jetson CSI camera through GStreamer (nvarguscamerasrc)
    picam://0                              Raspberry Pi camera through picamera2
    rtsp://host/path                       network stream (FFmpeg)
    clip.mp4                               a video file (every frame; --loop restarts it)
    photo.jpg, folder/, 'shots/*.png'      one image, a folder or a glob (every image)
    synthetic://?width=640&height=480&frames=600&seed=1[&fps=30]
                                           the built-in scene generator; with fps it behaves
                                           like a live camera (paced, newest frame only)

Files and folders are "every frame" sources: `read()` returns each frame in turn. Live sources
run a capture thread that keeps only the newest frame and counts the ones it overwrote
(`dropped`), so a slow pipeline always works on the present. Opening at start-up and
reopening after a loss are the same thing: tries with doubling backoff, given up after
`reconnect_timeout_s` (on a rig the computer often boots before the camera). The open runs on
the capture thread while the caller waits in short steps, so a stream that accepts the
connection and never answers cannot hold start-up past the timeout, and Ctrl-C is honoured.
The capture thread owns the device and releases it itself, so closing never waits for an
open or a read stuck inside a driver (Ctrl-C during a reconnect stays prompt).
"""

from __future__ import annotations

import glob as globlib
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from edge.errors import DataError, MissingDependencyError, SourceError
from edge.imageio import IMAGE_SUFFIXES, read_image_bgr, to_bgr_u8

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".h264")
_LIVE_WAIT_S = 0.25           # read() gives up waiting for a new live frame (the caller
                              # then checks its stop request: Ctrl-C during a reconnect)
_MAX_BACKOFF_S = 2.0
_OPEN_WAIT_STEP_S = 0.2       # the start-up wait wakes this often (Ctrl-C stays responsive)
_OPEN_GRACE_S = 1.0           # beyond reconnect_timeout_s, for the last try under way to finish
_CLOSE_WAIT_S = 0.3           # close() waits this long for the capture thread (a read or less)
_MIN_STREAM_TIMEOUT_MS = 1000  # FFmpeg open/read timeout floor per try
_SYNTHETIC_KEYS = {"width": int, "height": int, "frames": int, "seed": int, "fps": float}
_MAX_SIDE_PX = 16384          # larger frames are refused rather than exhausting memory


@dataclass(frozen=True)
class Frame:
    index: int                # 0-based position in the source
    image: np.ndarray         # frame_bgr uint8 [H, W, 3]
    captured_at: float        # time.time() when it was captured or read
    name: str                 # image stem for image sources, else the zero-padded index


class FrameSource(ABC):
    """Context manager; `read()` gives the next Frame, or None when a live source has nothing
    new yet; `ended` turns True when the stream is over (files end, cameras do not)."""

    live = False

    def __init__(self) -> None:
        self.ended = False
        self.dropped = 0          # frames captured but never handed out (live sources only)
        self.skipped = 0          # unreadable inputs passed over (image folders)
        self.latest_index = -1    # newest frame captured so far (for lag measurement)

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def read(self) -> Frame | None: ...

    def input_files(self) -> list[tuple[Path, str | None]]:
        """The files this source reads, each with the name of the frame it becomes (None when
        not known up front); the run checks that no output writes over them."""
        return []

    def close(self) -> None:
        self.ended = True


# --- every-frame sources --------------------------------------------------------------------

class ImageListSource(FrameSource):
    """A single image, a folder or a glob: every image once, in name order."""

    def __init__(self, paths: list[Path], describe: str) -> None:
        super().__init__()
        if not paths:
            raise SourceError(f"source {describe}: no images found "
                              f"({', '.join(IMAGE_SUFFIXES)})")
        self.paths, self.describe, self.position = paths, describe, 0
        self.names = unique_frame_names(paths)
        self.warnings: list[str] = []

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
        if not path.is_file():
            raise SourceError(f"source {path}: video file does not exist")
        self.path, self.loop = path, loop
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise SourceError(f"source {path}: not a readable video (corrupt or unsupported codec)")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 0.0
        self.count = 0

    def input_files(self) -> list[tuple[Path, str | None]]:
        return [(self.path, None)]

    def read(self) -> Frame | None:
        ok, image = self.capture.read()
        if not ok and self.loop and self.count:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self.capture.read()
        if not ok or image is None:
            if self.count == 0:
                raise SourceError(f"source {self.path}: no decodable frame (empty or truncated "
                                  "video)")
            self.ended = True
            return None
        index = self.count
        self.count += 1
        self.latest_index = index
        return Frame(index, checked_frame(image, str(self.path)), time.time(), f"{index:06d}")

    def close(self) -> None:
        super().close()
        self.capture.release()


class SyntheticClipSource(FrameSource):
    """The scene generator's moving-camera clip; `frames=0` repeats it without end."""

    def __init__(self, width: int, height: int, frames: int, seed: int) -> None:
        super().__init__()
        from edge.synthetic import iter_clip

        self.frames = frames
        self._make = lambda: iter_clip(width, height, frames or 600, seed)
        self._clip = self._make()
        self.count = 0

    def read(self) -> Frame | None:
        try:
            image, _ = next(self._clip)
        except StopIteration:
            if self.frames:
                self.ended = True
                return None
            self._clip = self._make()
            image, _ = next(self._clip)
        index = self.count
        self.count += 1
        self.latest_index = index
        return Frame(index, image, time.time(), f"{index:06d}")


# --- live sources ---------------------------------------------------------------------------

class LiveSource(FrameSource):
    """A capture thread keeps the newest frame only; reconnects when the device is lost.

    Subclasses provide `open_device()` -> an object with `read() -> (ok, frame)` and
    `release()`; everything else (threading, drops, backoff, give-up) lives here once.
    The constructor returns once the device is open, or raises SourceError. Only the capture
    thread touches the device, from its open to its release.
    """

    live = True

    def __init__(self, describe: str, reconnect_timeout_s: float, backoff_s: float) -> None:
        super().__init__()
        self.describe = describe
        self.reconnect_timeout_s, self.backoff_s = reconnect_timeout_s, backoff_s
        self.reconnects = 0
        self._lock = threading.Condition()
        self._newest: Frame | None = None
        self._error: Exception | None = None   # raised to the caller by the constructor/read()
        self._opened = False
        self._stop = threading.Event()
        self._device = None
        self._thread = threading.Thread(target=self._capture_thread, name=f"capture {describe}",
                                        daemon=True)  # daemon: an open stuck in C is left behind
        self._thread.start()
        self._wait_until_open()

    @abstractmethod
    def open_device(self):
        """Open the camera/stream; raise SourceError if it cannot be opened."""

    def finished(self) -> bool:
        """True when the device has delivered all it ever will (a finite synthetic clip): the
        stream then ends instead of reconnecting. Cameras and streams never finish."""
        return False

    def _wait_until_open(self) -> None:
        """Wait for the capture thread's first open, in short steps so that a Ctrl-C
        (KeyboardInterrupt) gets through; give up a little after the reconnect timeout even
        if an open call is still stuck inside OpenCV."""
        deadline = time.monotonic() + self.reconnect_timeout_s + _OPEN_GRACE_S
        try:
            with self._lock:
                while not self._opened and self._error is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._error = SourceError(
                            f"source {self.describe} did not answer within "
                            f"{self.reconnect_timeout_s:g} s (loop.reconnect_timeout_s)")
                        break
                    self._lock.wait(min(_OPEN_WAIT_STEP_S, remaining))
                error = self._error
        except BaseException:  # Ctrl-C while waiting: stop the capture thread, then re-raise
            self._stop.set()
            raise
        if error is not None:
            self._stop.set()
            raise error

    def read(self) -> Frame | None:
        with self._lock:
            if self._newest is None and self._error is None and not self.ended:
                self._lock.wait(_LIVE_WAIT_S)
            if self._error is not None:
                raise self._error
            frame, self._newest = self._newest, None
            return frame

    def close(self) -> None:
        """Stop the capture thread, which releases the device on its way out. A healthy read
        returns within a frame; a thread still stuck in an open or a read after
        _CLOSE_WAIT_S is left to release when that call returns (it is a daemon: at process
        exit the OS closes the device). Releasing it from here instead would free a capture
        that the thread is still inside."""
        super().close()
        self._stop.set()
        self._thread.join(timeout=_CLOSE_WAIT_S)

    def _publish(self, index: int, image: np.ndarray) -> None:
        with self._lock:
            if self._newest is not None:
                self.dropped += 1  # nobody took the previous frame: it is stale now
            self._newest = Frame(index, image, time.time(), f"{index:06d}")
            self.latest_index = index
            self._lock.notify_all()

    def _capture_thread(self) -> None:
        try:
            self._capture_loop()
        except Exception as exc:  # a driver bug: handed to the caller, who re-raises it
            with self._lock:
                self._error = exc
                self._lock.notify_all()
        finally:
            self._release_device()

    def _release_device(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            device.release()

    def _capture_loop(self) -> None:
        if not self._connect(first=True):
            return
        index = 0
        while not self._stop.is_set():
            ok, image = self._device.read() if self._device is not None else (False, None)
            if ok and image is not None:
                try:
                    self._publish(index, checked_frame(to_bgr_u8(image), self.describe))
                except (DataError, SourceError):
                    continue  # a malformed frame from the driver is skipped, not fatal
                index += 1
                continue
            if self.finished():
                with self._lock:
                    self.ended = True
                    self._lock.notify_all()
                return
            if not self._connect(first=False):
                return

    def _connect(self, first: bool) -> bool:
        """Open (first) or reopen the device with doubling waits. False, and an error for
        the waiting constructor or read(), once reconnect_timeout_s has passed."""
        self._release_device()
        deadline = time.monotonic() + self.reconnect_timeout_s
        wait, reason, tried = self.backoff_s, "", False
        while not self._stop.is_set():
            if tried or not first:  # after a loss, give the device a moment even before try 1
                self._stop.wait(min(wait, max(0.0, deadline - time.monotonic())))
                wait = min(wait * 2, _MAX_BACKOFF_S)
            tried = True
            try:
                device = self.open_device()
            except SourceError as exc:
                reason = str(exc)
            else:
                if self._stop.is_set():  # the caller gave up (timeout, Ctrl-C) meanwhile
                    device.release()
                    return False
                with self._lock:
                    self._device = device
                    if first:
                        self._opened = True
                    else:
                        self.reconnects += 1
                    self._lock.notify_all()
                return True
            if time.monotonic() >= deadline:
                limit = f"{self.reconnect_timeout_s:g} s (loop.reconnect_timeout_s)"
                with self._lock:
                    self._error = SourceError(
                        f"{reason}; tried for {limit}" if first else
                        f"source {self.describe} lost and not back after {limit}")
                    self._lock.notify_all()
                return False
        return False


class OpenCvCaptureSource(LiveSource):
    """A V4L2 camera, an RTSP stream or a GStreamer pipeline through cv2.VideoCapture."""

    def __init__(self, target, api: int, describe: str, reconnect_timeout_s: float,
                 backoff_s: float) -> None:
        self.target, self.api = target, api
        self.params: list[int] = []
        if api == cv2.CAP_FFMPEG:  # FFmpeg's own wait for a silent server is 30 s
            # at least 1 s per try, so that a timeout of 0 ("never retry") still connects
            timeout_ms = max(_MIN_STREAM_TIMEOUT_MS, int(reconnect_timeout_s * 1000))
            self.params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms,
                           cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        super().__init__(describe, reconnect_timeout_s, backoff_s)

    def open_device(self):
        capture = cv2.VideoCapture(self.target, self.api, self.params)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"source {self.describe} could not be opened (device busy, "
                              "missing or unreachable)")
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver queue adds latency, not frames
        return capture


class PicameraSource(LiveSource):
    """Raspberry Pi camera through picamera2. Its "RGB888" format is stored B,G,R in memory,
    i.e. already OpenCV's BGR order, so frames are used as they come."""

    def __init__(self, camera_index: int, reconnect_timeout_s: float, backoff_s: float) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise MissingDependencyError("picam:// needs picamera2 (Raspberry Pi OS: "
                                         "sudo apt install python3-picamera2)") from None
        self._factory, self.camera_index = Picamera2, camera_index
        super().__init__(f"picam://{camera_index}", reconnect_timeout_s, backoff_s)

    def open_device(self):
        try:
            camera = self._factory(self.camera_index)
            camera.configure(camera.create_video_configuration(
                main={"format": "RGB888", "size": (640, 480)}))
            camera.start()
        except Exception as exc:  # picamera2 raises RuntimeError/IndexError/OSError variously
            raise SourceError(f"source picam://{self.camera_index} could not be opened: "
                              f"{exc}") from None
        return _PicameraDevice(camera)


class _PicameraDevice:
    def __init__(self, camera) -> None:
        self.camera = camera

    def read(self):
        try:
            return True, self.camera.capture_array()
        except Exception:  # a dropped camera surfaces as a failed read -> reconnect
            return False, None

    def release(self) -> None:
        self.camera.close()


class PacedSyntheticSource(LiveSource):
    """The synthetic clip delivered like a camera at `fps` (for live-behaviour tests/benches)."""

    def __init__(self, width: int, height: int, frames: int, seed: int, fps: float) -> None:
        self._args = (width, height, frames, seed)
        self.period_s = 1.0 / fps
        super().__init__(f"synthetic://?fps={fps:g}", 1.0, 0.1)

    def open_device(self):
        return _PacedClip(SyntheticClipSource(*self._args), self.period_s, self._stop)

    def finished(self) -> bool:
        device = self._device
        return device is not None and device.clip.ended  # frames=N was given and delivered


class _PacedClip:
    def __init__(self, clip: SyntheticClipSource, period_s: float, stop: threading.Event):
        self.clip, self.period_s, self.stop = clip, period_s, stop
        self.next_at = time.monotonic()

    def read(self):
        self.stop.wait(max(0.0, self.next_at - time.monotonic()))
        self.next_at = max(self.next_at + self.period_s, time.monotonic() - self.period_s)
        frame = self.clip.read()
        return (frame is not None), (frame.image if frame else None)

    def release(self) -> None:
        self.clip.close()


# --- URI parsing ----------------------------------------------------------------------------

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


def checked_frame(image: np.ndarray, describe: str) -> np.ndarray:
    height, width = image.shape[:2]
    if height < 1 or width < 1 or max(height, width) > _MAX_SIDE_PX:
        raise SourceError(f"source {describe}: frame of {width}x{height} px is outside "
                          f"1..{_MAX_SIDE_PX} px")
    return image


def gstreamer_available() -> bool:
    info = cv2.getBuildInformation()
    match = re.search(r"GStreamer:\s*(\w+)", info)
    return bool(match and match.group(1).upper() == "YES")


def csi_pipeline(sensor_id: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """Jetson CSI camera -> BGR frames for OpenCV (drop=true keeps only the newest buffer)."""
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM), width={width}, "
            f"height={height}, framerate={fps}/1 ! nvvidconv ! video/x-raw, format=BGRx ! "
            "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1")


def _index(text: str, uri: str) -> int:
    if not text.isdigit():
        raise SourceError(f"source {uri!r}: expected a camera number, got {text!r}")
    return int(text)


def _synthetic(uri: str, parsed) -> FrameSource:
    params = {"width": 640, "height": 480, "frames": 600, "seed": 1, "fps": 0.0}
    for key, values in parse_qs(parsed.query, keep_blank_values=True).items():
        if key not in _SYNTHETIC_KEYS:
            raise SourceError(f"source {uri!r}: unknown parameter {key!r}; expected "
                              f"{', '.join(_SYNTHETIC_KEYS)}")
        try:
            params[key] = _SYNTHETIC_KEYS[key](values[-1])
        except ValueError:
            raise SourceError(f"source {uri!r}: {key}={values[-1]!r} is not a number") from None
    if not (1 <= params["width"] <= _MAX_SIDE_PX and 1 <= params["height"] <= _MAX_SIDE_PX):
        raise SourceError(f"source {uri!r}: width and height must be 1..{_MAX_SIDE_PX}")
    if params["frames"] < 0 or params["fps"] < 0:
        raise SourceError(f"source {uri!r}: frames and fps must be >= 0")
    size = (params["width"], params["height"], params["frames"], params["seed"])
    if params["fps"]:
        return PacedSyntheticSource(*size, params["fps"])
    return SyntheticClipSource(*size)


def open_source(uri: str, loop_video: bool = False, reconnect_timeout_s: float = 10.0,
                backoff_s: float = 0.25) -> FrameSource:
    """The source a URI names; SourceError (one line) for anything malformed or unknown."""
    uri = str(uri).strip()
    if not uri:
        raise SourceError("source is empty; expected a camera number, a file, a folder or a URI")
    live = dict(reconnect_timeout_s=reconnect_timeout_s, backoff_s=backoff_s)
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower() if len(parsed.scheme) > 1 else ""  # "C:" is not a scheme
    if uri.isdigit():
        return OpenCvCaptureSource(int(uri), cv2.CAP_V4L2, f"camera {uri}", **live)
    if scheme == "" and re.fullmatch(r"/dev/video\d+", uri):
        return OpenCvCaptureSource(uri, cv2.CAP_V4L2, uri, **live)
    if scheme == "v4l2":
        device = parsed.path or parsed.netloc
        if not re.fullmatch(r"/dev/video\d+", device):
            raise SourceError(f"source {uri!r}: expected v4l2:///dev/videoN")
        return OpenCvCaptureSource(device, cv2.CAP_V4L2, uri, **live)
    if scheme == "csi":
        sensor = _index(parsed.netloc or parsed.path.strip("/"), uri)
        if not gstreamer_available():
            raise SourceError(f"source {uri}: this OpenCV was built without GStreamer (see "
                              "cv2.getBuildInformation()); on a Jetson use JetPack's OpenCV")
        return OpenCvCaptureSource(csi_pipeline(sensor), cv2.CAP_GSTREAMER, uri, **live)
    if scheme == "picam":
        return PicameraSource(_index(parsed.netloc or parsed.path.strip("/") or "0", uri),
                              **live)
    if scheme in ("rtsp", "rtsps", "rtmp"):
        if not parsed.netloc:
            raise SourceError(f"source {uri!r}: expected {scheme}://HOST[:PORT]/PATH")
        return OpenCvCaptureSource(uri, cv2.CAP_FFMPEG, uri, **live)
    if scheme == "synthetic":
        return _synthetic(uri, parsed)
    if scheme == "file":
        uri, scheme = parsed.path, ""
    if scheme:
        raise SourceError(f"source {uri!r}: unknown scheme {scheme}://; expected a camera "
                          "number, /dev/videoN, v4l2://, csi://, picam://, rtsp://, "
                          "synthetic://, a file, a folder or a glob")
    return _file_source(uri, loop_video)


def _file_source(uri: str, loop_video: bool) -> FrameSource:
    path = Path(uri).expanduser()
    if any(ch in uri for ch in "*?["):
        matches = sorted(Path(p) for p in globlib.glob(str(path))
                         if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        return ImageListSource(matches, uri)
    if path.is_dir():
        return ImageListSource(sorted(p for p in path.iterdir()
                                      if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), uri)
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        if not path.is_file():
            raise SourceError(f"source {uri}: image file does not exist")
        return ImageListSource([path], uri)
    if suffix in VIDEO_SUFFIXES:
        return VideoFileSource(path, loop_video)
    if not path.exists():
        raise SourceError(f"source {uri!r} does not exist and is not a camera or URI")
    raise SourceError(f"source {uri}: unsupported file type {suffix or '(none)'}; expected an "
                      f"image ({', '.join(IMAGE_SUFFIXES)}) or a video "
                      f"({', '.join(VIDEO_SUFFIXES)})")


"""Live sources: a capture thread keeps the newest frame only and reconnects when the device
is lost (USB/V4L2 cameras, Jetson CSI through GStreamer, Raspberry Pi cameras, network streams)."""

from __future__ import annotations

import re
import threading
import time
from abc import abstractmethod

import cv2
import numpy as np

from edge.data.imageio import to_bgr_u8
from edge.errors import DataError, MissingDependencyError, SourceError
from edge.sources.base import Frame, FrameSource, checked_frame

_LIVE_WAIT_S = 0.25           # read() gives up waiting for a new live frame (the caller
                              # then checks its stop request: Ctrl-C during a reconnect)
_MAX_BACKOFF_S = 2.0
_OPEN_WAIT_STEP_S = 0.2       # the start-up wait wakes this often (Ctrl-C stays responsive)
_OPEN_GRACE_S = 1.0           # beyond reconnect_timeout_s, for the last try under way to finish
_CLOSE_WAIT_S = 0.3           # close() waits this long for the capture thread (a read or less)
_MIN_STREAM_TIMEOUT_MS = 1000  # FFmpeg open/read timeout floor per try


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


def gstreamer_available() -> bool:
    info = cv2.getBuildInformation()
    match = re.search(r"GStreamer:\s*(\w+)", info)
    return bool(match and match.group(1).upper() == "YES")


def csi_pipeline(sensor_id: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """Jetson CSI camera -> BGR frames for OpenCV (drop=true keeps only the newest buffer)."""
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM), width={width}, "
            f"height={height}, framerate={fps}/1 ! nvvidconv ! video/x-raw, format=BGRx ! "
            "videoconvert ! video/x-raw, format=BGR ! appsink drop=true max-buffers=1")


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

import re
from urllib.parse import urlparse

import cv2

from edge.errors import SourceError
from edge.sources.base import Frame, FrameSource
from edge.sources.files import (VIDEO_SUFFIXES, ImageListSource, VideoFileSource, file_problem,
                                is_glob, open_file_source)
from edge.sources.live import (LiveSource, OpenCvCaptureSource, PicameraSource, csi_pipeline,
                               gstreamer_available)
from edge.sources.synthetic import PacedSyntheticSource, SyntheticClipSource, open_synthetic

__all__ = ["Frame", "FrameSource", "ImageListSource", "LiveSource", "OpenCvCaptureSource",
           "PacedSyntheticSource", "PicameraSource", "SyntheticClipSource", "VIDEO_SUFFIXES",
           "VideoFileSource", "file_problem", "gstreamer_available", "is_glob", "open_source"]


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
        return open_synthetic(uri, parsed)
    if scheme == "file":
        uri, scheme = parsed.path, ""
    if scheme:
        raise SourceError(f"source {uri!r}: unknown scheme {scheme}://; expected a camera "
                          "number, /dev/videoN, v4l2://, csi://, picam://, rtsp://, "
                          "synthetic://, a file, a folder or a glob")
    return open_file_source(uri, loop_video)


def _index(text: str, uri: str) -> int:
    if not text.isdigit():
        raise SourceError(f"source {uri!r}: expected a camera number, got {text!r}")
    return int(text)


"""The URI forms of sources, outputs and telemetry, written once. A leaf: it imports no edge
module.

The openers (edge/sources, edge/outputs, edge/sources/telemetry) name them in their one-line
errors and the CLI builds `--source`, `--output` and `--telemetry` help from them, so the help
and the errors never disagree.
"""

from __future__ import annotations

# (form, what it names), in the order a user is most likely to want them.
SOURCE_FORMS = (
    ("0", "camera number (V4L2)"),
    ("/dev/video0", "V4L2 device"),
    ("v4l2:///dev/video0", "V4L2 device"),
    ("csi://0", "Jetson CSI camera (GStreamer)"),
    ("picam://0", "Raspberry Pi camera (picamera2)"),
    ("rtsp://HOST[:PORT]/PATH", "network stream (also rtsps://, rtmp://)"),
    ("clip.mp4", "a video file, every frame"),
    ("photo.jpg, folder/, 'shots/*.png'", "an image, a folder or a glob, every image"),
    ("synthetic://?width=640&height=480&frames=600&seed=1[&fps=30]",
     "the built-in scene generator (with fps: a paced live camera)"),
)
OUTPUT_FORMS = (
    ("display://0", "an OpenCV window (q or Esc stops the run)"),
    ("out.mp4, out.avi", "a video file of the overlay"),
    ("folder/", "one overlay JPEG per frame"),
    ("http://HOST:PORT", "the inspector's live page (MJPEG)"),
    ("rtp://HOST:5600", "H.264 over RTP/UDP for QGroundControl or VLC (writes an SDP file)"),
    ("udp://HOST:5600", "H.264 in MPEG-TS over UDP (VLC, ffplay, QGroundControl)"),
)

# --telemetry: live MAVLink (pymavlink's connection strings; udpout, udp, udpbcast and tcpin
# are taken too).
TELEMETRY_FORMS = (
    ("udpin:0.0.0.0:14550", "listen for the autopilot (or mavlink-router) on UDP"),
    ("tcp:HOST:PORT", "connect to a MAVLink TCP server"),
    ("/dev/ttyUSB0", "a serial device, at telemetry.baud"),
)


def forms_list(forms) -> str:
    """The forms alone, comma separated: for --help and for 'expected ...' in errors."""
    return ", ".join(form for form, _ in forms)

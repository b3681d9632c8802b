"""`rtp://HOST:PORT` and `udp://HOST:PORT`: the overlay as H.264 for a ground station.

A drone's radio link carries 2-4 Mbit/s at best, and MJPEG at 640x480 and 15 FPS needs more, so
the ground station gets H.264: RTP over UDP (QGroundControl's "RTP H.264" video source; VLC and
ffplay open the SDP file written beside it) or MPEG-TS over UDP (VLC, ffplay, QGroundControl's
"MPEG-TS" source). PyAV does the encoding (libx264, bundled in its wheels) and the packetising
(FFmpeg's rtp and mpegts muxers).

Low latency: x264's zerolatency tuning (no frame-level threading delay, no lookahead), no
B-frames, and a keyframe every `gop_s` seconds, so a receiver that joins late gets a picture
within that. x264 repeats SPS and PPS before each keyframe, so a late receiver needs nothing
out of band.

The sink rules of the project: building the sink checks the URI and resolves the host but
sends nothing; the stream opens on the first frame (its size). UDP needs no receiver: frames
sent with nobody listening cost the same encode and are dropped by the network, never an
error. An encoder or muxer failure is a SinkError naming the output and the frame.
"""

from __future__ import annotations

import fractions
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from edge.errors import MissingDependencyError, SinkError
from edge.outputs.base import FrameSink, OutputFrame
from edge.writable import check_writable, write_atomic

RTP_PAYLOAD_TYPE = 96            # the first dynamic payload type (RFC 3551), as in the SDP
_RTP_CLOCK_HZ = 90000            # H.264 over RTP always uses a 90 kHz clock (RFC 6184)
_TS_PACKET_BYTES = 1316          # 7 TS packets of 188 bytes: one UDP datagram under the MTU
_MUXERS = {"rtp": "rtp", "udp": "mpegts"}


@dataclass(frozen=True)
class StreamAddress:
    scheme: str     # rtp | udp
    host: str
    port: int


def parse_stream_uri(uri: str) -> StreamAddress:
    """`rtp://HOST:PORT` or `udp://HOST:PORT`; SinkError (one line) for anything else."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    expected = f"expected {scheme}://HOST:PORT"
    if scheme not in _MUXERS:
        raise SinkError(f"output {uri}: expected rtp://HOST:PORT or udp://HOST:PORT")
    if parsed.path not in ("", "/") or parsed.query or not parsed.hostname:
        raise SinkError(f"output {uri}: {expected} with no path or query")
    try:
        port = parsed.port
    except ValueError:
        port = None
    if not port:
        raise SinkError(f"output {uri}: {expected}, with a port 1..65535")
    try:  # a typo in the host fails at start, not silently on every frame
        socket.getaddrinfo(parsed.hostname, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise SinkError(f"output {uri}: cannot resolve {parsed.hostname} ({exc.strerror})") \
            from None
    return StreamAddress(scheme, parsed.hostname, port)


def sdp_text(address: StreamAddress, fps: float) -> str:
    """The session description a receiver of the RTP stream needs (RFC 4566, RFC 6184):
    where the packets go, that they carry H.264 in payload type 96, packetisation mode 1
    (what FFmpeg's rtp muxer sends). SPS and PPS travel in-band before every keyframe."""
    family = "IP6" if ":" in address.host else "IP4"
    return "\n".join([
        "v=0",
        f"o=- 0 0 IN {family} {address.host}",
        "s=RustSEG overlay",
        f"c=IN {family} {address.host}",
        "t=0 0",
        f"m=video {address.port} RTP/AVP {RTP_PAYLOAD_TYPE}",
        f"a=rtpmap:{RTP_PAYLOAD_TYPE} H264/{_RTP_CLOCK_HZ}",
        f"a=fmtp:{RTP_PAYLOAD_TYPE} packetization-mode=1",
        f"a=framerate:{fps:g}",
        "",
    ])


def _pyav():
    try:
        import av
    except ImportError:
        raise MissingDependencyError("rtp:// and udp:// outputs need PyAV: pip install "
                                     "'rustseg-edge[stream]' (or pip install av)") from None
    return av


class H264StreamSink(FrameSink):
    """The overlay, H.264-encoded, sent to `rtp://` or `udp://` (MPEG-TS).

    `settings` is the config's `stream` section (bitrate_kbps, gop_s, preset, sdp_file)."""

    def __init__(self, uri: str, fps: float, settings) -> None:
        self.address = parse_stream_uri(uri)
        self._av = _pyav()
        self.name, self.fps, self.settings = uri, fps, settings
        self.sdp_path = Path(settings.sdp_file).expanduser() \
            if self.address.scheme == "rtp" and settings.sdp_file else None
        if self.sdp_path is not None:
            try:
                check_writable(self.sdp_path)
            except OSError as exc:
                raise SinkError(f"output {uri}: cannot write the SDP file {self.sdp_path} "
                                f"({exc.strerror})") from None
        self.notes = (f"SDP for VLC/ffplay: {self.sdp_path}",) if self.sdp_path else ()
        self.container = None
        self.stream = None
        self.size: tuple[int, int] | None = None     # encoded width, height (even)
        self.sent = 0                                 # frames encoded and handed to the muxer

    def writes_to(self, frame_name: str | None) -> Path | None:
        return self.sdp_path

    def start(self) -> None:
        if self.sdp_path is not None:
            try:
                write_atomic(self.sdp_path, sdp_text(self.address, self.fps))
            except OSError as exc:
                raise SinkError(f"output {self.name}: cannot write the SDP file "
                                f"{self.sdp_path} ({exc.strerror})") from None

    def write(self, frame: OutputFrame) -> None:
        image = frame.overlay_bgr
        try:
            if self.container is None:
                self._open(image.shape[1], image.shape[0])
            video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(image),
                                                           format="bgr24")
            video_frame.pts = self.sent
            video_frame.time_base = self.stream.codec_context.time_base
            for packet in self.stream.encode(video_frame):  # rescaled to the stream's size
                self.container.mux(packet)
        except (self._av.FFmpegError, ValueError, TypeError, OSError) as exc:
            raise SinkError(f"output {self.name}: H.264 encoder failed at frame {frame.index} "
                            f"({_one_line(exc)})") from None
        self.sent += 1

    def close(self) -> None:
        container, self.container = self.container, None
        if container is None:
            return
        try:
            for packet in self.stream.encode():  # flush: zerolatency holds nothing back
                container.mux(packet)
        except (self._av.FFmpegError, ValueError, OSError):
            pass  # the receiver may have missed the last packet; nothing is kept to lose
        finally:
            container.close()

    def _open(self, width: int, height: int) -> None:
        """Open the muxer and the encoder for this frame size (4:2:0 needs even sides)."""
        settings, address = self.settings, self.address
        self.size = (max(2, width - width % 2), max(2, height - height % 2))
        url = f"{address.scheme}://{_netloc(address)}"
        if address.scheme == "udp":
            url += f"?pkt_size={_TS_PACKET_BYTES}"
        # flush_packets: each packet leaves at once, not when the next frame fills the buffer
        options = {"flush_packets": "1"}
        if address.scheme == "rtp":
            options["payload_type"] = str(RTP_PAYLOAD_TYPE)
        self.container = self._av.open(url, "w", format=_MUXERS[address.scheme],
                                       options=options)
        rate = fractions.Fraction(self.fps).limit_denominator(1001)
        stream = self.container.add_stream("libx264", rate=rate)
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = int(settings.bitrate_kbps * 1000)
        gop = max(1, round(settings.gop_s * self.fps))
        stream.codec_context.time_base = 1 / rate
        stream.codec_context.options = {
            "preset": settings.preset, "tune": "zerolatency", "profile": "baseline",
            "bf": "0", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
            # a cap near the target keeps bursts (keyframes) inside what the link carries
            "maxrate": f"{settings.bitrate_kbps}k",
            "bufsize": f"{max(1, int(settings.bitrate_kbps * settings.gop_s))}k"}
        self.stream = stream


def _netloc(address: StreamAddress) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

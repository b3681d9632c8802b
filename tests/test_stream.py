"""H.264 outputs for a ground station (issue 21, item 1): rtp:// with its SDP file and udp://
MPEG-TS, received on loopback (127.0.0.1 only) and decoded with PyAV."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import output_frame
from edge.config import load_config
from edge.data.synthetic import make_scene
from edge.errors import SinkError
from edge.measure.frame_code import burn_counter, read_counter
from edge.outputs import open_output
from edge.outputs.stream import parse_stream_uri

av = pytest.importorskip("av", reason="needs PyAV (the stream extra)")

ROOT = Path(__file__).resolve().parent.parent
_FPS = 30.0
_MIN_PSNR_DB = 30.0     # 1.5 Mbit/s at 320x240 keeps far more than this


def free_udp_port() -> int:
    """A UDP port nothing listens on now; the RTP muxer also uses port + 1 (RTCP)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            if port % 2 == 0:
                return port
    raise RuntimeError("no free even UDP port pair")


def stream_settings(tmp_path: Path, **changes):
    return dataclasses.replace(load_config().stream,
                               **{"sdp_file": str(tmp_path / "out.sdp"), **changes})


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


class Receiver(threading.Thread):
    """Decodes a stream with PyAV until `frames` pictures arrived or it times out."""

    def __init__(self, url: str, fmt: str, options: dict, frames: int) -> None:
        super().__init__(daemon=True)
        self.url, self.fmt, self.options, self.frames = url, fmt, options, frames
        self.decoded: list[np.ndarray] = []
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            # opening binds the port; the probe then waits for the first packets
            container = av.open(self.url, format=self.fmt, options=self.options, timeout=8)
            try:
                for frame in container.decode(video=0):
                    self.decoded.append(frame.to_ndarray(format="bgr24"))
                    if len(self.decoded) >= self.frames:
                        break
            finally:
                container.close()
        except BaseException as exc:  # reported by the test
            self.error = exc


def rtp_receiver(sdp: Path, frames: int) -> Receiver:
    return Receiver(str(sdp), "sdp", {"protocol_whitelist": "file,udp,rtp"}, frames)


def ts_receiver(port: int, frames: int) -> Receiver:
    return Receiver(f"udp://127.0.0.1:{port}", "mpegts", {"fifo_size": "100000"}, frames)


def counted_frames(n: int, height: int = 240, width: int = 320) -> list[np.ndarray]:
    """A camera panning over one synthetic scene, 2 px a frame, each frame numbered."""
    scene = make_scene(height, width + 2 * n, seed=3)[0]
    return [burn_counter(scene[:, 2 * i:2 * i + width], i) for i in range(n)]


def send(sink, frames: list[np.ndarray], fps: float = _FPS) -> None:
    mask = np.zeros(frames[0].shape[:2], bool)
    for i, image in enumerate(frames):
        sink.write(output_frame(i, image, mask, name=f"{i:06d}"))
        time.sleep(1.0 / fps)   # paced like a camera, so the receiver's socket never overflows


def check_received(decoded: list[np.ndarray], sent: list[np.ndarray], least: int) -> None:
    assert len(decoded) >= least, f"only {len(decoded)} of {len(sent)} frames arrived"
    counters = [read_counter(image) for image in decoded]
    assert None not in counters, "a decoded frame lost its counter"
    assert counters == sorted(counters) and len(set(counters)) == len(counters), counters
    worst = min(psnr(image, sent[c]) for image, c in zip(decoded, counters))
    print(f"received {len(decoded)} of {len(sent)}, worst PSNR {worst:.1f} dB")
    assert worst > _MIN_PSNR_DB, f"PSNR {worst:.1f} dB"


def stream_to(sink, receiver: Receiver, sent: list[np.ndarray]) -> None:
    """Start the receiver, send every frame through the started sink and close it; then the
    receiver must have decoded all the frames it waits for, in order, with their counters and
    pictures intact."""
    receiver.start()
    time.sleep(0.5)             # let it bind before the first packet
    try:
        send(sink, sent)
    finally:
        sink.close()
    receiver.join(15)
    assert receiver.error is None, receiver.error
    check_received(receiver.decoded, sent, least=receiver.frames)


def test_rtp_stream_is_received_through_its_sdp_and_matches_the_overlay(tmp_path):
    port = free_udp_port()
    settings = stream_settings(tmp_path)
    sink = open_output(f"rtp://127.0.0.1:{port}", _FPS, stream_settings=settings)
    sink.start()
    sdp = Path(settings.sdp_file).read_text()
    assert f"m=video {port} RTP/AVP 96" in sdp and "a=rtpmap:96 H264/90000" in sdp
    sent = counted_frames(60)
    stream_to(sink, rtp_receiver(Path(settings.sdp_file), frames=50), sent)
    assert sink.sent == 60


def test_mpegts_stream_is_received_and_matches_the_overlay(tmp_path):
    port = free_udp_port()
    sink = open_output(f"udp://127.0.0.1:{port}", _FPS, stream_settings=stream_settings(tmp_path))
    sink.start()
    assert not (tmp_path / "out.sdp").exists()   # MPEG-TS describes itself
    stream_to(sink, ts_receiver(port, frames=50), counted_frames(60))


def test_a_late_receiver_gets_a_picture_within_one_gop(tmp_path):
    """Short GOP: a receiver that joins mid-stream decodes from the next keyframe on."""
    port = free_udp_port()
    settings = stream_settings(tmp_path, gop_s=0.5)
    sink = open_output(f"udp://127.0.0.1:{port}", _FPS, stream_settings=settings)
    sink.start()
    sent = counted_frames(90)
    try:
        send(sink, sent[:30])            # one second nobody watches
        receiver = ts_receiver(port, frames=20)
        receiver.start()
        time.sleep(0.3)
        send(sink, sent[30:])
    finally:
        sink.close()
    receiver.join(15)
    assert receiver.error is None, receiver.error
    first = read_counter(receiver.decoded[0])
    assert first is not None and 30 <= first <= 30 + 15 + 10   # gop 15 frames, plus the join
    check_received(receiver.decoded, sent, least=20)


@pytest.mark.parametrize("scheme", ["rtp", "udp"])
def test_no_receiver_is_not_an_error_and_every_frame_is_counted(tmp_path, scheme):
    port = free_udp_port()       # nobody listens here
    sink = open_output(f"{scheme}://127.0.0.1:{port}", _FPS,
                       stream_settings=stream_settings(tmp_path))
    sink.start()
    frames = counted_frames(20)
    mask = np.zeros(frames[0].shape[:2], bool)
    for i, image in enumerate(frames):
        sink.write(output_frame(i, image, mask, name=f"{i:06d}"))
    sink.close()
    assert sink.sent == 20


def test_frames_of_another_size_or_odd_sides_are_fitted(tmp_path):
    port = free_udp_port()
    sink = open_output(f"udp://127.0.0.1:{port}", _FPS, stream_settings=stream_settings(tmp_path))
    sink.start()
    mask = np.zeros((1, 1), bool)
    for i, (h, w) in enumerate([(121, 161), (240, 320), (7, 9)]):
        sink.write(output_frame(i, np.full((h, w, 3), 90, np.uint8), mask))
    sink.close()
    assert sink.size == (160, 120) and sink.sent == 3


def test_an_encoder_failure_names_the_output_and_the_frame(tmp_path):
    port = free_udp_port()
    uri = f"udp://127.0.0.1:{port}"
    sink = open_output(uri, _FPS, stream_settings=stream_settings(tmp_path))
    sink.start()
    good = np.zeros((120, 160, 3), np.uint8)
    sink.write(output_frame(0, good))
    broken = np.zeros((120, 160), np.float32)   # not a BGR picture: the encoder refuses it
    with pytest.raises(SinkError) as failure:
        sink.write(output_frame(7, broken))
    sink.close()
    message = str(failure.value)
    assert uri in message and "frame 7" in message and "\n" not in message
    assert sink.sent == 1


@pytest.mark.parametrize("uri, fragment", [
    ("rtp://127.0.0.1", "port"),
    ("udp://127.0.0.1:0", "port"),
    ("rtp://127.0.0.1:5600/live", "no path"),
    ("udp://no-such-host.invalid:5600", "cannot resolve"),
])
def test_malformed_stream_uris_are_one_line_errors(tmp_path, uri, fragment):
    with pytest.raises(SinkError) as failure:
        open_output(uri, _FPS, stream_settings=stream_settings(tmp_path))
    assert fragment in str(failure.value) and "\n" not in str(failure.value)


def test_unknown_scheme_lists_the_stream_outputs():
    with pytest.raises(SinkError) as failure:
        open_output("srt://127.0.0.1:9000", _FPS)
    assert "rtp://" in str(failure.value) and "udp://" in str(failure.value)


def test_sdp_file_counts_as_an_output_for_the_overwrite_check(tmp_path):
    from edge.errors import ConfigError
    from edge.outputs.footage_guard import check_no_overwrite
    footage = tmp_path / "flight.sdp"
    footage.write_text("the user's own file")
    sink = open_output(f"rtp://127.0.0.1:{free_udp_port()}", _FPS,
                       stream_settings=stream_settings(tmp_path, sdp_file=str(footage)))
    with pytest.raises(ConfigError):
        check_no_overwrite([(footage, None)], [sink])
    assert footage.read_text() == "the user's own file"
    assert parse_stream_uri("rtp://[::1]:5600").host == "::1"


def test_rustseg_run_streams_rtp_and_counts_every_frame(tmp_path):
    """The whole loop: `rustseg run --output rtp://...` sends every overlay frame; a receiver
    on loopback decodes pictures of the overlay's size."""
    port = free_udp_port()
    sdp = tmp_path / "run.sdp"
    config = tmp_path / "c.yaml"
    config.write_text(f"stream:\n  sdp_file: {sdp}\nrefine:\n  mode: none\n")
    from edge.outputs.stream import StreamAddress, sdp_text
    sdp.write_text(sdp_text(StreamAddress("rtp", "127.0.0.1", port), 15))  # receiver first
    receiver = rtp_receiver(sdp, frames=5)
    receiver.start()
    time.sleep(0.5)
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "--config", str(config), "run", "--source",
         "synthetic://?width=320&height=240&frames=40", "--output",
         f"rtp://127.0.0.1:{port}", "--headless", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    receiver.join(15)
    assert result.returncode == 0, result.stderr
    assert f"output rtp://127.0.0.1:{port}: written 40" in result.stdout
    assert receiver.error is None and len(receiver.decoded) >= 5
    assert receiver.decoded[0].shape == (240, 320, 3)


@pytest.mark.parametrize("scheme", ["rtp", "udp"])
def test_each_frame_leaves_at_once(tmp_path, scheme):
    """Nothing of a frame waits in the muxer for the next one (flush_packets): by the time the
    sink is closed after a pause, every byte it will ever send has been sent."""
    port = free_udp_port()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", port))
    listener.settimeout(0.2)
    sink = open_output(f"{scheme}://127.0.0.1:{port}", _FPS,
                       stream_settings=stream_settings(tmp_path))
    sink.start()
    frames = counted_frames(10)
    mask = np.zeros(frames[0].shape[:2], bool)

    def drain() -> int:
        received = 0
        try:
            while True:
                received += len(listener.recv(65536))
        except socket.timeout:
            return received
    try:
        for i, image in enumerate(frames):
            sink.write(output_frame(i, image, mask))
        before_close = drain()
        sink.close()
        after_close = drain()
    finally:
        listener.close()
    assert before_close > 0 and after_close == 0

"""Positions for video (issue 21, items 2 and 3): DJI .SRT sidecars in both field layouts, and
live MAVLink from a pymavlink sender on loopback. A frame gets the right position, or none with
the reason; never a wrong one."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from conftest import output_frame
from edge.config import load_config
from edge.data.synthetic import make_scene
from edge.errors import ConfigError, DataError
from edge.live.app import record_run
from edge.record.layout import RecordLayout
from edge.sources.telemetry.dji_srt import SrtTrack, parse_cue_text

ROOT = Path(__file__).resolve().parent.parent
_FPS = 10
_LAT0, _LON0 = -33.861500, 151.210900      # southern and eastern: a swapped or unsigned
_STEP_DEG = 1e-5                            # coordinate cannot pass; about 1.1 m north a frame


def _stamp(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def bracket_cue(i: int, lat: float, lon: float, pitch: float = -90.0) -> str:
    """The newer DJI layout (Mini, Air 2S, Mavic 3), font tags and all."""
    return (f'<font size="28">FrameCnt: {i + 1}, DiffTime: 100ms\n2026-11-30 10:21:33.{i:03d}\n'
            f"[iso: 100] [shutter: 1/640.0] [fnum: 2.8] [ev: 0] [focal_len: 24.00] "
            f"[latitude: {lat:.6f}] [longitude: {lon:.6f}] [rel_alt: 30.500 abs_alt: 82.250] "
            f"[gb_yaw: 12.5 gb_pitch: {pitch} gb_roll: 0.0] </font>")


def gps_cue(lat: float, lon: float) -> str:
    """The older layout (Phantom 4, Mavic Pro): GPS(longitude, latitude, altitude)."""
    return (f"HOME({_LON0:.4f},{_LAT0:.4f}) 2017.08.05 14:11:51\n"
            f"GPS({lon:.6f},{lat:.6f},61) BAROMETER:29.8\nISO:100 Shutter:60 EV:0 Fnum:F2.2")


def write_srt(path: Path, cues: list[tuple[float, float, str]]) -> Path:
    blocks = [f"{i + 1}\n{_stamp(a)} --> {_stamp(b)}\n{text}\n" for i, (a, b, text) in
              enumerate(cues)]
    path.write_text("\n".join(blocks))
    return path


def frame_lat(i: int) -> float:
    return _LAT0 + i * _STEP_DEG


def per_frame_cues(frames: int, fps: float = _FPS) -> list[tuple[float, float, str]]:
    """One cue per frame, as newer DJI models write, with the usual 1 ms rounding gaps."""
    return [(i / fps, (i + 1) / fps - 0.001, bracket_cue(i, frame_lat(i), _LON0))
            for i in range(frames)]


# --- the two field layouts -------------------------------------------------------------------

def test_bracket_layout_is_read_with_altitudes_and_gimbal():
    fix = parse_cue_text(bracket_cue(3, -33.5, 151.25, pitch=-45.0))
    assert fix == {"lat": -33.5, "lon": 151.25, "alt": 82.25, "rel_alt": 30.5,
                   "gimbal": {"pitch": -45.0, "yaw": 12.5, "roll": 0.0}, "source": "srt"}


def test_gps_layout_is_longitude_first():
    fix = parse_cue_text(gps_cue(-33.5, 151.25))
    assert (fix["lat"], fix["lon"], fix["alt"], fix["rel_alt"]) == (-33.5, 151.25, 61.0, 29.8)
    mavic2 = parse_cue_text("F/2.8, SS 320.55, ISO 100, EV 0, GPS (-1.123400, 51.765400, 16), "
                            "D 12.34m, H 30.20m, HS 0.00m/s, VS 0.00m/s")
    assert (mavic2["lat"], mavic2["lon"], mavic2["rel_alt"]) == (51.7654, -1.1234, 30.2)


@pytest.mark.parametrize("text", [
    "[latitude: 0.000000] [longitude: 0.000000] [rel_alt: 0.0 abs_alt: 0.0]",  # no GPS lock
    "[latitude: 123.0] [longitude: 4.0]",                                       # out of range
    "GPS(0.0,0.0,0) BAROMETER:0.0",
    "[iso: 100] [shutter: 1/640.0]",                                            # no fix at all
    "GPS(151.2,-33.8",                                                          # cut short
])
def test_cues_without_a_valid_fix_give_no_position(text):
    assert parse_cue_text(text) is None


# --- frames to cues by time ------------------------------------------------------------------

def test_frames_take_their_cue_and_blend_across_rounding_gaps(tmp_path):
    track = SrtTrack.read(write_srt(tmp_path / "a.SRT", per_frame_cues(5)), max_gap_s=0.5)
    fix, missing = track.position_at(0.2)
    assert missing is None and fix["lat"] == pytest.approx(frame_lat(2), abs=1e-9)
    assert not fix.get("interpolated")
    fix, _ = track.position_at(0.2995)               # in the 1 ms gap between cues 3 and 4
    assert fix["interpolated"] and frame_lat(2) < fix["lat"] < frame_lat(3)


def test_one_cue_a_second_covers_every_frame_in_it(tmp_path):
    cues = [(s, s + 1.0, gps_cue(frame_lat(s), _LON0)) for s in range(3)]
    track = SrtTrack.read(write_srt(tmp_path / "p4.srt", cues), max_gap_s=0.5)
    for t in (0.0, 0.5, 0.99):
        assert track.position_at(t)[0]["lat"] == pytest.approx(frame_lat(0), abs=1e-9)
    assert track.position_at(2.7)[0]["lat"] == pytest.approx(frame_lat(2), abs=1e-9)


def test_wide_gaps_and_times_outside_the_srt_have_no_position(tmp_path):
    cues = [(0.0, 1.0, gps_cue(_LAT0, _LON0)), (3.0, 4.0, gps_cue(frame_lat(9), _LON0)),
            (4.0, 5.0, "no fix in this one")]
    track = SrtTrack.read(write_srt(tmp_path / "g.SRT", cues), max_gap_s=0.5)
    for t, why in ((2.0, "gap"), (4.5, "no GPS fix"), (5.5, "after the last SRT cue")):
        fix, missing = track.position_at(t)
        assert fix is None and why in missing
    late = SrtTrack.read(write_srt(tmp_path / "late.SRT", [(1.0, 2.0, gps_cue(_LAT0, _LON0))]),
                         max_gap_s=0.5)
    assert late.position_at(0.5) == (None, "before the first SRT cue (1.000 s)")


@pytest.mark.parametrize("content, fragment", [
    ("garbage\nthat is not SRT\n", "not a valid SRT file (line 1)"),
    # a broken timing line: the srt library folds cue 2 into cue 1, whose fix would be wrong
    ("1\n00:00:00,000 --> 00:00:00,100\n[latitude: 1.0] [longitude: 2.0]\n\n2\n"
     "00:00:xx,100 --> 00:00:00,200\n[latitude: 1.5] [longitude: 2.0]\n", "SRT cue 1 runs into"),
    ("", "holds no cue"),
    ("1\n00:00:00,000 --> 00:00:01,000\nHello, a real subtitle\n", "no cue holds a DJI position"),
])
def test_a_broken_srt_is_a_one_line_error_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "clip.SRT"
    path.write_text(content)
    with pytest.raises(DataError) as failure:
        SrtTrack.read(path, max_gap_s=0.5)
    message = str(failure.value)
    assert str(path) in message and fragment in message and "\n" not in message


def test_a_binary_file_named_srt_is_a_one_line_error(tmp_path):
    path = tmp_path / "clip.srt"
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)))
    with pytest.raises(DataError, match="not a text file"):
        SrtTrack.read(path, max_gap_s=0.5)


# --- the whole run: video + sidecar -> frames.jsonl, findings, report, GeoJSON ---------------

def write_clip(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), _FPS, (160, 120))
    for i in range(frames):
        writer.write(make_scene(120, 160, seed=3 + i % 3)[0])
    writer.release()
    return path


def _config(**overrides):
    return load_config(overrides={"refine.mode": "light", "record.finding_min_area": 0.0,
                                  "record.finding_gap_frames": 3, **overrides})


def test_video_longer_than_its_srt_gets_positions_only_where_cues_are(tmp_path):
    """30 frames at 10 FPS, an SRT of 2 s: frames 0-19 get their own cue's fix, frames 20-29
    none, and the report maps exactly the findings that have one."""
    pytest.importorskip("matplotlib", reason="the report needs the report extra")
    geojson_pydantic = pytest.importorskip("geojson_pydantic", reason="GeoJSON validation")
    clip = write_clip(tmp_path / "DJI_0001.avi", 30)
    write_srt(tmp_path / "DJI_0001.SRT", per_frame_cues(20))
    layout = RecordLayout(tmp_path / "rec")
    summary = record_run(str(clip), layout.root, _config())
    assert summary["complete"]

    frames = layout.read_frames()
    assert len(frames) == 30
    for f in frames[:20]:
        assert f.position["lat"] == pytest.approx(frame_lat(f.index), abs=1e-9)
        assert f.position["lon"] == pytest.approx(_LON0, abs=1e-9)
        assert f.position["rel_alt"] == 30.5 and f.position["source"] == "srt"
    for f in frames[20:]:
        assert f.position is None and "after the last SRT cue" in f.position_missing

    findings = layout.read_findings()
    located = [f for f in findings if f["position"]]
    assert located and len(located) < len(findings), "findings on both sides of the SRT's end"
    for f in findings:
        assert (f["position"] is not None) == (f["index"] < 20)

    from edge.record.report import write_report
    result = write_report(layout.root)
    assert result.positions == len(located)
    assert (layout.report_files / "positions.png").is_file()
    text = layout.findings_geojson.read_text()
    collection = geojson_pydantic.FeatureCollection.model_validate_json(text)  # RFC 7946 types
    points = [f for f in json.loads(text)["features"] if f["geometry"]["type"] == "Point"]
    assert sorted(p["properties"]["frame"] for p in points) == sorted(f["index"] for f in located)
    for point in points:
        lon, lat, alt = point["geometry"]["coordinates"]
        assert lat == pytest.approx(frame_lat(point["properties"]["frame"]), abs=1e-9)
        assert lon == pytest.approx(_LON0, abs=1e-9) and alt == 82.25
    # the SRT's camera looks straight down from 30.5 m: each point gets its ground footprint
    polygons = [f for f in json.loads(text)["features"] if f["geometry"]["type"] == "Polygon"]
    assert len(collection.features) == 2 * len(points) and len(polygons) == len(points)
    for polygon, point in zip(polygons, points):
        ring = polygon["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) == 5
        lon, lat = point["geometry"]["coordinates"][:2]
        assert min(c[0] for c in ring) < lon < max(c[0] for c in ring)
        assert min(c[1] for c in ring) < lat < max(c[1] for c in ring)
        assert "flat level ground" in polygon["properties"]["assumptions"]
        assert point["properties"]["footprint"] == "estimated"


def test_a_broken_sidecar_stops_the_run_before_the_first_frame(tmp_path):
    clip = write_clip(tmp_path / "DJI_0002.avi", 5)
    (tmp_path / "DJI_0002.SRT").write_text("1\n00:00:00,000 --> garbage\n")
    result = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--source", str(clip),
                             "--headless", "--quiet", "--log", str(tmp_path / "f.jsonl")],
                            cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1 and "DJI_0002.SRT" in error_lines[0], result.stderr
    assert not (tmp_path / "f.jsonl").exists() or (tmp_path / "f.jsonl").read_text() == ""


def test_no_output_may_write_over_the_sidecar(tmp_path):
    clip = write_clip(tmp_path / "DJI_0003.avi", 3)
    sidecar = write_srt(tmp_path / "DJI_0003.SRT", per_frame_cues(3))
    before = sidecar.read_text()
    result = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--source", str(clip),
                             "--headless", "--quiet", "--log", str(sidecar)],
                            cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 2 and "would write over the source file" in result.stderr
    assert sidecar.read_text() == before


def test_batch_reads_the_sidecar_and_fingerprints_it(tmp_path):
    pytest.importorskip("matplotlib", reason="batch writes each record's report")
    clip = write_clip(tmp_path / "DJI_0004.avi", 12)
    sidecar = write_srt(tmp_path / "DJI_0004.SRT", per_frame_cues(12))
    out = tmp_path / "batch"
    command = [sys.executable, "-m", "edge.cli", "batch", str(clip), "--out", str(out),
               "--workers", "1", "--refine", "light"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = next((out / "records").glob("DJI_0004*/"))
    frames = RecordLayout(record).read_frames()
    assert all(f.position["lat"] == pytest.approx(frame_lat(f.index), abs=1e-9)
               for f in frames)
    manifest = json.loads((out / "manifest.json").read_text())
    printed = [p["path"] for entry in manifest["inputs"].values() for p in entry["files"]]
    assert str(sidecar.resolve()) in printed


# --- live MAVLink ----------------------------------------------------------------------------

mavutil = pytest.importorskip("pymavlink.mavutil", reason="needs pymavlink (the mavlink extra)")


def free_udp_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Autopilot(threading.Thread):
    """A pymavlink sender on loopback: GLOBAL_POSITION_INT and ATTITUDE at 20 Hz while
    `sending` is set, moving north 1e-6 degrees a message."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.link = mavutil.mavlink_connection(f"udpout:127.0.0.1:{port}", source_system=1)
        self.sending, self.done = threading.Event(), threading.Event()
        self.sent = 0
        self.last_lat = None

    def run(self) -> None:
        started = time.time()
        while not self.done.is_set():
            if self.sending.is_set():
                lat = _LAT0 + self.sent * 1e-6
                ms = int((time.time() - started) * 1000)
                self.link.mav.global_position_int_send(ms, round(lat * 1e7), round(_LON0 * 1e7),
                                                       82250, 30500, 0, 0, 0, 9000)
                self.link.mav.attitude_send(ms, 0.01, -0.02, 1.5708, 0, 0, 0)
                self.last_lat = lat
                self.sent += 1
            time.sleep(0.05)

    def stop(self) -> None:
        self.done.set()
        self.join(2)
        self.link.close()


def test_mavlink_positions_arrive_go_stale_and_come_back():
    from edge.sources.telemetry.mavlink import MavlinkTelemetry
    port = free_udp_port()
    autopilot = Autopilot(port)
    with MavlinkTelemetry(f"udpin:127.0.0.1:{port}", max_age_s=0.5) as telemetry:
        autopilot.start()
        try:
            fix, missing = telemetry.position_at(time.time())
            assert fix is None and "no MAVLink position" in missing
            autopilot.sending.set()
            time.sleep(1.0)
            fix, missing = telemetry.position_at(time.time())
            assert missing is None and 0 <= fix["age_s"] <= 0.5
            assert fix["lat"] == pytest.approx(autopilot.last_lat, abs=2e-6)  # newest, not old
            assert fix["lon"] == pytest.approx(_LON0, abs=1e-7)
            assert fix["rel_alt"] == 30.5 and fix["alt"] == 82.25
            assert fix["attitude"]["yaw"] == pytest.approx(90.0, abs=0.01)

            autopilot.sending.clear()        # the link goes quiet
            time.sleep(1.0)
            fix, missing = telemetry.position_at(time.time())
            assert fix is None and "stale" in missing

            autopilot.sending.set()          # ... and comes back
            time.sleep(1.0)
            fix, missing = telemetry.position_at(time.time())
            assert missing is None and fix["age_s"] <= 0.5
        finally:
            autopilot.stop()


def test_a_frame_takes_the_fix_of_its_capture_time_not_a_later_one():
    from edge.sources.telemetry.mavlink import MavlinkTelemetry
    port = free_udp_port()
    autopilot = Autopilot(port)
    with MavlinkTelemetry(f"udpin:127.0.0.1:{port}", max_age_s=0.5) as telemetry:
        autopilot.start()
        autopilot.sending.set()
        try:
            time.sleep(0.6)
            captured_at = time.time()
            lat_then = autopilot.last_lat
            time.sleep(0.4)                  # newer fixes arrive while the frame is in flight
            fix, _ = telemetry.position_at(captured_at)
            assert fix["lat"] <= lat_then + 1e-9 and fix["age_s"] <= 0.5
        finally:
            autopilot.stop()


@pytest.mark.parametrize("uri", ["udpin:14550", "http://x:1", "ttyUSB0", "udp:host:port"])
def test_malformed_telemetry_uris_are_one_line_config_errors(uri):
    from edge.sources.telemetry.mavlink import check_telemetry_uri
    with pytest.raises(ConfigError) as failure:
        check_telemetry_uri(uri)
    assert "udpin:" in str(failure.value) and "\n" not in str(failure.value)


def test_rustseg_run_logs_live_positions_and_their_loss(tmp_path):
    """`rustseg run --telemetry udpin:...`: frames get the live fix with its age while the
    autopilot sends, and none (stale) once it stops; the frame line shows both."""
    port = free_udp_port()
    log = tmp_path / "frames.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text("telemetry:\n  max_age_s: 0.5\nrefine:\n  mode: none\n")
    autopilot = Autopilot(port)
    autopilot.start()
    autopilot.sending.set()
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--config", str(config), "run", "--source",
         "synthetic://?width=160&height=120&frames=0&fps=10", "--telemetry",
         f"udpin:127.0.0.1:{port}", "--log", str(log), "--headless"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and _logged(log, lambda r: r["position"]) < 5:
            time.sleep(0.2)
        autopilot.sending.clear()
        while time.time() < deadline and _logged(log, lambda r: "stale" in
                                                  (r["position_missing"] or "")) < 5:
            time.sleep(0.2)
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=60)
        autopilot.stop()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    fresh = [r for r in records if r["position"]]
    stale = [r for r in records if "stale" in (r["position_missing"] or "")]
    assert len(fresh) >= 5 and len(stale) >= 5, stderr
    assert all(r["position"]["age_s"] <= 0.5 for r in fresh)
    assert all(r["position"]["lat"] == pytest.approx(_LAT0, abs=1e-3) for r in fresh)
    assert max(r["index"] for r in fresh) < min(r["index"] for r in stale)
    assert "s old" in stdout and "no position: MAVLink position stale" in stdout


def _logged(log: Path, test) -> int:
    if not log.exists():
        return 0
    lines = [line for line in log.read_text().splitlines() if line.endswith("}")]
    return sum(1 for line in lines if test(json.loads(line)))


def test_the_live_page_shows_the_position_and_its_age():
    """The console reads the frame record: its stats carry the position, its page has the
    cells, and its script fills them from `position` (age) or says it is missing."""
    import numpy as np

    from edge.console.page import render_page, static_file
    from edge.console.server import HttpFeedSink
    sink = HttpFeedSink("127.0.0.1", 0, "", 75, 2)
    try:
        position = {"lat": _LAT0, "lon": _LON0, "alt": 82.25, "rel_alt": 30.5, "gimbal": None,
                    "attitude": None, "source": "mavlink", "age_s": 0.21}
        image = np.zeros((120, 160, 3), np.uint8)
        sink.write(output_frame(0, image, position=position))
        assert sink.stats()["frame"]["position"]["age_s"] == 0.21
        sink.write(output_frame(1, image, position_missing="MAVLink position stale"))
        assert sink.stats()["frame"]["position_missing"] == "MAVLink position stale"
    finally:
        sink.close()
    page = render_page("", "", 2.0, load_config().overlay)
    assert 'id="position"' in page and 'id="position_age"' in page
    script = static_file("/static/console.js")[0].decode()  # the page's script is static
    assert "p.age_s" in script and "position_missing" in script


def test_mavlink_over_a_serial_device():
    """A telemetry radio or the autopilot's UART: here a pseudo-terminal pair, the autopilot
    writing MAVLink bytes into one end and rustseg reading the other as a serial port."""
    import os
    pytest.importorskip("serial", reason="serial MAVLink needs pyserial (the mavlink extra)")
    from edge.sources.telemetry.mavlink import MavlinkTelemetry

    class Wire:
        def __init__(self, fd):
            self.fd = fd

        def write(self, data):
            os.write(self.fd, data)

    autopilot_end, companion_end = os.openpty()
    sender = mavutil.mavlink.MAVLink(Wire(autopilot_end), srcSystem=1, srcComponent=1)
    with MavlinkTelemetry(os.ttyname(companion_end), max_age_s=1.0, baud=57600) as telemetry:
        deadline = time.time() + 10
        fix = None
        while fix is None and time.time() < deadline:
            sender.global_position_int_send(0, round(_LAT0 * 1e7), round(_LON0 * 1e7), 82250,
                                            30500, 0, 0, 0, 0)
            time.sleep(0.1)
            fix, _ = telemetry.position_at(time.time())
    os.close(autopilot_end)
    os.close(companion_end)
    assert fix is not None and fix["lat"] == pytest.approx(_LAT0, abs=1e-7)


def test_a_missing_serial_device_is_a_one_line_error():
    from edge.errors import SourceError
    from edge.sources.telemetry.mavlink import MavlinkTelemetry
    with pytest.raises(SourceError) as failure:
        MavlinkTelemetry("/dev/ttyNO_SUCH_PORT0", max_age_s=1.0)
    assert "/dev/ttyNO_SUCH_PORT0" in str(failure.value) and "\n" not in str(failure.value)


def test_findings_geojson_opens_with_gdal_as_qgis_does(tmp_path):
    """QGIS reads GeoJSON through GDAL/OGR: ogrinfo must open the file, see every feature,
    and read the first point where the SRT put the drone."""
    import shutil
    ogrinfo = shutil.which("ogrinfo")
    if ogrinfo is None:
        pytest.skip("GDAL's ogrinfo is not installed (apt install gdal-bin)")
    pytest.importorskip("matplotlib", reason="the report needs the report extra")
    clip = write_clip(tmp_path / "DJI_0005.avi", 12)
    write_srt(tmp_path / "DJI_0005.SRT", per_frame_cues(12))
    layout = RecordLayout(tmp_path / "rec")
    record_run(str(clip), layout.root, _config())
    from edge.record.report import write_report
    write_report(layout.root)
    features = json.loads(layout.findings_geojson.read_text())["features"]
    result = subprocess.run([ogrinfo, "-ro", "-al", str(layout.findings_geojson)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"Feature Count: {len(features)}" in result.stdout
    import re
    points = [tuple(map(float, m)) for m in
              re.findall(r"POINT Z \(([-\d.]+) ([-\d.]+) ([-\d.]+)\)", result.stdout)]
    expected = [tuple(f["geometry"]["coordinates"]) for f in features
                if f["geometry"]["type"] == "Point"]
    assert len(points) == len(expected)                   # lon, lat, alt as written
    for got, want in zip(points, expected):
        assert got == pytest.approx(want, abs=1e-7)
    assert "POLYGON" in result.stdout    # the footprints of a camera looking straight down

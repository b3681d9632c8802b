"""The run record (`rustseg run --record`), `rustseg report` and photo positions (issue 12)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import cv2
import pytest

from conftest import needs_tf
from edge.config import load_config
from edge.data.synthetic import make_scene
from edge.errors import ConfigError, MissingDependencyError
from edge.live.app import RunRequest, record_run, run_loop
from edge.record.layout import RecordLayout, flight_stats
from edge.record.report import write_report
from edge.stop_reason import StopReason

pytest.importorskip("matplotlib", reason="the report needs the report extra (matplotlib)")
Image = pytest.importorskip("PIL.Image", reason="the EXIF tests write EXIF with Pillow")

ROOT = Path(__file__).resolve().parent.parent
SMALL_CLIP = "synthetic://?width=160&height=120&frames=24&seed=3"


def _config(**overrides):
    return load_config(overrides={"refine.mode": "light", **overrides})


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def _links(html_path: Path) -> list[str]:
    parser = _Links()
    parser.feed(html_path.read_text())
    return parser.links


def _assert_report_is_local(layout: RecordLayout) -> None:
    links = _links(layout.report_html)
    assert links, "the report shows no image"
    for link in links:
        assert "://" not in link and not link.startswith("//"), link
        assert (layout.root / link).is_file(), link


def test_record_and_report_from_a_synthetic_run(tmp_path):
    layout = RecordLayout(tmp_path / "rec")
    config = _config(**{"record.finding_gap_frames": 5, "record.finding_min_area": 0.01})
    summary = record_run(SMALL_CLIP, layout.root, config)

    for path in (layout.overlay_video, layout.frames_log, layout.run_json, layout.summary_json,
                 layout.findings_log):
        assert path.is_file(), path
    assert summary["ended"] == "end of source" and summary["complete"] and layout.is_complete()
    frames = layout.read_frames()
    assert [f.index for f in frames] == list(range(24))
    video = cv2.VideoCapture(str(layout.overlay_video))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 24

    # The summary's numbers are those of the log, computed here independently.
    areas = [f.corroded_fraction for f in frames]
    flight = summary["flight"]
    assert flight["frames"] == 24
    assert flight["max_corroded_fraction"] == max(areas)
    assert flight["mean_corroded_fraction"] == pytest.approx(sum(areas) / 24)
    assert flight["frames_with_corrosion"] == sum(a > 0 for a in areas)

    # Findings: above the floor, more than the gap apart, the largest area among them, files.
    findings = layout.read_findings()
    assert findings and summary["findings"] == len(findings)
    indices = [f["index"] for f in findings]
    assert all(b - a > 5 for a, b in zip(indices, indices[1:]))
    assert max(areas) in [f["corroded_fraction"] for f in findings]
    by_index = {f.index: f for f in frames}
    for finding in findings:
        # A finding carries its frame's own record (FrameRecord.to_json), then its files; the
        # file names win where they share a key ("mask": the PNG, not fresh/carried).
        record = {k: v for k, v in by_index[finding["index"]].to_json().items() if k != "mask"}
        assert {k: finding[k] for k in record} == record
        assert finding["corroded_fraction"] >= 0.01
        mask = cv2.imread(str(layout.root / finding["mask"]), cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (120, 160)
        assert (mask > 0).mean() == pytest.approx(finding["corroded_fraction"], abs=1e-4)
        assert cv2.imread(str(layout.root / finding["raw"])).shape == (120, 160, 3)
        assert cv2.imread(str(layout.root / finding["overlay"])).shape == (120, 160, 3)
        assert finding["position"] is None  # a clip has no GPS

    run = layout.read_run()
    model_card = json.loads((ROOT / "models" / "rustseg_default.json").read_text())
    assert run["model"]["model_sha256"] == model_card["model_sha256"]
    assert run["config"]["record"]["finding_gap_frames"] == 5
    assert {"python", "numpy", "opencv", "runtime"} <= set(run["versions"])
    assert run["started_at"] <= run["ended_at"]

    result = write_report(layout.root, top=3)
    assert result.findings == len(findings) and not result.wrote_summary
    _assert_report_is_local(layout)
    text = layout.report_html.read_text()
    assert f"{100 * max(areas):.2f} % of frame" in text
    assert text.count('class="card"') == min(3, len(findings))
    rows = layout.findings_csv.read_text().splitlines()
    assert len(rows) == 1 + len(findings)
    assert not layout.findings_geojson.exists()  # no positions, no GeoJSON


def test_record_keeps_log_and_other_outputs_working(tmp_path):
    request = RunRequest(SMALL_CLIP, (str(tmp_path / "also.mp4"),), str(tmp_path / "also.jsonl"),
                         str(tmp_path / "masks"), headless=True,
                         record=str(tmp_path / "rec"))
    report = run_loop(_config(), request)
    assert all(t.written == 24 and t.error is None for t in report.outputs.values())
    assert len((tmp_path / "also.jsonl").read_text().splitlines()) == 24
    assert len(list((tmp_path / "masks").glob("*.png"))) == 24


def test_record_folder_must_be_new_or_empty_and_apart_from_the_footage(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.jpg"), make_scene(64, 80, 1)[0])
    with pytest.raises(ConfigError, match="not empty"):
        record_run(str(photos / "a.jpg"), photos, _config())
    # An earlier record may be replaced, but not when the footage lies inside it.
    old = RecordLayout(tmp_path / "old")
    record_run(str(photos), old.root, _config())
    shot = old.root / "flight_photo.jpg"
    shot.write_bytes((photos / "a.jpg").read_bytes())
    with pytest.raises(ConfigError, match="holds the source file"):
        record_run(str(shot), old.root, _config(), replace=True)
    assert shot.is_file() and old.run_json.is_file()  # nothing was cleared
    assert (photos / "a.jpg").is_file()


def _start_endless_run(record: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--source",
                             "synthetic://?width=160&height=120&frames=0", "--record",
                             str(record), "--refine", "none", "--quiet"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_frames(process: subprocess.Popen, log: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.1)
    process.kill()
    pytest.fail("the run wrote no frames within 60 s")


def test_report_from_a_record_cut_short_by_sigint(tmp_path):
    layout = RecordLayout(tmp_path / "rec")
    process = _start_endless_run(layout.root)
    _wait_for_frames(process, layout.frames_log, 5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    summary = layout.read_summary()
    assert summary["ended"] == "SIGINT" and not summary["complete"]
    frames = layout.read_frames()
    assert summary["flight"] == flight_stats(frames) and len(frames) >= 5

    result = write_report(layout.root)
    assert result.summary["ended"] == "SIGINT"
    assert f"<td>{len(frames)}</td>" in layout.report_html.read_text()
    _assert_report_is_local(layout)


def test_report_rebuilds_the_summary_of_a_run_that_died(tmp_path):
    layout = RecordLayout(tmp_path / "rec")
    process = _start_endless_run(layout.root)
    _wait_for_frames(process, layout.frames_log, 3)
    process.kill()  # SIGKILL: no handler runs, summary.json stays as reserved at start
    process.communicate(timeout=30)
    assert layout.read_summary()["ended"] == StopReason.RUNNING

    result = write_report(layout.root)
    assert result.wrote_summary
    summary = layout.read_summary()
    assert summary["ended"] == StopReason.CUT_SHORT and not summary["complete"]
    assert summary["flight"]["frames"] == len(layout.read_frames())


def _dms(degrees: float) -> tuple[Fraction, Fraction, Fraction]:
    value = abs(degrees)
    d = int(value)
    m = int((value - d) * 60)
    s = (value - d - m / 60) * 3600
    return Fraction(d), Fraction(m), Fraction(s).limit_denominator(100000)


def _write_geotagged(path: Path, seed: int, lat: float, lon: float, alt: float) -> None:
    """A rusty synthetic still with GPS in its EXIF, as a drone camera writes it."""
    frame_bgr, _ = make_scene(120, 160, seed)
    exif = Image.Exif()
    exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: _dms(lat), 3: "E" if lon >= 0 else "W",
                    4: _dms(lon), 5: 0, 6: Fraction(round(alt * 10), 10)}
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
           '22-rdf-syntax-ns#"><rdf:Description xmlns:drone-dji="http://www.dji.com/drone-dji/'
           f'1.0/" drone-dji:GimbalPitchDegree="-{seed}.5" drone-dji:GimbalYawDegree="10.0"/>'
           '</rdf:RDF></x:xmpmeta>').encode()
    Image.fromarray(frame_bgr[:, :, ::-1]).save(path, exif=exif, xmp=xmp, quality=95)


def test_geojson_from_geotagged_stills_is_in_lon_lat_order(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    # Southern and western hemispheres, so a swapped or unsigned coordinate cannot pass.
    places = {"p1.jpg": (-33.868820, 151.209290, 58.3), "p2.jpg": (40.689247, -74.044502, 12.0),
              "p3.jpg": (-22.951916, -43.210487, 704.5)}
    for seed, (name, (lat, lon, alt)) in enumerate(places.items(), start=1):
        _write_geotagged(photos / name, seed, lat, lon, alt)
    cv2.imwrite(str(photos / "p4_no_exif.jpg"), make_scene(120, 160, 9)[0])
    layout = RecordLayout(tmp_path / "rec")
    record_run(str(photos), layout.root, _config(**{"record.finding_min_area": 0.0}))

    findings = {Path(f["source_file"]).name: f for f in layout.read_findings()}
    assert set(places) <= set(findings), "every rusty geotagged still should be a finding"
    result = write_report(layout.root)
    assert result.positions == len(places)
    collection = json.loads(layout.findings_geojson.read_text())
    assert collection["type"] == "FeatureCollection"
    seen = {}
    for feature in collection["features"]:
        assert feature["geometry"]["type"] == "Point"
        seen[feature["properties"]["file"]] = feature
    assert set(seen) == set(places)  # the still without EXIF has no point
    for name, (lat, lon, alt) in places.items():
        feature = seen[name]
        got_lon, got_lat, got_alt = feature["geometry"]["coordinates"]
        assert got_lon == pytest.approx(lon, abs=1e-6) and got_lat == pytest.approx(lat, abs=1e-6)
        assert got_alt == pytest.approx(alt, abs=0.05)
        properties = feature["properties"]
        assert properties["corroded_fraction"] == findings[name]["corroded_fraction"]
        assert properties["score"] == findings[name]["score"]
        assert (layout.root / properties["mask"]).is_file()
        assert properties["gimbal"]["yaw"] == 10.0
    assert (layout.report_files / "positions.png").is_file()
    _assert_report_is_local(layout)


def test_stills_without_exif_give_no_positions_and_no_error(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        cv2.imwrite(str(photos / f"s{seed}.png"), make_scene(120, 160, seed + 20)[0])
    layout = RecordLayout(tmp_path / "rec")
    summary = record_run(str(photos), layout.root, _config(**{"record.finding_min_area": 0.0}))
    assert summary["complete"]
    findings = layout.read_findings()
    assert all(f["position"] is None for f in findings)
    result = write_report(layout.root)
    assert result.positions == 0 and not layout.findings_geojson.exists()
    assert not (layout.report_files / "positions.png").exists()


def test_report_says_in_one_line_what_is_missing(tmp_path, monkeypatch):
    result = subprocess.run([sys.executable, "-m", "edge.cli", "report", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"rustseg: error: rustseg report {tmp_path}: not a run record (no run.json); make one "
        "with rustseg run --record DIR"]
    (tmp_path / "run.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the report extra were absent
    with pytest.raises(MissingDependencyError, match=r"pip install 'rustseg-edge\[report\]'"):
        write_report(tmp_path)


def test_demo_ends_with_its_record_and_report(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edge.cli", "demo", "--source",
                             "synthetic://?width=128&height=96&frames=8&seed=3", "--out-dir",
                             str(tmp_path), "--refine", "none"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = tmp_path / "demo_record" / "report.html"
    assert result.stdout.strip().splitlines()[-1].endswith(f"report: {report}")
    layout = RecordLayout(report.parent)
    assert layout.is_complete() and len(layout.read_frames()) == 8
    _assert_report_is_local(layout)


def test_record_cut_short_by_a_full_disk_says_so_and_reports(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("needs a small tmpfs to fill (root and mount)")
    try:
        layout = RecordLayout(disk / "rec")
        no_reserve = tmp_path / "no_reserve.yaml"   # the video fills the card too
        no_reserve.write_text("record:\n  reserve_mb: 0\n")
        result = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--source",
                                 "synthetic://?width=160&height=120&frames=0", "--record",
                                 str(layout.root), "--refine", "none", "--quiet",
                                 "--config", str(no_reserve)], cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 5, result.stderr  # outputs lost: not a success
        summary = layout.read_summary()
        assert summary["ended"] == "disk full" and not summary["complete"]
        assert summary["flight"]["frames"] == len(layout.read_frames()) > 0
        copy = RecordLayout(tmp_path / "copy")  # the report is made where there is room
        shutil.copytree(layout.root, copy.root)
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    report = write_report(copy.root)
    assert report.summary["ended"] == "disk full"
    _assert_report_is_local(copy)


def test_a_v3_record_carries_states_and_grades_into_report_csv_and_findings(tmp_path):
    """The shipped model has condition states (contract v3): frames, findings, the CSV and
    the report say how bad the rust is, and the grades carry their caveat."""
    import csv

    from edge.method.grades import GRADE_CAVEAT
    from edge.method.model import CorrosionModel

    if CorrosionModel(ROOT / "models" / "rustseg_default.tflite").contract < 3:
        pytest.skip("the shipped model has no condition states")
    layout = RecordLayout(tmp_path / "rec")
    config = _config(**{"record.finding_gap_frames": 5, "record.finding_min_area": 0.01})
    record_run(SMALL_CLIP, layout.root, config)
    frames = layout.read_frames()
    for f in frames:
        area = f.area_by_state
        assert set(area) == {"fair", "poor", "severe"}
        assert sum(area.values()) == pytest.approx(f.corroded_fraction, abs=1e-4)
        assert f.grades["astm_d610"] in range(11)
    findings = layout.read_findings()
    assert findings
    for finding in findings:
        assert finding["area_by_state"] is not None and finding["grades"]
        present = [n for n in ("fair", "poor", "severe") if finding["area_by_state"][n] > 0]
        assert finding["worst_state"] == (present[-1] if present else None)
    write_report(layout.root, top=3)
    rows = list(csv.DictReader(layout.findings_csv.open()))
    assert {"astm_d610", "iso_4628_3", "worst_state", "fair_fraction", "poor_fraction",
            "severe_fraction"} <= set(rows[0])
    assert rows[0]["iso_4628_3"].startswith("Ri ")
    text = layout.report_html.read_text()
    assert "Condition states over the flight" in text and "Severe (CS4)" in text
    assert GRADE_CAVEAT in text


@needs_tf
def test_a_v2_record_gives_report_csv_and_geojson_with_grades_and_no_states(tmp_path,
                                                                             tiny_models):
    """A model without condition states (contract v2) still records, reports and exports:
    grades in every frame and finding, empty state columns, no table of states."""
    import csv

    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in (1, 2, 3):
        _write_geotagged(photos / f"p{seed}.jpg", seed, 45.0 + seed / 100, 7.0, 30.0)
    layout = RecordLayout(tmp_path / "rec")
    # A random head: its seg hovers around 0.5, so the path that thresholds seg (none) marks
    # part of every photo once the gate lets every frame through.
    config = _config(**{"model.path": str(tiny_models["v2"]), "record.finding_min_area": 0.0,
                        "refine.mode": "none", "gate.score_floor": 0.0,
                        "gate.seg_min_area": 0.0})
    record_run(str(photos), layout.root, config)

    frames = layout.read_frames()
    assert len(frames) == 3
    for f in frames:
        assert f.area_by_state is None
        assert f.grades["over"] == "frame"
        assert f.grades["rusted_percent"] == pytest.approx(100 * f.corroded_fraction, abs=1e-3)
    findings = layout.read_findings()
    assert findings, "the gate is open to everything here, so every photo is a finding"
    assert all(f["worst_state"] is None and f["grades"] for f in findings)
    result = write_report(layout.root)
    assert result.positions == len(findings)
    rows = list(csv.DictReader(layout.findings_csv.open()))
    assert len(rows) == len(findings)
    for row in rows:
        assert row["astm_d610"] and row["iso_4628_3"].startswith("Ri ")
        assert row["graded_over"] == "frame"
        assert row["worst_state"] == row["fair_fraction"] == row["severe_fraction"] == ""
    features = json.loads(layout.findings_geojson.read_text())["features"]
    assert features and all(feature["properties"]["worst_state"] is None
                            and feature["properties"]["astm_d610"] is not None
                            for feature in features if feature["geometry"]["type"] == "Point")
    text = layout.report_html.read_text()
    assert "Condition states over the flight" not in text and "ASTM D610" in text

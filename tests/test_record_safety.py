"""Records that cannot be turned against their owner (issue 19 items 4, 5, 6, 8, 11, 14, 15,
16, 23): links, live runs, stored markup, spreadsheet formulas, positions off the Earth,
malformed files, odd photo names, failed runs and outputs inside the record.

Every record here is made by the real pipeline (synthetic scenes, the shipped model); the
hostile parts are then written into it as an attacker or a broken tool would.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import subprocess
import sys
import time
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import cv2
import pytest

from edge.cli import main
from edge.config import load_config
from edge.data.synthetic import make_scene
from edge.errors import DataError, SourceError
from edge.live.app import record_run
from edge.record.layout import RecordLayout
from edge.record.report import write_report
from edge.stop_reason import StopReason

pytest.importorskip("matplotlib", reason="the report needs the report extra (matplotlib)")
fastjsonschema = pytest.importorskip("fastjsonschema", reason="records are checked by schema")
Image = pytest.importorskip("PIL.Image", reason="the EXIF tests write EXIF with Pillow")

ROOT = Path(__file__).resolve().parent.parent
CLIP = "synthetic://?width=160&height=120&frames=16&seed=3"
MARKUP = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&"
PATH_MARKUP = "<img src=x onerror=alert(3)>\"'&#?%"   # a file name: no slash


def _config(**overrides):
    return load_config(overrides={"refine.mode": "none", "record.finding_min_area": 0.0,
                                  "record.finding_gap_frames": 3, **overrides})


@pytest.fixture
def record(tmp_path) -> RecordLayout:
    layout = RecordLayout(tmp_path / "rec")
    summary = record_run(CLIP, layout.root, _config())
    assert summary["complete"] and layout.read_findings()
    return layout


# --- item 6: every value of a record is untrusted ---------------------------------------------

class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _poison(value, key=None):
    """Every string (and every key) of a JSON tree replaced by markup; a finding's image paths
    keep the one shape their schema allows (a file in findings/)."""
    if isinstance(value, dict):
        return {(_poison(k) if k not in _KEEP_KEYS else k): _poison(v, k)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_poison(v) for v in value]
    if isinstance(value, str):
        return f"findings/{PATH_MARKUP}" if key in ("raw", "overlay", "mask") else MARKUP
    return value


# Keys the readers look up by name (their values are poisoned, the keys themselves kept).
_KEEP_KEYS = {"format", "source", "source_kind", "started_at", "ended_at", "model", "path",
              "model_sha256", "finding_rule", "ended", "complete", "error", "frames", "index",
              "name", "captured_at", "output_at", "score", "corroded_fraction", "ms", "raw",
              "overlay", "mask", "source_file", "position", "expected", "read", "skipped",
              "skip_reasons", "min_area", "gap", "flight", "valid"}


def _rewrite_jsonl(path: Path, change) -> None:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(change(line)) + "\n" for line in lines))


def test_every_field_of_a_record_filled_with_markup_comes_out_escaped(record):
    run = record.read_run()
    run["finding_rule"] = {MARKUP: MARKUP}
    record.run_json.write_text(json.dumps(_poison(run)))
    summary = _poison(record.read_summary())
    summary["complete"] = False
    summary["frames"] = {"expected": 20, "read": 16, "skipped": 4, "skip_reasons": [MARKUP]}
    record.summary_json.write_text(json.dumps(summary))
    _rewrite_jsonl(record.frames_log, _poison)
    _rewrite_jsonl(record.findings_log, _poison)

    result = write_report(record.root)
    page = record.report_html.read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    assert result.findings and MARKUP.split("<img")[0] not in page
    assert [tag for tag, _ in parser.tags if tag == "script"] == []
    for tag, attrs in parser.tags:
        assert not [name for name in attrs if name.startswith("on")], (tag, attrs)
    # The markup is there, as text: the reader sees what the record holds.
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5
    # ... and the finding's image links point into findings/, percent-encoded.
    sources = [attrs["src"] for tag, attrs in parser.tags if tag == "img"]
    assert "findings/%3Cimg%20src%3Dx%20onerror%3Dalert%283%29%3E%22%27%26%23%3F%25" in sources


def test_a_finding_index_holding_markup_is_refused_by_the_schema(record):
    _rewrite_jsonl(record.findings_log, lambda f: {**f, "index": MARKUP})
    with pytest.raises(DataError, match=r"findings\.jsonl line 1: malformed at index"):
        write_report(record.root)
    assert not record.report_html.exists()


# --- item 4: links inside a record ------------------------------------------------------------

@pytest.mark.parametrize("entry", ["report.html", "findings.csv", "summary.json",
                                   "report_files", "report_files/timeline.png"])
def test_the_report_refuses_links_leading_out_of_the_record(record, tmp_path, entry):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "timeline.png").write_text("keep me")
    (victim / "file").write_text("keep me")
    target = victim if entry == "report_files" else victim / "file"
    path = record.root / entry
    if entry.startswith("report_files/"):
        path.parent.mkdir()
    if path.is_dir() or path.exists():
        path.unlink()
    path.symlink_to(target)

    with pytest.raises(DataError, match="link leading out of the record"):
        write_report(record.root)
    assert (victim / "file").read_text() == "keep me"
    assert (victim / "timeline.png").read_text() == "keep me"
    assert sorted(p.name for p in victim.iterdir()) == ["file", "timeline.png"]


def test_links_that_stay_inside_the_record_are_replaced_not_written_through(record):
    frames_before = record.frames_log.read_bytes()
    findings_before = sorted(p.name for p in record.findings_dir.iterdir())
    record.report_html.symlink_to(record.frames_log)
    record.findings_csv.symlink_to("frames.jsonl")
    record.report_files.symlink_to(record.findings_dir)

    write_report(record.root)
    assert record.frames_log.read_bytes() == frames_before
    assert sorted(p.name for p in record.findings_dir.iterdir()) == findings_before
    for path in (record.report_html, record.findings_csv, record.report_files):
        assert not path.is_symlink()
    assert record.report_html.read_text().startswith("<!doctype html>")
    assert (record.report_files / "timeline.png").is_file()


def test_geojson_written_through_a_link_out_is_refused(tmp_path):
    layout = _geotagged_record(tmp_path, {"p1.jpg": (48.0, 2.0)})
    outside = tmp_path / "outside.geojson"
    outside.write_text("keep me")
    layout.findings_geojson.symlink_to(outside)
    with pytest.raises(DataError, match="findings.geojson is a link leading out"):
        write_report(layout.root)
    assert outside.read_text() == "keep me"


# --- item 5: a report on a run still going ----------------------------------------------------

def test_a_report_on_a_live_run_is_read_only_and_says_so(tmp_path):
    layout = RecordLayout(tmp_path / "rec")
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--source",
                                "synthetic://?width=160&height=120&frames=0", "--record",
                                str(layout.root), "--refine", "none", "--quiet"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (
                not layout.frames_log.is_file() or len(layout.read_frames()) < 5):
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        reserved = layout.summary_json.read_bytes()
        assert json.loads(reserved)["ended"] == StopReason.RUNNING and len(reserved) == 64 * 1024

        result = write_report(layout.root)
        assert result.running_pid == process.pid and not result.wrote_summary
        assert layout.summary_json.read_bytes() == reserved  # the run's reserve is untouched
        page = layout.report_html.read_text()
        assert "The run is still going" in page and f"process {process.pid}" in page
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    assert layout.read_summary()["ended"] == "SIGINT"  # the run still wrote its own end
    assert not layout.run_lock.exists()
    after = write_report(layout.root)
    assert after.running_pid is None and after.summary["ended"] == "SIGINT"


# --- item 8: spreadsheet formulas -------------------------------------------------------------

_FORMULA_NAMES = ["=HYPERLINK(A1)", "+SUM(1)", "-2+3", "@cmd", "\tTab", "\rCR"]


def test_csv_cells_never_start_a_formula(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed, name in enumerate(_FORMULA_NAMES):
        cv2.imwrite(str(photos / f"{name}.png"), make_scene(96, 128, seed + 40)[0])
    layout = RecordLayout(tmp_path / "rec")
    record_run(str(photos), layout.root, _config())
    write_report(layout.root)
    with open(layout.findings_csv, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert sorted(row["name"] for row in rows) == sorted("'" + n for n in _FORMULA_NAMES)
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), (column, cell)
            assert not cell.startswith("-") or _is_number(cell), (column, cell)


def test_the_batch_index_csv_never_starts_a_formula(tmp_path):
    from edge.batch.index import write_index

    row = {"input": "=1+1", "status": "failed", "frames": 0, "skipped": 0,
           "corroded_share": 0.0, "max_corroded_area": 0.0, "wall_s": -1.5,
           "error": "@SUM(A1)", "report": ""}
    write_index([row], tmp_path)
    cells = next(csv.DictReader(io.StringIO((tmp_path / "index.csv").read_text())))
    assert cells["input"] == "'=1+1" and cells["error"] == "'@SUM(A1)"
    assert cells["wall_s"] == "-1.5"  # a number stays a number


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- item 11: positions -----------------------------------------------------------------------

def _ratio(value: float) -> Fraction:
    return Fraction(value).limit_denominator(100000)


def _write_photo(path: Path, seed: int, dms_lat, lat_ref, dms_lon, lon_ref, gimbal="10.0"):
    """A rusty still whose EXIF GPS holds exactly the given degrees, minutes, seconds and refs."""
    exif = Image.Exif()
    gps = {2: tuple(_ratio(v) for v in dms_lat), 4: tuple(_ratio(v) for v in dms_lon),
           6: Fraction(123, 10), 5: 0}
    if lat_ref is not None:
        gps[1] = lat_ref
    if lon_ref is not None:
        gps[3] = lon_ref
    exif[0x8825] = gps
    xmp = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
           '22-rdf-syntax-ns#"><rdf:Description xmlns:drone-dji="http://www.dji.com/drone-dji/'
           f'1.0/" drone-dji:GimbalPitchDegree="{gimbal}" drone-dji:GimbalYawDegree="12.5"/>'
           '</rdf:RDF></x:xmpmeta>').encode()
    Image.fromarray(make_scene(120, 160, seed)[0][:, :, ::-1]).save(path, exif=exif, xmp=xmp,
                                                                     quality=95)


def _dms(degrees: float) -> tuple[float, float, float]:
    d = int(abs(degrees))
    m = int((abs(degrees) - d) * 60)
    return d, m, round((abs(degrees) - d - m / 60) * 3600, 3)


def _geotagged_record(tmp_path: Path, places: dict[str, tuple[float, float]]) -> RecordLayout:
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed, (name, (lat, lon)) in enumerate(places.items(), start=1):
        _write_photo(photos / name, seed, _dms(lat), "N" if lat >= 0 else "S", _dms(lon),
                     "E" if lon >= 0 else "W")
    layout = RecordLayout(tmp_path / "rec")
    record_run(str(photos), layout.root, _config())
    return layout


# RFC 7946, written down for these files: a FeatureCollection of Point features whose position
# is [longitude, latitude(, altitude)] in WGS 84 degrees, every number finite.
_POSITION = {"type": "array", "minItems": 2, "maxItems": 3,
             "items": [{"type": "number", "minimum": -180, "maximum": 180},
                       {"type": "number", "minimum": -90, "maximum": 90},
                       {"type": "number"}]}
RFC7946_POINTS = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object", "required": ["type", "features"],
    "properties": {"type": {"const": "FeatureCollection"},
                   "features": {"type": "array", "items": {
                       "type": "object", "required": ["type", "geometry", "properties"],
                       "properties": {"type": {"const": "Feature"},
                                      "properties": {"type": ["object", "null"]},
                                      "geometry": {"type": "object",
                                                   "required": ["type", "coordinates"],
                                                   "properties": {"type": {"const": "Point"},
                                                                  "coordinates": _POSITION}}}}}},
}


def _strict_geojson(path: Path) -> dict:
    """Parse as RFC 8259 JSON (NaN and Infinity are not JSON) and validate as RFC 7946."""
    def no_constants(name):
        raise ValueError(f"{name} is not JSON")
    value = json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constants)
    fastjsonschema.compile(RFC7946_POINTS)(value)
    return value


def test_positions_off_the_earth_are_dropped_with_a_warning(tmp_path, caplog):
    photos = tmp_path / "photos"
    photos.mkdir()
    good = {"good.jpg": ((48, 51, 29.6), "N", (2, 17, 40.2), "E"),
            "south_west.jpg": ((33, 52, 7.7), "S", (70, 40, 12.0), "W")}
    bad = {"lat200.jpg": ((200, 0, 0), "N", (2, 0, 0), "E"),
           "lon400.jpg": ((45, 0, 0), "N", (400, 0, 0), "E"),
           "minutes60.jpg": ((45, 60, 0), "N", (2, 0, 0), "E"),
           "seconds60.jpg": ((45, 0, 60), "N", (2, 0, 0), "E"),
           "no_ref.jpg": ((45, 0, 0), None, (2, 0, 0), "E"),
           "bogus_ref.jpg": ((45, 0, 0), "N", (2, 0, 0), "X")}
    # Scenes the model marks rust in (positions are read for findings): seeds 6 and 15 of
    # make_scene at this size show too little for the `none` path.
    seeds = (1, 2, 3, 4, 5, 7, 8, 9)
    for seed, (name, (lat, lat_ref, lon, lon_ref)) in zip(seeds, {**good, **bad}.items()):
        _write_photo(photos / name, seed, lat, lat_ref, lon, lon_ref,
                     gimbal="NaN" if name == "good.jpg" else "inf")
    layout = RecordLayout(tmp_path / "rec")
    with caplog.at_level("WARNING", logger="edge.record.positions"):
        record_run(str(photos), layout.root, _config())
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in bad:
        assert name in warned, name

    result = write_report(layout.root)
    collection = _strict_geojson(layout.findings_geojson)
    files = {f["properties"]["file"]: f for f in collection["features"]}
    assert set(files) == set(good) and result.positions == 2
    lon, lat, _ = files["south_west.jpg"]["geometry"]["coordinates"]
    assert lat == pytest.approx(-(33 + 52 / 60 + 7.7 / 3600), abs=1e-6)
    assert lon == pytest.approx(-(70 + 40 / 60 + 12 / 3600), abs=1e-6)
    assert files["good.jpg"]["properties"]["gimbal"] == {"yaw": 12.5}  # NaN pitch left out


def test_positions_a_record_holds_are_checked_again_by_the_report(tmp_path):
    layout = _geotagged_record(tmp_path, {"a.jpg": (10.0, 20.0), "b.jpg": (-5.0, -6.0)})
    bad = [{"lat": 200.0, "lon": 1.0}, {"lat": float("nan"), "lon": 1.0}]
    _rewrite_jsonl(layout.findings_log, lambda f: {
        **f, "position": bad.pop() if bad and f["position"] else f["position"]})
    result = write_report(layout.root)
    assert len(result.dropped_positions) == 2 and result.positions == 0
    assert any("lat 200.0 is outside -90..90" in line for line in result.dropped_positions)
    assert not layout.findings_geojson.exists() or \
        _strict_geojson(layout.findings_geojson)["features"] == []


# --- item 14: malformed records and manifests -------------------------------------------------

def _one_line_exit_2(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rustseg: error: "), err
    return err[0]


@pytest.mark.parametrize("damage, expected", [
    (lambda r: r.summary_json.write_text('{"ended": 5, "complete": false}'),
     r"summary\.json: malformed at ended"),
    (lambda r: r.frames_log.write_text("[1]\n"), r"frames\.jsonl line 1: malformed"),
    (lambda r: r.frames_log.write_text('{"junk":1}\n'), r"frames\.jsonl line 1: malformed"),
    (lambda r: r.run_json.write_text(json.dumps({**r.read_run(), "model": None})),
     r"run\.json: malformed at model"),
    (lambda r: r.findings_log.write_text('{"index":1}\n'), r"findings\.jsonl line 1: malformed"),
    (lambda r: r.run_json.write_text("[" * 100000 + "]" * 100000), r"run\.json"),
])
def test_a_malformed_record_is_one_line_and_exit_2(record, capsys, damage, expected):
    import re
    damage(record)
    line = _one_line_exit_2(capsys, ["report", str(record.root)])
    assert re.search(expected, line), line


def test_a_malformed_manifest_or_binary_list_is_one_line_and_exit_2(tmp_path, capsys):
    clip = tmp_path / "a.avi"
    from edge.data.synthetic import write_clip_video
    write_clip_video(clip, 96, 64, 3, seed=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("[]")
    line = _one_line_exit_2(capsys, ["batch", str(clip), "--out", str(out)])
    assert "manifest.json: malformed at the top level" in line
    (out / "manifest.json").write_text(json.dumps({"format": "rustseg-batch-manifest/1",
                                                   "inputs": {"x": {"status": 3}}}))
    assert "malformed at inputs/x" in _one_line_exit_2(capsys, ["batch", str(clip), "--out",
                                                                str(out)])
    binary = tmp_path / "list.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    line = _one_line_exit_2(capsys, ["batch", f"@{binary}", "--out", str(tmp_path / "o2")])
    assert "not a text file" in line


# --- item 15: a photo named ..jpg -------------------------------------------------------------

def test_a_photo_named_dot_dot_jpg_writes_only_into_findings(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "..jpg"), make_scene(96, 128, 5)[0])
    cv2.imwrite(str(photos / "plain.jpg"), make_scene(96, 128, 7)[0])  # both rusty scenes
    layout = RecordLayout(tmp_path / "rec")
    record_run(str(photos), layout.root, _config())
    names = {f["name"] for f in layout.read_findings()}
    assert names == {".", "plain"}
    top = sorted(p.name for p in layout.root.iterdir())
    assert top == ["findings", "frames.jsonl", "overlay.mp4", "run.json", "summary.json"], top
    assert (layout.findings_dir / "._raw.jpg").is_file()
    write_report(layout.root)
    assert cv2.imread(str(layout.findings_dir / "._overlay.jpg")).shape == (96, 128, 3)


# --- item 16: a failed run leaves the folder reusable -----------------------------------------

def test_a_run_that_fails_to_open_its_source_leaves_the_record_folder_reusable(tmp_path):
    layout = RecordLayout(tmp_path / "rec")
    with pytest.raises(SourceError):
        record_run(str(tmp_path / "missing.mp4"), layout.root, _config())
    assert layout.root.is_dir() and list(layout.root.iterdir()) == []
    summary = record_run(CLIP, layout.root, _config())  # the retry, same --record
    assert summary["complete"]


# --- item 23: an output that is also a record file --------------------------------------------

@pytest.mark.parametrize("option, path", [("--output", "overlay.mp4"), ("--output", "x.avi"),
                                          ("--log", "frames.jsonl"),
                                          ("--save-masks", "findings")])
def test_an_output_inside_the_record_is_refused(tmp_path, capsys, option, path):
    record = tmp_path / "rec"
    line = _one_line_exit_2(capsys, ["run", "--source", CLIP, "--record", str(record), option,
                                     str(record / path), "--quiet", "--refine", "none"])
    assert "lies inside the run record" in line and str(record / path) in line
    assert not record.exists() or list(record.iterdir()) == []

"""`rustseg report DIR`: the post-flight report of a run record, for the bridge owner.

Writes into the record (layout: edge/record/layout.py): report.html, its plots in report_files/,
findings.csv, findings.geojson when findings carry positions, and summary.json when the run
could not write its own (it died, or the summary still says "running"). Every number comes
from frames.jsonl and findings/findings.jsonl, so the report agrees with the log. The page
loads nothing from the network: its images are the record's own files, linked relatively.

A record is untrusted data:
- every file is checked against its schema as it is read (edge/record/schema.py);
- the page is a Jinja2 template that escapes every value (edge/record/templates/report.html);
- CSV cells cannot start a formula, plot labels are not mathtext (edge/untrusted.py);
- every file is written whole beside its target and renamed over it, so a link in the record is
  replaced, never written through, and a link leading out of the record is refused;
- positions that are not on Earth are left out of findings.geojson, each with a warning.
A run still recording into the folder (it holds the run lock) is reported on read-only: its
summary.json is left to it, and the page says the run is still going.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import DataError, MissingDependencyError
from edge.method.paths import PATH_MEANINGS
from edge.method.profiler import summarize
from edge.method.grades import grade_caveat
from edge.method.states import STATE_LABELS, STATE_NAMES
from edge.pages import render
from edge.record.lock import lock_holder
from edge.record.footprint import METRES_PER_DEGREE, footprint
from edge.outputs import FrameRecord
from edge.record.layout import RECORD_FORMAT, RecordLayout, flight_stats
from edge.record.positions import geojson_position
from edge.stop_reason import StopReason
from edge.untrusted import csv_cell, plot_label, printable
from edge.writable import write_atomic

_log = logging.getLogger(__name__)

_PATHS_EXPLAINED = "; ".join(f"{path}: {meaning}" for path, meaning in PATH_MEANINGS.items())

_CSV_COLUMNS = ("index", "name", "time_s", "score", "corroded_fraction", "path",
                "astm_d610", "iso_4628_3", "graded_over", "worst_state", "fair_fraction",
                "poor_fraction", "severe_fraction", "lat", "lon", "alt", "gimbal_pitch",
                "gimbal_yaw", "gimbal_roll", "raw", "overlay", "mask", "source_file")
_PLOT_DPI = 110


@dataclass(frozen=True)
class ReportResult:
    html: Path
    summary: dict
    findings: int
    positions: int
    wrote_summary: bool
    running_pid: int | None = None     # the run still recording into the record, if any
    dropped_positions: list[str] = field(default_factory=list)   # one line each


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("rustseg report needs matplotlib: pip install "
                                     "'rustseg-edge[report]' (from a checkout: pip install -e "
                                     "'.[report]')") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def write_report(record_dir: str | Path, top: int = 12) -> ReportResult:
    """Build the report of the record in `record_dir`; DataError when it is not a record."""
    layout = RecordLayout(Path(record_dir))
    if not layout.root.is_dir() or not layout.is_record():
        raise DataError(f"rustseg report {layout.root}: not a run record (no run.json); make "
                        "one with rustseg run --record DIR")
    plt = _pyplot()
    try:
        holder = lock_holder(layout.run_lock)  # a run still recording into the record
        return _write_report(layout, plt, top, None if holder is None else holder.get("pid") or 0)
    except OSError as exc:  # a full disk, a read-only record: name the record, not a plot file
        raise OSError(exc.errno, exc.strerror or str(exc), str(layout.root)) from None


def _write_report(layout: RecordLayout, plt, top: int, running_pid: int | None) -> ReportResult:
    run, frames, findings = layout.read_run(), layout.read_frames(), layout.read_findings()
    if running_pid is not None:  # read-only: the summary belongs to the run still going
        summary, wrote_summary = layout.read_summary() or {"ended": StopReason.RUNNING}, False
    else:
        summary, wrote_summary = _summary(layout, frames, findings)
    start = min((f.captured_at for f in frames), default=run.get("started_at", 0.0))
    _report_folder(layout)
    photos = run.get("source_kind") == "photos"
    plots = {"timeline": _plot_timeline(plt, frames, start, layout, photos)}
    located, dropped = _located(findings)
    if located:
        plots["positions"] = _plot_positions(plt, located, layout)
        _write_geojson(layout, located, run.get("config", {}).get("telemetry"))
    _write(layout, layout.findings_csv, _csv(findings, start))
    _write(layout, layout.report_html, _html(layout, run, summary, frames, findings, plots,
                                             start, top, running_pid))
    return ReportResult(layout.report_html, summary, len(findings), len(located), wrote_summary,
                        running_pid, dropped)


def _write(layout: RecordLayout, path: Path, data: str | bytes) -> None:
    """Replace the record's file `path` whole (a link there is replaced, not followed); a
    link leading out of the record is refused before anything is written."""
    write_atomic(layout.contained(path), data)


def _report_folder(layout: RecordLayout) -> None:
    """report_files/ as a real folder of the record: a link there that stays inside the
    record is replaced by a folder (its target is left alone), one leading out is refused."""
    folder = layout.contained(layout.report_files)
    if folder.is_symlink():
        folder.unlink()
    folder.mkdir(exist_ok=True)


def _located(findings: list[dict]) -> tuple[list[dict], list[str]]:
    """Findings whose position is a valid GeoJSON position (edge/record/positions.py), each
    with its position cleaned; the others are left out with one warning line each."""
    located, dropped = [], []
    for f in findings:
        if not f.get("position"):
            continue
        position, problem = geojson_position(f["position"])
        if problem:
            line = (f"finding {f['index']} ({printable(_file_name(f))}): position left out: "
                    f"{problem}")
            _log.warning(line)
            dropped.append(line)
        else:
            located.append({**f, "position": position})
    return located, dropped


def _summary(layout: RecordLayout, frames: list[FrameRecord],
             findings: list[dict]) -> tuple[dict, bool]:
    """The run's own summary.json, or one rebuilt from the log when the run left none (it
    died: no process holds the run lock, yet the summary still says "running")."""
    summary = layout.read_summary()
    if summary is not None and summary.get("ended") != StopReason.RUNNING:
        return summary, False
    rebuilt = {"format": RECORD_FORMAT, "ended": StopReason.CUT_SHORT, "complete": False,
               "every_output_kept_every_frame": False, "stopped_by": None, "error": None,
               "started_at": (summary or {}).get("started_at"),
               "ended_at": max((f.output_at for f in frames), default=None),
               "flight": flight_stats(frames), "findings": len(findings), "run": None,
               "written_by": "rustseg report"}
    _write(layout, layout.summary_json, json.dumps(rebuilt, indent=2) + "\n")
    return rebuilt, True


def stage_table(frames: list[FrameRecord]) -> dict[str, dict]:
    """Per-stage millisecond summaries from the log, stages in the order the loop runs them,
    plus latency (capture to output)."""
    samples: dict[str, list[float]] = {}
    for f in frames:
        for stage, ms in f.ms.items():
            samples.setdefault(stage, []).append(ms)
        samples.setdefault("latency", []).append((f.output_at - f.captured_at) * 1000.0)
    return {stage: summarize(values) for stage, values in samples.items()}


# --- files beside the report -----------------------------------------------------------------

def _save_plot(plt, figure, layout: RecordLayout, name: str) -> Path:
    """The figure as a PNG in report_files/, written like every other file of the report."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_PLOT_DPI)
    plt.close(figure)
    path = layout.report_files / name
    _write(layout, path, buffer.getvalue())
    return path


def _plot_timeline(plt, frames: list[FrameRecord], start: float, layout: RecordLayout,
                   photos: bool) -> Path:
    """Over time for video and cameras; over the photo sequence for photo folders (their
    read time says nothing about the flight)."""
    t = [f.index for f in frames] if photos else [f.captured_at - start for f in frames]
    figure, area_axis = plt.subplots(figsize=(9, 3.2))
    area_axis.plot(t, [100 * f.corroded_fraction for f in frames], color="#d9480f",
                   marker="o" if photos else None, markersize=3,
                   label="corroded area (% of frame)")
    area_axis.set_xlabel("photo (in name order)" if photos else "time since first frame (s)")
    area_axis.set_ylabel("corroded area (%)")
    score_axis = area_axis.twinx()
    score_axis.plot(t, [f.score for f in frames], color="#1864ab", alpha=0.7,
                    marker="o" if photos else None, markersize=3,
                    label="corrosion score")
    score_axis.set_ylim(0, 1.02)
    score_axis.set_ylabel("score (0..1)")
    figure.legend(loc="upper center", ncol=2, fontsize=8)
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    return _save_plot(plt, figure, layout, "timeline.png")


def _plot_positions(plt, located: list[dict], layout: RecordLayout) -> Path:
    """Findings on local east/north metres from the south-west corner (degrees of longitude
    shrink with latitude, so raw degrees would distort the layout and crowd the ticks)."""
    lat = np.array([f["position"]["lat"] for f in located])
    lon = np.array([f["position"]["lon"] for f in located])
    lat0, lon0 = float(lat.min()), float(lon.min())
    east_m = (lon - lon0) * METRES_PER_DEGREE * math.cos(math.radians(lat0))
    north_m = (lat - lat0) * METRES_PER_DEGREE
    figure, axis = plt.subplots(figsize=(6.5, 5))
    points = axis.scatter(east_m, north_m, c=[100 * f["corroded_fraction"] for f in located],
                          cmap="YlOrRd", edgecolors="black", s=45)
    for x, y, f in zip(east_m, north_m, located):
        axis.annotate(plot_label(_file_name(f)), (x, y), xytext=(4, 3),
                      textcoords="offset points", fontsize=7)
    figure.colorbar(points, ax=axis, label="corroded area (%)")
    axis.set_aspect("equal", adjustable="datalim")
    axis.set_xlabel("east (m)")
    axis.set_ylabel("north (m)")
    axis.set_title(f"findings by position from {lat0:.6f}, {lon0:.6f} (no map: offline)",
                   fontsize=9)
    figure.tight_layout()
    return _save_plot(plt, figure, layout, "positions.png")


def _write_geojson(layout: RecordLayout, located: list[dict], camera: dict | None) -> None:
    """RFC 7946, strict JSON (no NaN): a Point per finding at the drone's position
    [lon, lat(, alt)]; beside it, where the camera looked down on flat ground, the frame's
    footprint Polygon (edge/record/footprint.py says when)."""
    features = []
    for f in located:
        p = f["position"]
        coordinates = [p["lon"], p["lat"]] + ([p["alt"]] if p.get("alt") is not None else [])
        ring, note = footprint(p, camera["camera_hfov_deg"], camera["camera_vfov_deg"],
                               camera["footprint_min_pitch_deg"]) if camera else \
            (None, "not estimated: the record's config has no camera field of view")
        features.append({"type": "Feature",
                         "geometry": {"type": "Point", "coordinates": coordinates},
                         "properties": {"corroded_fraction": f["corroded_fraction"],
                                        **condition_columns(f),
                                        "score": f["score"], "file": printable(_file_name(f)),
                                        "mask": printable(f["mask"]), "frame": f["index"],
                                        "gimbal": p.get("gimbal"),
                                        "position_of": "the drone's camera, not the finding",
                                        "position_source": p.get("source"),
                                        "footprint": "estimated" if ring else note}})
        if ring:
            features.append({"type": "Feature",
                             "geometry": {"type": "Polygon", "coordinates": [ring]},
                             "properties": {"kind": "footprint", "frame": f["index"],
                                            "file": printable(_file_name(f)),
                                            "assumptions": note,
                                            "camera_hfov_deg": camera["camera_hfov_deg"],
                                            "camera_vfov_deg": camera["camera_vfov_deg"],
                                            "camera_pitch_deg": p["gimbal"]["pitch"],
                                            "height_above_takeoff_m": p["rel_alt"]}})
    text = json.dumps({"type": "FeatureCollection", "features": features}, indent=1,
                      allow_nan=False)
    _write(layout, layout.findings_geojson, text + "\n")


def _csv(findings: list[dict], start: float) -> str:
    """findings.csv: text cells made safe for spreadsheets (csv_cell), numbers as numbers."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, _CSV_COLUMNS)
    writer.writeheader()
    for f in findings:
        p = f.get("position") or {}
        gimbal = p.get("gimbal") or {}
        row = {"index": f["index"], "name": f["name"],
               "time_s": round(f["captured_at"] - start, 3), "score": f["score"],
               "corroded_fraction": f["corroded_fraction"], "path": f["path"],
               **condition_columns(f),
               "lat": p.get("lat"), "lon": p.get("lon"), "alt": p.get("alt"),
               "gimbal_pitch": gimbal.get("pitch"), "gimbal_yaw": gimbal.get("yaw"),
               "gimbal_roll": gimbal.get("roll"), "raw": f["raw"], "overlay": f["overlay"],
               "mask": f["mask"], "source_file": f.get("source_file")}
        writer.writerow({key: csv_cell(value) for key, value in row.items()})
    return buffer.getvalue()


def condition_columns(finding: dict) -> dict:
    """A finding's rust grades (of the rusted share of the frame, an indication, or of the
    surface the config outlines: grades.over) and, for v3 models, its worst state and the
    share of the frame per state."""
    grade = finding.get("grades") if isinstance(finding.get("grades"), dict) else {}
    area = finding.get("area_by_state") if isinstance(finding.get("area_by_state"), dict) else {}
    return {"astm_d610": grade.get("astm_d610"), "iso_4628_3": grade.get("iso_4628_3"),
            # records from before grades.surface were all graded over the frame
            "graded_over": grade.get("over", "frame") if grade else None, "worst_state": finding.get("worst_state"),
            **{f"{name}_fraction": area.get(name) for name in STATE_NAMES}}


def grades_over(frames: list[FrameRecord]) -> str:
    """'surface' when every graded frame of the record was graded over the configured surface,
    else 'frame' (the caveat that covers the weakest grade in the record)."""
    overs = {f.grades.get("over", "frame") for f in frames if isinstance(f.grades, dict)}
    return "surface" if overs == {"surface"} else "frame"


def _condition_text(finding: dict) -> str:
    """One line for a finding card: its worst state and rust grades."""
    columns = condition_columns(finding)
    worst = columns["worst_state"]
    grade = (f"ASTM D610 {columns['astm_d610']}, ISO 4628-3 {columns['iso_4628_3']}"
             if columns["astm_d610"] is not None else "")
    return "; ".join(part for part in (
        f"worst state {STATE_LABELS.get(worst, worst)}" if worst else "", grade) if part)


def flight_states(frames: list[FrameRecord]) -> list[dict]:
    """Area by condition state over the whole flight: per state, the mean share of a frame and
    the frames showing it; empty for models without states."""
    areas = [f.area_by_state for f in frames]
    # Only numbers count: the record is untrusted, and a v2 record has no states at all.
    areas = [{name: a[name] for name in STATE_NAMES if isinstance(a.get(name), (int, float))}
             for a in areas if isinstance(a, dict)]
    if not areas:
        return []
    return [{"state": STATE_LABELS[name],
             "mean_percent": round(100 * sum(a.get(name, 0) for a in areas) / len(areas), 3),
             "frames": sum(1 for a in areas if a.get(name, 0) > 0)} for name in STATE_NAMES]


def _file_name(finding: dict) -> str:
    source = finding.get("source_file")
    return Path(source).name if source else finding["name"]


# --- the page ----------------------------------------------------------------------------

def _html(layout: RecordLayout, run: dict, summary: dict, frames: list[FrameRecord],
          findings: list[dict], plots: dict[str, Path], start: float, top: int,
          running_pid: int | None) -> str:
    """report.html from its template; every value is handed over as data and escaped there."""
    flight = flight_stats(frames)  # from the log itself, whatever summary.json says
    ended = str(summary.get("ended", "?"))
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.get("started_at", start)))
    model = run.get("model") or {}
    rows = [("source", run.get("source")), ("started", when),
            ("ended", "still running" if running_pid is not None else
             ended + ("" if summary.get("complete") else "  (record not complete)")),
            ("processing time" if run.get("source_kind") == "photos" else "duration",
             f"{flight['duration_s']:.1f} s"), ("frames", flight["frames"]),
            ("frames with corrosion", f"{flight['frames_with_corrosion']} "
                                      f"({100 * flight['share_with_corrosion']:.1f} %)"),
            ("max corroded area", f"{100 * flight['max_corroded_fraction']:.2f} % of frame"),
            ("mean corroded area", f"{100 * flight['mean_corroded_fraction']:.2f} % of frame"),
            ("findings", len(findings)),
            ("model", f"{model.get('path')} (sha256 {str(model.get('model_sha256'))[:12]}...)")]
    counts = summary.get("frames") or {}
    if counts:
        expected = counts.get("expected")
        rows.insert(5, ("frames expected / read / skipped",
                        f"{'-' if expected is None else expected} / {counts['read']} / "
                        f"{counts['skipped']}"))
    best = sorted(findings, key=lambda f: f["corroded_fraction"], reverse=True)[:top]
    cards = [{"raw": f["raw"], "overlay": f["overlay"], "index": f["index"],
              "file": _file_name(f), "t": f"{f['captured_at'] - start:.1f}",
              "area": f"{100 * f['corroded_fraction']:.1f}", "score": f"{f['score']:.2f}",
              "where": _where(geojson_position(f["position"])[0] if f.get("position") else None),
              "condition": _condition_text(f)}
             for f in best]
    paths = [(p, n, f"{100 * n / max(1, flight['frames']):.1f}")
             for p, n in sorted(flight["paths"].items())]
    stages = [(name, f"{s['mean']:.2f}", f"{s['p50']:.2f}", f"{s['p95']:.2f}", s["count"])
              for name, s in stage_table(frames).items() if s["count"]]
    return render("edge.record", "report.html", rows=rows, running_pid=running_pid,
                  skipped=counts.get("skipped", 0), skip_reasons=counts.get("skip_reasons", []),
                  timeline=layout.relative(plots["timeline"]),
                  positions=layout.relative(plots["positions"]) if "positions" in plots else None,
                  finding_rule=json.dumps(run.get("finding_rule")), cards=cards,
                  paths_explained=_PATHS_EXPLAINED, paths=paths, stages=stages,
                  record=str(layout.root), states=flight_states(frames),
                  grade_caveat=grade_caveat(grades_over(frames)))


def _where(position: dict | None) -> str:
    if not position:
        return ""
    text = f"lat {position['lat']:.6f}, lon {position['lon']:.6f}"
    return text + (f", alt {position['alt']:.1f} m" if position.get("alt") is not None else "")

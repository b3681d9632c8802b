"""`rustseg report DIR`: the post-flight report of a run record, for the bridge owner.

Writes into the record (layout: edge/record/layout.py): report.html, its plots in report_files/,
findings.csv, findings.geojson when findings carry positions, and summary.json when the run
could not write its own (it died, or the summary still says "running"). Every number comes
from frames.jsonl and findings/findings.jsonl, so the report agrees with the log. The page
loads nothing from the network: its images are the record's own files, linked relatively.
"""

from __future__ import annotations

import csv
import html
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import DataError, MissingDependencyError
from edge.method.paths import PATH_MEANINGS
from edge.method.profiler import summarize
from edge.record.footprint import METRES_PER_DEGREE, footprint
from edge.record.layout import ENDED_RUNNING, RECORD_FORMAT, RecordLayout, flight_stats

_PATHS_EXPLAINED = "; ".join(f"{path}: {meaning}" for path, meaning in PATH_MEANINGS.items())

ENDED_CUT_SHORT = "cut short (no final summary: the process died or the disk was full)"
_CSV_COLUMNS = ("index", "name", "time_s", "score", "corroded_fraction", "path", "lat", "lon",
                "alt", "gimbal_pitch", "gimbal_yaw", "gimbal_roll", "raw", "overlay", "mask",
                "source_file")
_PLOT_DPI = 110


@dataclass(frozen=True)
class ReportResult:
    html: Path
    summary: dict
    findings: int
    positions: int
    wrote_summary: bool


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
        return _write_report(layout, plt, top)
    except OSError as exc:  # a full disk, a read-only record: name the record, not a plot file
        raise OSError(exc.errno, exc.strerror or str(exc), str(layout.root)) from None


def _write_report(layout: RecordLayout, plt, top: int) -> ReportResult:
    run, frames, findings = layout.read_run(), layout.read_frames(), layout.read_findings()
    summary, wrote_summary = _summary(layout, frames, findings)
    start = min((f["captured_at"] for f in frames), default=run.get("started_at", 0.0))
    layout.report_files.mkdir(exist_ok=True)
    photos = run.get("source_kind") == "photos"
    plots = {"timeline": _plot_timeline(plt, frames, start, layout.report_files, photos)}
    located = [f for f in findings if f.get("position")]
    if located:
        plots["positions"] = _plot_positions(plt, located, layout.report_files)
        _write_geojson(layout, located, run.get("config", {}).get("telemetry"))
    _write_csv(layout.findings_csv, findings, start)
    layout.report_html.write_text(_html(layout, run, summary, frames, findings, plots, start,
                                        top), encoding="utf-8")
    return ReportResult(layout.report_html, summary, len(findings), len(located), wrote_summary)


def _summary(layout: RecordLayout, frames: list[dict], findings: list[dict]) -> tuple[dict, bool]:
    """The run's own summary.json, or one rebuilt from the log when the run left none."""
    summary = layout.read_summary()
    if summary is not None and summary.get("ended") != ENDED_RUNNING:
        return summary, False
    rebuilt = {"format": RECORD_FORMAT, "ended": ENDED_CUT_SHORT, "complete": False,
               "every_output_kept_every_frame": False, "stopped_by": None, "error": None,
               "started_at": (summary or {}).get("started_at"),
               "ended_at": max((f["output_at"] for f in frames), default=None),
               "flight": flight_stats(frames), "findings": len(findings), "run": None,
               "written_by": "rustseg report"}
    layout.summary_json.write_text(json.dumps(rebuilt, indent=2) + "\n")
    return rebuilt, True


def stage_table(frames: list[dict]) -> dict[str, dict]:
    """Per-stage millisecond summaries from the log, stages in the order the loop runs them,
    plus latency (capture to output)."""
    samples: dict[str, list[float]] = {}
    for f in frames:
        for stage, ms in f.get("ms", {}).items():
            samples.setdefault(stage, []).append(ms)
        samples.setdefault("latency", []).append((f["output_at"] - f["captured_at"]) * 1000.0)
    return {stage: summarize(values) for stage, values in samples.items()}


# --- files beside the report -----------------------------------------------------------------

def _plot_timeline(plt, frames: list[dict], start: float, folder: Path, photos: bool) -> Path:
    """Over time for video and cameras; over the photo sequence for photo folders (their
    read time says nothing about the flight)."""
    t = [f["index"] for f in frames] if photos else [f["captured_at"] - start for f in frames]
    figure, area_axis = plt.subplots(figsize=(9, 3.2))
    area_axis.plot(t, [100 * f["corroded_fraction"] for f in frames], color="#d9480f",
                   marker="o" if photos else None, markersize=3,
                   label="corroded area (% of frame)")
    area_axis.set_xlabel("photo (in name order)" if photos else "time since first frame (s)")
    area_axis.set_ylabel("corroded area (%)")
    score_axis = area_axis.twinx()
    score_axis.plot(t, [f["score"] for f in frames], color="#1864ab", alpha=0.7,
                    marker="o" if photos else None, markersize=3,
                    label="corrosion score")
    score_axis.set_ylim(0, 1.02)
    score_axis.set_ylabel("score (0..1)")
    figure.legend(loc="upper center", ncol=2, fontsize=8)
    figure.tight_layout(rect=(0, 0, 1, 0.9))
    path = folder / "timeline.png"
    figure.savefig(path, dpi=_PLOT_DPI)
    plt.close(figure)
    return path


def _plot_positions(plt, located: list[dict], folder: Path) -> Path:
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
        axis.annotate(_file_name(f), (x, y), xytext=(4, 3), textcoords="offset points",
                      fontsize=7)
    figure.colorbar(points, ax=axis, label="corroded area (%)")
    axis.set_aspect("equal", adjustable="datalim")
    axis.set_xlabel("east (m)")
    axis.set_ylabel("north (m)")
    axis.set_title(f"findings by position from {lat0:.6f}, {lon0:.6f} (no map: offline)",
                   fontsize=9)
    figure.tight_layout()
    path = folder / "positions.png"
    figure.savefig(path, dpi=_PLOT_DPI)
    plt.close(figure)
    return path


def _write_geojson(layout: RecordLayout, located: list[dict], camera: dict | None) -> None:
    """A Point per finding at the drone's position; beside it, where the camera looked down on
    flat ground, the frame's footprint Polygon (edge/record/footprint.py says when)."""
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
                                        "score": f["score"], "file": _file_name(f),
                                        "mask": f["mask"], "frame": f["index"],
                                        "gimbal": p.get("gimbal"),
                                        "position_of": "the drone's camera, not the finding",
                                        "position_source": p.get("source"),
                                        "footprint": "estimated" if ring else note}})
        if ring:
            features.append({"type": "Feature",
                             "geometry": {"type": "Polygon", "coordinates": [ring]},
                             "properties": {"kind": "footprint", "frame": f["index"],
                                            "file": _file_name(f), "assumptions": note,
                                            "camera_hfov_deg": camera["camera_hfov_deg"],
                                            "camera_vfov_deg": camera["camera_vfov_deg"],
                                            "camera_pitch_deg": p["gimbal"]["pitch"],
                                            "height_above_takeoff_m": p["rel_alt"]}})
    layout.findings_geojson.write_text(json.dumps({"type": "FeatureCollection",
                                                   "features": features}, indent=1) + "\n")


def _write_csv(path: Path, findings: list[dict], start: float) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, _CSV_COLUMNS)
        writer.writeheader()
        for f in findings:
            p = f.get("position") or {}
            gimbal = p.get("gimbal") or {}
            writer.writerow({"index": f["index"], "name": f["name"],
                             "time_s": round(f["captured_at"] - start, 3), "score": f["score"],
                             "corroded_fraction": f["corroded_fraction"], "path": f["path"],
                             "lat": p.get("lat"), "lon": p.get("lon"), "alt": p.get("alt"),
                             "gimbal_pitch": gimbal.get("pitch"), "gimbal_yaw": gimbal.get("yaw"),
                             "gimbal_roll": gimbal.get("roll"), "raw": f["raw"],
                             "overlay": f["overlay"], "mask": f["mask"],
                             "source_file": f.get("source_file")})


def _file_name(finding: dict) -> str:
    source = finding.get("source_file")
    return Path(source).name if source else finding["name"]


# --- the page ----------------------------------------------------------------------------

def _html(layout: RecordLayout, run: dict, summary: dict, frames: list[dict],
          findings: list[dict], plots: dict[str, Path], start: float, top: int) -> str:
    e = html.escape
    flight = flight_stats(frames)  # from the log itself, whatever summary.json says
    ended = summary.get("ended", "?")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.get("started_at", start)))
    rows = [("source", run.get("source")), ("started", when),
            ("ended", ended + ("" if summary.get("complete") else "  (record not complete)")),
            ("processing time" if run.get("source_kind") == "photos" else "duration",
             f"{flight['duration_s']:.1f} s"), ("frames", flight["frames"]),
            ("frames with corrosion", f"{flight['frames_with_corrosion']} "
                                      f"({100 * flight['share_with_corrosion']:.1f} %)"),
            ("max corroded area", f"{100 * flight['max_corroded_fraction']:.2f} % of frame"),
            ("mean corroded area", f"{100 * flight['mean_corroded_fraction']:.2f} % of frame"),
            ("findings", len(findings)),
            ("model", f"{run.get('model', {}).get('path')} (sha256 "
                      f"{str(run.get('model', {}).get('model_sha256'))[:12]}...)")]
    summary_rows = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
    paths = "".join(f"<tr><td>{e(p)}</td><td>{n}</td><td>{100 * n / max(1, flight['frames']):.1f}"
                    f" %</td></tr>" for p, n in sorted(flight["paths"].items()))
    stages = "".join(
        f"<tr><td>{e(name)}</td><td>{s['mean']:.2f}</td><td>{s['p50']:.2f}</td>"
        f"<td>{s['p95']:.2f}</td><td>{s['count']}</td></tr>"
        for name, s in stage_table(frames).items() if s["count"])
    best = sorted(findings, key=lambda f: f["corroded_fraction"], reverse=True)[:top]
    cards = "".join(_finding_card(f, start) for f in best)
    positions = (f'<h2>Positions</h2><img src="{e(layout.relative(plots["positions"]))}" '
                 'alt="findings by position, coloured by corroded area">'
                 '<p>Each point is where the drone was, not the corrosion itself. Also in '
                 'findings.geojson (opens in QGIS, Google Earth, ArcGIS), with a ground '
                 'footprint where the camera looked steeply down.</p>'
                 if "positions" in plots else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>RustSEG inspection report</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:.5em 0}} th,td{{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}}
img{{max-width:100%}} .cards{{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:1em}}
.card{{border:1px solid #ccc;padding:.5em}} .pair{{display:grid;grid-template-columns:1fr 1fr;gap:.3em}}
</style></head><body>
<h1>Corrosion inspection report</h1>
<p>Corroded area is the share of the frame marked as corrosion (orange-red in the overlays);
the score is the model's probability that the frame shows corrosion.</p>
<h2>Flight summary</h2><table>{summary_rows}</table>
<h2>Corroded area and score over time</h2>
<img src="{e(layout.relative(plots["timeline"]))}" alt="corroded area and score over time">
{positions}
<h2>Top findings</h2>
<p>Largest corroded area first; rule: {e(json.dumps(run.get("finding_rule")))}
(min_area: share of the frame; gap: frames between findings). All findings: findings.csv.</p>
<div class="cards">{cards or "<p>No finding: no frame reached the floor.</p>"}</div>
<h2>Refine paths used</h2>
<p>{e(_PATHS_EXPLAINED)}.</p>
<table><tr><th>path</th><th>frames</th><th>share</th></tr>{paths}</table>
<h2>Timing (ms per frame)</h2>
<table><tr><th>stage</th><th>mean</th><th>p50</th><th>p95</th><th>count</th></tr>{stages}</table>
<p>Record: {e(str(layout.root))}</p>
</body></html>
"""


def _finding_card(f: dict, start: float) -> str:
    e = html.escape
    p = f.get("position")
    where = (f"<br>lat {p['lat']:.6f}, lon {p['lon']:.6f}" +
             (f", alt {p['alt']:.1f} m" if p.get("alt") is not None else "")) if p else ""
    return (f'<div class="card"><div class="pair"><img src="{e(f["raw"])}" alt="raw frame">'
            f'<img src="{e(f["overlay"])}" alt="overlay"></div>'
            f'frame {f["index"]} ({e(_file_name(f))}), t = {f["captured_at"] - start:.1f} s<br>'
            f'corroded area {100 * f["corroded_fraction"]:.1f} %, score {f["score"]:.2f}'
            f'{where}</div>')

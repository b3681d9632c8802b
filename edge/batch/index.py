"""`DIR/index.csv` and `DIR/index.html`: one row per input, rewritten after each input ends.

Columns: input, status, frames, share of frames with corrosion, maximum corroded area (share of
the frame), time taken, the error of a failed input and a link to its report. Both files are
written atomically (temp file + rename), so a reader never sees half a table.
"""

from __future__ import annotations

import csv
import html
import io
import os
from pathlib import Path

from edge.record.layout import RecordLayout
from edge.writable import write_atomic

COLUMNS = ("input", "status", "frames", "corroded_share", "max_corroded_area", "wall_s",
           "error", "report")


def index_rows(outcomes: list[dict], out_dir: Path) -> list[dict]:
    rows = []
    for o in outcomes:
        report = RecordLayout(Path(o["record"])).report_html
        rows.append({"input": o["uri"], "status": o["status"], "frames": o.get("frames", 0),
                     "corroded_share": o.get("corroded_share", 0.0),
                     "max_corroded_area": o.get("max_corroded_area", 0.0),
                     "wall_s": "" if o.get("wall_s") is None else o["wall_s"],
                     "error": o.get("error") or "",
                     "report": os.path.relpath(report, out_dir) if report.exists() else ""})
    return rows


def write_index(rows: list[dict], out_dir: Path) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out_dir / "index.csv", buffer.getvalue())
    write_atomic(out_dir / "index.html", _html(rows))


def _html(rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = []
    for row in rows:
        cells = []
        for column in COLUMNS:
            value = row[column]
            if column == "report" and value:
                cells.append(f'<td><a href="{html.escape(value)}">report</a></td>')
            elif column in ("corroded_share", "max_corroded_area"):
                cells.append(f"<td>{100 * float(value):.1f} %</td>")
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        body.append(f'<tr class="{html.escape(row["status"])}">{"".join(cells)}</tr>')
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>RustSEG batch</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}"
            ".failed,.lost,.interrupted{background:#fdd}</style></head><body>"
            f"<h1>RustSEG batch: {len(rows)} inputs</h1><p>{html.escape(summary)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            "</body></html>\n")

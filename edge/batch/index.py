"""`DIR/index.csv` and `DIR/index.html`: one row per input, rewritten after each input ends.

Columns: input, status, frames, frames skipped, share of frames with corrosion, maximum
corroded area (share of the frame), time taken, the error of a failed input (or why frames were
skipped) and a link to its report. Both files are written atomically (temp file + rename), so a
reader never sees half a table. Input names are untrusted text: the page is a template that
escapes them, the CSV's cells cannot start a formula, and both take any file name
(edge/untrusted.py).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from edge.pages import render
from edge.record.layout import RecordLayout
from edge.untrusted import csv_cell, printable
from edge.writable import write_atomic

COLUMNS = ("input", "status", "frames", "skipped", "corroded_share", "max_corroded_area",
           "wall_s", "error", "report")
_PERCENT_COLUMNS = ("corroded_share", "max_corroded_area")


def index_rows(outcomes: list[dict], out_dir: Path) -> list[dict]:
    rows = []
    for o in outcomes:
        report = RecordLayout(Path(o["record"])).report_html
        rows.append({"input": o["uri"], "status": o["status"], "frames": o.get("frames", 0),
                     "skipped": o.get("skipped", 0),
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
    writer.writerows({key: csv_cell(value) for key, value in row.items()} for row in rows)
    write_atomic(out_dir / "index.csv", buffer.getvalue())
    write_atomic(out_dir / "index.html", _html(rows))


def _html(rows: list[dict]) -> str:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    return render("edge.batch", "index.html", rows=rows, columns=COLUMNS,
                  percent_columns=_PERCENT_COLUMNS, summary=printable(summary))

"""Choose the state tagging rule (tile sizes, share) on the tune split of vt_corrosion.

Each candidate rule trains the state head on the fit part of the tune photos from tags made by
that rule, sets its thresholds on the check part, and is measured there (per-state IoU inside
the model's own binary mask, worst state per photo). The holdout split is never read.

    python benchmarks/state_rule.py [--vt ../shared/data/vt_corrosion/train]
Writes benchmarks/results/state_rule.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from converter.export import load_keras_model
from converter.model import at_input_size
from converter.states import StateTraining, fit_and_measure, prepare, split_tune
from edge.data.datasets import find_masked_images

RESULTS = Path(__file__).parent / "results"
CANDIDATES = [  # (tile sides in stride-8 cells at 320 px, min share)
    ((40,), 0.05),
    ((40, 10), 0.05),
    ((40, 10, 5), 0.05),
    ((40, 10, 5), 0.01),
    ((40, 10, 5), 0.15),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vt", default="../shared/data/vt_corrosion/train")
    parser.add_argument("--model", default="models/rustseg_default.keras")
    parser.add_argument("--epochs", type=int, default=StateTraining.epochs)
    args = parser.parse_args()
    base = StateTraining(epochs=args.epochs)
    side = 320
    model = at_input_size(load_keras_model(args.model), side)
    fit_pairs, check_pairs = split_tune(find_masked_images(args.vt, "tune"), base.check_fraction)
    fit = prepare(fit_pairs, model, side, base.crops_per_photo)
    check = prepare(check_pairs, model, side, 0)
    rows = []
    for cells, share in CANDIDATES:
        settings = replace(base, tile_cells=cells, min_share=share)
        started = time.perf_counter()
        with open("build/state_rule.log", "a") as log:
            _, measured = fit_and_measure(model, fit, check, settings, side, log)
        rows.append({"tile_px_at_320": [c * 8 for c in cells], "min_share": share, **measured,
                     "seconds": round(time.perf_counter() - started)})
        print(json.dumps(rows[-1]), flush=True)
        write_results(rows, len(fit_pairs), len(check_pairs), base)  # each row as it comes


def write_results(rows: list[dict], n_fit: int, n_check: int, base: StateTraining) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "state_rule.json").write_text(json.dumps(
        {"fit_photos": n_fit, "check_photos": n_check, "epochs": base.epochs, "rows": rows},
        indent=2) + "\n")
    lines = ["# State tagging rule, chosen on the tune split (fit / check parts)", "",
             f"{n_fit} fit photos (+{base.crops_per_photo} half-size crops each, and mirrors), "
             f"{n_check} check photos; the holdout split is never read. IoU per state inside the "
             "model's own binary mask (seg >= 0.5, one invoke); thresholds set on the check part "
             "for each rule. The worst state per photo follows each row's own share, so that "
             "column compares rules only loosely. Command: `python benchmarks/state_rule.py`.",
             "", "| tiles (px at 320) | share | IoU Fair | Poor | Severe | mean | worst state "
             "bal. acc. | within one | s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {', '.join(map(str, r['tile_px_at_320']))} | {r['min_share']} | "
                     + " | ".join(f"{v:.3f}" for v in r["state_iou"])
                     + f" | {r['mean_state_iou']:.3f} | {r['worst_state_balanced_accuracy']:.3f} "
                     f"| {r['worst_state_within_one']:.3f} | {r['seconds']} |")
    (RESULTS / "state_rule.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

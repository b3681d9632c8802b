"""What checking a record's files by schema costs: reading frames.jsonl with and without it.

A frames.jsonl of real lines (one recorded run's first frame, repeated) is read three ways,
timed in turns (interleaved medians, so the ratios are same-run): json only; json and the
schema check that `rustseg report` and `rustseg batch` use (edge/record/schema.py,
fastjsonschema); json and the same schema under `jsonschema`, the alternative not taken.

    PYTHONPATH=$PWD nice -n 5 .venv/bin/python benchmarks/record_schema.py [--lines N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import interleaved_median_ms, save  # noqa: E402

from edge.config import load_config  # noqa: E402
from edge.live.app import record_run  # noqa: E402
from edge.record import schema  # noqa: E402
from edge.record.layout import RecordLayout, _read_jsonl  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    import jsonschema

    with tempfile.TemporaryDirectory() as folder:
        record = RecordLayout(Path(folder) / "rec")
        record_run("synthetic://?width=160&height=120&frames=2&seed=3", record.root,
                   load_config(overrides={"refine.mode": "none"}))
        line = record.frames_log.read_text().splitlines()[0] + "\n"
        log = Path(folder) / "frames.jsonl"
        log.write_text(line * args.lines)
        slow = jsonschema.Draft7Validator(schema.FRAME)

        def json_only():
            with open(log) as file:
                return [json.loads(text) for text in file]

        def json_and_jsonschema():
            values = json_only()
            assert all(slow.is_valid(v) for v in values)

        timings = interleaved_median_ms({"json only": json_only,
                                         "fastjsonschema": lambda: _read_jsonl(log, schema.FRAME),
                                         "jsonschema": json_and_jsonschema},
                                        repeats=args.repeats, warmup=1)
    base = timings["json only"]
    for name, ms in timings.items():
        print(f"{name:15s} {ms:9.1f} ms for {args.lines} lines  ({ms / base:.2f}x json only)")
    save("record_schema", {"lines": args.lines, "median_ms": timings,
                           "ratio_to_json_only": {k: v / base for k, v in timings.items()}})


if __name__ == "__main__":
    main()

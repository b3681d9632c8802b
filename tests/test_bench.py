"""`rustseg bench`: report schema, percentile maths, and a short real run."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from edge.measure.bench import BENCH_STAGES
from edge.method.profiler import StageTimes, summarize

STAT_KEYS = {"count", "mean", "std", "min", "p50", "p90", "p95", "p99", "max"}


def test_percentiles_on_known_inputs():
    s = summarize(range(1, 101))  # 1..100 ms
    assert s["count"] == 100 and s["min"] == 1 and s["max"] == 100
    assert s["mean"] == pytest.approx(50.5)
    assert s["p50"] == pytest.approx(50.5)      # linear interpolation between ranks
    assert s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01)
    assert s["std"] == pytest.approx(np.std(np.arange(1, 101)))
    assert summarize([7.0])["p95"] == 7.0
    assert summarize([])["count"] == 0 and summarize([])["mean"] is None


def test_stage_times_accumulate_per_stage():
    times = StageTimes()
    with times.stage("a"):
        pass
    with times.stage("a"):
        pass
    assert list(times.ms) == ["a"] and times.ms["a"] >= 0 and times.total() == times.ms["a"]


@pytest.mark.parametrize("refine", ["light", "none"])
def test_bench_run_reports_every_stage_with_consistent_counts(tmp_path, refine):
    out_json, out_csv = tmp_path / "b.json", tmp_path / "b.csv"
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "bench", "--refine", refine, "--frames", "12",
         "--warmup", "2", "--source", "synthetic://?width=160&height=120&frames=0",
         "--json", str(out_json), "--csv", str(out_csv)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(out_json.read_text())
    for key in ("init_ms", "first_frame_ms", "peak_rss_mb", "fps", "cpu", "threads", "runtime",
                "stages", "frames", "warmup"):
        assert key in report
    assert set(report["stages"]) == set(BENCH_STAGES)
    for name, stats in report["stages"].items():
        assert set(stats) == STAT_KEYS, name
    stages = report["stages"]
    for name in ("decode", "preprocess", "invoke", "cam_upsample", "overlay", "total"):
        assert stages[name]["count"] == 12
    refined = sum(n for path, n in report["paths_used"].items() if path != "skipped")
    assert stages["refine"]["count"] == refined
    assert stages["total"]["mean"] >= stages["invoke"]["mean"]
    assert report["peak_rss_mb"] > 10 and report["fps"] > 0
    rows = list(csv.reader(out_csv.open()))
    assert rows[0][0] == "stage" and len(rows) == 1 + len(BENCH_STAGES)
    assert "total" in result.stdout and "p99" in result.stdout


def test_bench_rejects_conflicting_inputs():
    result = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "--source", "x",
                             "--data", "y"], capture_output=True, text=True)
    assert result.returncode == 2 and "not both" in result.stderr


def test_bench_restarts_a_finite_source_instead_of_failing(tmp_path):
    out_json = tmp_path / "b.json"
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "bench", "--refine", "none", "--frames", "9",
         "--warmup", "2", "--source", "synthetic://?width=96&height=72&frames=4",
         "--json", str(out_json)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(out_json.read_text())
    assert report["stages"]["total"]["count"] == 9 and report["source_loops"] == 2
    assert "restarted 2 time(s)" in result.stdout

"""`rustseg batch`: records and index of a small synthetic archive, resume rule, Ctrl-C, Ray.

The archive is made on the fly (moving-camera clips and stills from edge/data/synthetic.py) and run
with the shipped model, so every figure checked here is computed by the real pipeline.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.batch import BatchRequest, run_batch
from edge.batch import engines
from edge.batch.inputs import expand_inputs
from edge.batch.runner import RECORDS_DIR, WorkerPlan, plan_workers
from edge.cli import main
from edge.config import load_config
from edge.data.synthetic import make_scene, write_clip_video
from edge.errors import ConfigError, DataError
from edge.record.layout import RecordLayout

_W, _H = 160, 120


@pytest.fixture
def archive(tmp_path) -> dict[str, Path]:
    root = tmp_path / "archive"
    paths = {"flight_a": write_clip_video(root / "flight_a.avi", _W, _H, 8, seed=1),
             "flight_b": write_clip_video(root / "flight_b.avi", _W, _H, 6, seed=2)}
    stills = root / "stills"
    stills.mkdir()
    for i in range(3):
        cv2.imwrite(str(stills / f"p{i}.png"), make_scene(_H, _W, seed=10 + i)[0])
    paths["stills"] = stills
    corrupt = root / "corrupt.avi"
    corrupt.write_bytes(b"\x00garbage, not a video" * 64)
    paths["corrupt"] = corrupt
    return paths


def _batch(inputs, out, **kw):
    """A batch on the light path: `auto` picks its path by measured time, so the masks of two
    runs (local vs Ray, first run vs resume) would depend on how loaded the machine is."""
    request = BatchRequest(tuple(str(p) for p in inputs), str(out), show_progress=False, **kw)
    return run_batch(load_config(overrides={"refine.mode": "light"}), request)


def _by_uri(result) -> dict[str, dict]:
    return {Path(o["uri"]).name: o for o in result.outcomes}


def _record_digest(record: Path) -> tuple[int, list, str]:
    """(frames logged, per-frame corroded area, sha256 over every finding's mask pixels)."""
    layout = RecordLayout(record)
    frames = layout.read_frames()
    digest = hashlib.sha256()
    for mask in sorted(layout.findings_dir.glob("*_mask.png")):
        digest.update(mask.name.encode())
        digest.update(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).tobytes())
    return len(frames), [f.corroded_fraction for f in frames], digest.hexdigest()


def test_batch_writes_records_and_index_and_records_the_corrupt_input(archive, tmp_path,
                                                                     capsys):
    out = tmp_path / "out"
    result = _batch(archive.values(), out, workers=2)
    got = _by_uri(result)
    assert {n: o["status"] for n, o in got.items()} == {
        "flight_a.avi": "done", "flight_b.avi": "done", "stills": "done", "corrupt.avi": "failed"}
    assert "corrupt.avi" in got["corrupt.avi"]["error"] and "\n" not in got["corrupt.avi"]["error"]
    assert not result.all_done

    for name, frames in (("flight_a.avi", 8), ("flight_b.avi", 6), ("stills", 3)):
        layout = RecordLayout(Path(got[name]["record"]))
        assert layout.root.parent == out / RECORDS_DIR and layout.is_complete()
        assert layout.report_html.is_file() and layout.overlay_video.is_file()
        # The index figures agree with the record's per-frame log, recomputed here.
        lines = layout.frames_log.read_text().splitlines()
        fractions = [json.loads(line)["corroded_fraction"] for line in lines]
        assert len(fractions) == frames == got[name]["frames"]
        assert got[name]["max_corroded_area"] == pytest.approx(max(fractions), abs=1e-4)
        assert got[name]["corroded_share"] == pytest.approx(
            np.mean([f > 0 for f in fractions]), abs=1e-4)

    with open(out / "index.csv") as handle:
        rows = {Path(r["input"]).name: r for r in csv.DictReader(handle)}
    assert {n: (r["status"], int(r["frames"])) for n, r in rows.items()} == {
        "flight_a.avi": ("done", 8), "flight_b.avi": ("done", 6), "stills": ("done", 3),
        "corrupt.avi": ("failed", 0)}
    assert "not a readable video" in rows["corrupt.avi"]["error"]
    assert rows["flight_a.avi"]["report"].endswith("report.html")
    assert (out / rows["flight_a.avi"]["report"]).is_file() and not rows["corrupt.avi"]["report"]
    page = (out / "index.html").read_text()
    assert page.count("<tr class=") == 4 and "1 failed" in page

    # The exit code says not everything succeeded (the corrupt file), after a full batch.
    assert main(["batch", str(archive["flight_b"]), str(archive["corrupt"]), "--out",
                 str(tmp_path / "cli"), "--workers", "9"]) == 6
    # More workers than inputs and cores are capped, and the CLI says so.
    assert "rustseg: WARNING: --workers 9 capped to " in capsys.readouterr().err
    assert main(["batch", str(archive["flight_b"]), "--out", str(tmp_path / "cli")]) == 0


def test_rerun_skips_current_inputs_and_redoes_a_touched_one(archive, tmp_path):
    inputs = [archive["flight_a"], archive["flight_b"], archive["stills"]]
    out = tmp_path / "out"
    first = _batch(inputs, out, workers=2)
    assert first.all_done
    logs = {n: Path(o["record"]) / "frames.jsonl" for n, o in _by_uri(first).items()}
    written = {n: p.stat().st_mtime_ns for n, p in logs.items()}

    engine_jobs = []
    real_engine = engines.ENGINES["local"]

    def counting_engine(jobs, *args):
        engine_jobs.append([Path(job.item.uri).name for job in jobs])
        return real_engine(jobs, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(engines.ENGINES, "local", counting_engine)
        again = _batch(inputs, out, workers=2)
    assert {o["status"] for o in again.outcomes} == {"skipped"} and again.all_done
    assert engine_jobs == [[]]  # nothing current was handed to a worker
    assert {n: p.stat().st_mtime_ns for n, p in logs.items()} == written
    assert _by_uri(again)["flight_a.avi"]["frames"] == 8  # the index keeps the figures

    stat = archive["flight_b"].stat()
    os.utime(archive["flight_b"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    touched = _batch(inputs, out, workers=2)
    assert {n: o["status"] for n, o in _by_uri(touched).items()} == {
        "flight_a.avi": "skipped", "flight_b.avi": "done", "stills": "skipped"}
    assert logs["flight_b.avi"].stat().st_mtime_ns != written["flight_b.avi"]


def test_interrupted_batch_resumes(archive, tmp_path):
    long_flight = write_clip_video(tmp_path / "archive" / "long.avi", _W, _H, 150, seed=3)
    inputs = [archive["flight_b"], long_flight, archive["stills"]]
    out = tmp_path / "out"

    def ctrl_c_after_first_input() -> None:  # what a user's Ctrl-C does to the driver
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if json.loads((out / "manifest.json").read_text())["inputs"]:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        time.sleep(0.5)  # let the long flight get going
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_after_first_input, daemon=True).start()
    cut = _batch(inputs, out, workers=1)
    got = _by_uri(cut)
    assert cut.interrupted and not cut.all_done
    assert got["flight_b.avi"]["status"] == "done"
    assert got["long.avi"]["status"] == "interrupted"
    assert 0 < got["long.avi"]["frames"] < 150
    long_record = Path(got["long.avi"]["record"])
    assert not RecordLayout(long_record).is_complete()  # marked partial, still readable
    assert json.loads((long_record / "summary.json").read_text())["ended"] == "stop request"
    assert got["stills"]["status"] == "pending"
    done_log = Path(got["flight_b.avi"]["record"]) / "frames.jsonl"
    kept = done_log.stat().st_mtime_ns

    resumed = _batch(inputs, out, workers=1)
    got = _by_uri(resumed)
    assert {n: o["status"] for n, o in got.items()} == {
        "flight_b.avi": "skipped", "long.avi": "done", "stills": "done"}
    assert got["long.avi"]["frames"] == 150 and done_log.stat().st_mtime_ns == kept


def test_ray_engine_gives_the_same_records_as_local(archive, tmp_path):
    ray = pytest.importorskip("ray", reason="the Ray engine needs the cluster extra")
    inputs = [archive["flight_a"], archive["stills"], archive["corrupt"]]
    local = _batch(inputs, tmp_path / "local", workers=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        on_ray = _batch(inputs, tmp_path / "ray", engine="ray", workers=2)
    finally:
        ray.shutdown()
    a, b = _by_uri(local), _by_uri(on_ray)
    assert list(RecordLayout(Path(a["flight_a.avi"]["record"])).findings_dir.glob("*_mask.png"))
    assert {n: o["status"] for n, o in b.items()} == {n: o["status"] for n, o in a.items()}
    for name in ("flight_a.avi", "stills"):
        assert _record_digest(Path(b[name]["record"])) == _record_digest(Path(a[name]["record"]))
    assert b["corrupt.avi"]["error"] == a["corrupt.avi"]["error"]


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match=r"input .*nope\.avi: does not exist"):
        expand_inputs([str(tmp_path / "nope.avi")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder holds no images"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(DataError, match="matches no video or image"):
        expand_inputs([str(tmp_path / "*.mp4")])
    listing = tmp_path / "list.txt"
    listing.write_text("# archive\n\n")
    with pytest.raises(DataError, match="lists no inputs"):
        expand_inputs([f"@{listing}"])


def test_batch_plans_its_processes_once_to_fit_the_cores():
    from edge.method.segment import build_segmenter

    assert plan_workers(2, cores=2) == WorkerPlan(2, 1)
    assert plan_workers(1, cores=4) == WorkerPlan(1, 4)
    assert plan_workers(None, cores=2, inputs=5) == WorkerPlan(2, 1)  # one per core
    assert plan_workers(None, cores=2, inputs=1) == WorkerPlan(1, 2)  # the default says nothing
    over = plan_workers(8, cores=2, inputs=5)
    assert (over.workers, over.threads) == (2, 1) and "2 cores" in over.capped
    few = plan_workers(4, cores=4, inputs=1)  # one input: one worker with every core
    assert (few.workers, few.threads) == (1, 4) and "1 inputs to do" in few.capped
    with pytest.raises(ConfigError, match="--workers"):
        plan_workers(0, cores=2)
    # A worker refines in its own process: its segmenter starts no refine worker process.
    config = WorkerPlan(2, 1).worker_config(load_config(overrides={"refine.mode": "light",
                                                                  "refine.worker": "process"}))
    assert config.model.threads == 1 and config.refine.worker == "thread"
    assert build_segmenter(config, allow_worker=True).refine_worker is None


def test_workers_are_capped_to_the_inputs_and_the_cores_and_say_so():
    """Issue 19 item 19: --workers 1000 started a process per input."""
    plan = plan_workers(1000, cores=2, inputs=40)
    assert (plan.workers, plan.threads) == (2, 1) and "--workers 1000 capped to 2" in plan.capped
    plan = plan_workers(8, cores=8, inputs=3)
    assert (plan.workers, plan.threads) == (3, 2) and "3 inputs to do" in plan.capped


def test_a_workers_log_goes_beside_its_record_not_to_the_terminal(tmp_path, capfd):
    """A worker's run logs what a run logs (here: an unreadable photo skipped) into
    RECORD.log, and nothing onto the driver's terminal, where its progress bar is."""
    from edge.batch.work import Job, process_input

    stills = tmp_path / "stills"
    stills.mkdir()
    cv2.imwrite(str(stills / "p0.png"), make_scene(_H, _W, seed=3)[0])
    (stills / "p1.jpg").write_bytes(b"not a jpeg")
    item = expand_inputs([str(stills)])[0]
    record = tmp_path / "records" / item.record_name
    outcome = process_input(Job(item, str(record), load_config(overrides={
        "refine.mode": "none", "refine.worker": "thread"})))
    # The unreadable photo was skipped: the input is partial, and says why.
    assert outcome["status"] == "partial" and outcome["frames"] == 1
    assert "p1.jpg" in outcome["error"]
    log = record.with_name(record.name + ".log").read_text()
    assert "opening source" in log and "skipped" in log and "p1.jpg" in log
    captured = capfd.readouterr()
    assert "p1.jpg" not in captured.err and "opening source" not in captured.err


def test_list_file_and_glob_expand(archive, tmp_path):
    listing = tmp_path / "archive" / "flights.txt"
    listing.write_text("flight_a.avi\nstills\n")
    items = expand_inputs([f"@{listing}", str(tmp_path / "archive" / "*.avi")])
    assert [(Path(i.uri).name, i.kind, len(i.files)) for i in items] == [
        ("flight_a.avi", "video", 1), ("stills", "stills", 3), ("corrupt.avi", "video", 1),
        ("flight_b.avi", "video", 1)]
    assert len({i.record_name for i in items}) == 4


def test_ray_engine_without_ray_names_the_extra(archive, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where it is absent
    code = main(["batch", str(archive["flight_b"]), "--out", str(tmp_path / "out"),
                 "--engine", "ray"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'rustseg-edge[cluster]'" in err[0]


def test_frame_watcher_counts_whole_lines_as_a_record_grows(tmp_path):
    from edge.batch.progress import FrameWatcher

    record = tmp_path / "rec"
    counted = []
    watcher = FrameWatcher([str(record)], counted.append)
    log = RecordLayout(record).frames_log
    record.mkdir()
    assert watcher._poll(str(record), log) == 0  # nothing written yet
    log.write_bytes(b'{"a":1}\n{"a":2}\n{"a"')  # the third line is still being written
    assert watcher._poll(str(record), log) == 2
    with open(log, "ab") as file:
        file.write(b':3}\n')
    assert watcher._poll(str(record), log) == 1
    watcher.finished(str(record), 5)  # the input ended with 5: the 2 not yet seen are added
    assert counted == [2] and watcher.counted[str(record)] == 5


def test_a_lost_worker_marks_its_input_and_the_batch_goes_on(archive, tmp_path):
    import multiprocessing

    long_flight = write_clip_video(tmp_path / "archive" / "long.avi", _W, _H, 150, seed=3)
    inputs = [archive["flight_b"], long_flight, archive["stills"]]
    out = tmp_path / "out"

    def kill_the_worker_mid_flight() -> None:  # what the OOM killer does to a pool process
        deadline = time.monotonic() + 120
        log = None
        while time.monotonic() < deadline and log is None:
            log = next((p for p in (out / RECORDS_DIR).glob("long.avi-*/frames.jsonl")
                        if p.stat().st_size > 0), None)
            time.sleep(0.05)
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)

    threading.Thread(target=kill_the_worker_mid_flight, daemon=True).start()
    result = _batch(inputs, out, workers=1)
    got = _by_uri(result)
    assert not result.interrupted and not result.all_done
    assert {n: o["status"] for n, o in got.items()} == {
        "flight_b.avi": "done", "long.avi": "lost", "stills": "done"}
    assert 0 < got["long.avi"]["frames"] < 150
    assert not RecordLayout(Path(got["long.avi"]["record"])).is_complete()

    again = _by_uri(_batch(inputs, out, workers=1))
    assert {n: o["status"] for n, o in again.items()} == {
        "flight_b.avi": "skipped", "long.avi": "done", "stills": "skipped"}


def test_ray_tasks_take_the_model_from_the_object_store_where_the_path_is_missing(
        tmp_path, monkeypatch):
    from edge.batch.engines import _local_model_path, _model_payload
    from edge.batch.inputs import BatchInput
    from edge.batch.work import Job

    config = load_config()
    payload = _model_payload(Job(BatchInput("x", "video", ()), str(tmp_path), config))
    assert _local_model_path(payload) == payload["path"]  # same bytes on this node: used as is

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # a node without the shared path
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    moved = {**payload, "path": str(tmp_path / "elsewhere" / payload["name"])}
    copy = Path(_local_model_path(moved))
    assert copy.parent == tmp_path / "rustseg-models" / payload["sha256"]
    assert copy.read_bytes() == payload["tflite"]
    assert copy.with_suffix(".json").read_bytes() == payload["card"]
    from edge.method.segment import build_segmenter  # the copy loads (its card's sha256 checks out)
    build_segmenter(config.replace({"model.path": str(copy)}))

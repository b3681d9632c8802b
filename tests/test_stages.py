"""The stage runner (edge/live/stages.py), the refine worker process
(edge/method/refine/worker.py) and `rustseg bench --cpus`: accounting, newest-frame drops,
failures, the worker's lifetime."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, start_logged_run, video_frames
from edge.config import load_config
from edge.data.synthetic import make_scene
from edge.errors import SourceError
from edge.live.app import build_segmenter
from edge.live.pipeline import LoopOptions, Pipeline
from edge.live.stages import Stage, StageRunner
from edge.method.refine.factory import make_refiner
from edge.method.refine.worker import RefineWorker
from edge.outputs import FrameSink
from edge.sources import Frame, FrameSource


# --- the runner -------------------------------------------------------------------------------

def _slow_double(item):
    time.sleep(0.02)
    return item * 2


@pytest.mark.parametrize("live", [False, True])
def test_runner_accounts_for_every_item_and_keeps_order(live):
    out = []
    runner = StageRunner(live, queue_depth=1)
    runner.run(iter(range(60)), [Stage("add", lambda i: i + 1), Stage("slow", _slow_double)],
               out.append)
    assert runner.taken == 60 and runner.consumed == len(out)
    assert runner.taken == runner.consumed + runner.dropped
    assert out == sorted(out) and all(v % 2 == 0 for v in out)  # every stage ran, in order
    if live:   # the slow stage fell behind: stale items were dropped, the last one shown
        assert runner.dropped > 20 and out[-1] == 120
    else:
        assert runner.dropped == 0 and out == [2 * (i + 1) for i in range(60)]


def test_runner_in_turn_runs_the_same_stages_without_threads():
    seen_threads, out = set(), []

    def stage(item):
        seen_threads.add(threading.current_thread().name)
        return item + 1

    runner = StageRunner(live=False, overlap=False)
    runner.run(iter(range(5)), [Stage("a", stage), Stage("b", stage)], out.append)
    assert out == [2, 3, 4, 5, 6] and seen_threads == {threading.current_thread().name}


def test_a_failing_stage_stops_the_run_and_is_raised_after_every_thread_ended():
    before = threading.active_count()

    def fails_on_seven(item):
        if item == 7:
            raise ValueError("stage broke on 7")
        return item

    out = []
    with pytest.raises(ValueError, match="broke on 7"):
        StageRunner(live=False).run(iter(range(1000)), [Stage("x", fails_on_seven)], out.append)
    assert out == list(range(7)) and threading.active_count() == before


# --- the refine worker --------------------------------------------------------------------------

def _scene(height=96, width=128, seed=4):
    frame, mask = make_scene(height, width, seed)
    evidence = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 3)[::4, ::4]
    return frame, np.clip(evidence, 0, 1).astype(np.float32)


def test_worker_masks_equal_the_in_thread_masks_through_reused_shared_buffers():
    settings = load_config().refine
    with RefineWorker(settings, ("light", "full")) as worker:
        for seed in (1, 2, 3):
            frame, evidence = _scene(seed=seed)
            for path in ("light", "full"):
                here = make_refiner(path, settings, 0.0).refine(evidence, frame)
                there = worker.refine(path, evidence, frame)
                assert there.path == path and there.mask.shape == frame.shape[:2]
                assert np.array_equal(there.mask, here.mask)
            if seed == 1:
                buffers = {key: shm.name for key, shm in worker._buffers.items()}
        assert {key: shm.name for key, shm in worker._buffers.items()} == buffers  # reused
        frame, evidence = _scene(120, 160)  # a new frame size gets new buffers
        worker.refine("light", evidence, frame)
        assert len(worker._buffers) == 3 and all(160 in k[1] for k in worker._buffers
                                                 if k[0] != "evidence")
        pid = worker.pid
    assert worker.process is None and not _alive(pid)


class _PidOfWorker(FrameSink):
    name = "pid recorder"

    def __init__(self, segmenter) -> None:
        self.segmenter, self.pids, self.count = segmenter, set(), 0

    def write(self, frame) -> None:
        self.pids.add(self.segmenter.refine_worker.pid)
        self.count += 1


class _CrashingCamera(FrameSource):
    """A live source that delivers a few frames, then fails for good."""

    live = True

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.left = frames

    def read(self):
        time.sleep(0.02)
        if self.left == 0:
            raise SourceError("test camera: unplugged")
        self.left -= 1
        self.latest_index += 1
        return Frame(self.latest_index, make_scene(72, 96, self.left)[0], time.time(),
                     f"{self.latest_index:06d}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _options(config):
    return LoopOptions(overlay=config.overlay, print_frames=False)


@pytest.mark.parametrize("ending", ["end of source", "source crash"])
def test_the_worker_is_gone_after_the_run_ends_or_its_source_crashes(ending):
    config = load_config(overrides={"refine.mode": "full", "refine.worker": "process"})
    segmenter = build_segmenter(config, allow_worker=True)
    sink = _PidOfWorker(segmenter)
    if ending == "end of source":
        from edge.sources import open_source
        with open_source("synthetic://?width=96&height=72&frames=8") as source:
            report = Pipeline(source, segmenter, [sink], _options(config)).run()
        assert report.frames_read == report.frames_processed == sink.count == 8
    else:
        with pytest.raises(SourceError, match="unplugged"):
            Pipeline(_CrashingCamera(6), segmenter, [sink], _options(config)).run()
        assert sink.count >= 1
    (pid,) = sink.pids  # one worker served every frame
    assert pid != os.getpid() and not _alive(pid) and segmenter.refine_worker.process is None


def _children(pid: int) -> dict[int, str]:
    """Live child processes of `pid` with their command lines (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def test_ctrl_c_with_a_process_backed_refine_keeps_accounting_video_and_no_worker(tmp_path):
    video, log = tmp_path / "run.mp4", tmp_path / "run.jsonl"
    process = start_logged_run(log, "--output", str(video), "--refine", "full")
    workers = [pid for pid, cmd in _children(process.pid).items() if "spawn_main" in cmd]
    process.send_signal(signal.SIGINT)  # the worker ignores it; the parent closes it
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert len(workers) == 1 and not _alive(workers[0])
    counts = out.split("frames: read ")[1].split(" (")[0]     # "R, processed P, dropped D"
    read, processed, dropped = (int(part.split()[-1]) for part in counts.split(","))
    assert read == processed + dropped and processed >= 10
    lines = log.read_text().splitlines()
    assert len(lines) == processed and all(json.loads(line)["path"] for line in lines)
    assert video_frames(video) == processed
    assert "stopped by SIGINT" in out and "Traceback" not in err
    # with carrying on (the default), which it was: evidence went from frame to frame
    assert any(json.loads(line)["evidence_from"] is not None for line in lines)


def test_a_killed_loop_leaves_no_worker_behind(tmp_path):
    log = tmp_path / "run.jsonl"
    process = start_logged_run(log, "--refine", "full", lines=3, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, text=False)
    workers = [pid for pid, cmd in _children(process.pid).items() if "spawn_main" in cmd]
    process.kill()  # no finally runs: the worker must notice on its own
    process.wait(timeout=30)
    assert len(workers) == 1
    deadline = time.time() + 20
    while time.time() < deadline and _alive(workers[0]) and not _zombie(workers[0]):
        time.sleep(0.1)
    assert not _alive(workers[0]) or _zombie(workers[0])


def _zombie(pid: int) -> bool:
    """An exited process not yet reaped by its new parent (init in a container may be slow)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


# --- bench --cpus ---------------------------------------------------------------------------------

def test_bench_cpus_1_pins_the_process_and_its_refine_worker(tmp_path):
    out_json = tmp_path / "b.json"
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "bench", "--cpus", "1", "--refine", "full",
         "--frames", "3", "--warmup", "1", "--source", "synthetic://?width=96&height=72&frames=0",
         "--json", str(out_json)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(out_json.read_text())
    allowed = sorted(os.sched_getaffinity(0))
    assert report["cpus"] == allowed[:1] and report["threads"] == 1
    assert report["worker_cpus"] == allowed[:1] and report["refine_worker"] == "process"
    assert report["stages"]["total"]["count"] == 3


def test_bench_cpus_beyond_the_machine_is_a_one_line_error():
    too_many = len(os.sched_getaffinity(0)) + 1
    result = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "--cpus", str(too_many)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2 and f"--cpus {too_many}: expected 1.." in result.stderr
    assert "Traceback" not in result.stderr

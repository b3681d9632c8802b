"""Evidence carried across frames (issue 18): motion, resets, stills and gate hysteresis.

Scenes are synthetic with exact masks; camera moves are crops of one larger scene, so the true
motion of every pixel is known.
"""

from __future__ import annotations

import json
import shutil
import time

import cv2
import numpy as np
import pytest

from edge.config import load_config
from edge.data.synthetic import SceneOptions, make_scene
from edge.method.carry import EvidenceCarrier, GateHold
from edge.method.motion import MotionEstimator

_H, _W = 480, 640
_ORIGIN = (40, 60)   # y, x of the first view in the scene


@pytest.fixture(scope="module")
def scene():
    options = SceneOptions(max_patches=6, patch_scale=0.6, blur_prob=0.0, shadow_prob=0.0)
    return make_scene(_H + 100, _W + 140, 5, options)


def view(scene, dy: int = 0, dx: int = 0):
    """The camera's frame and truth mask, moved by (dy, dx) px from the first view."""
    image, mask = scene
    y, x = _ORIGIN[0] + dy, _ORIGIN[1] + dx
    return image[y:y + _H, x:x + _W], mask[y:y + _H, x:x + _W]


def carry_settings(**changes):
    return load_config(overrides={f"carry.{k}": v for k, v in changes.items()}).carry


@pytest.mark.parametrize("dy, dx", [(-4, 7), (5, 12), (9, -20), (2, 3)])
def test_a_pure_translation_carries_the_mask_onto_the_shifted_mask_within_one_pixel(
        scene, dy, dx):
    first, first_mask = view(scene)
    second, second_mask = view(scene, dy, dx)
    estimator = MotionEstimator(carry_settings())
    assert estimator.estimate(first) is None   # nothing to compare the first frame with
    motion = estimator.estimate(second)
    assert motion.unreliable is None
    carried, valid = motion.warp(first_mask.astype(np.float32))
    carried = carried > 0.5
    # Pixels that entered the view were nowhere in the first frame: they are not valid.
    entered = valid[:, :-dx - 1] if dx < 0 else valid[:, _W - dx + 1:]
    assert entered.size and not entered.any()
    near = np.ones((3, 3), np.uint8)   # "within one pixel": inside the other's 1-px dilation
    near_truth = cv2.dilate(second_mask.astype(np.uint8), near) > 0
    near_carried = cv2.dilate(carried.astype(np.uint8), near) > 0
    assert not (valid & carried & ~near_truth).any()
    assert not (valid & second_mask & ~near_carried).any()
    # The unmoved mask would be far off: the shift is large enough for the test to see.
    assert (valid & (first_mask ^ second_mask)).sum() > 3 * (valid & (carried ^ second_mask)).sum()


def test_evidence_is_carried_along_a_pan_and_blended_with_the_new(scene):
    carrier = EvidenceCarrier(carry_settings(weight=0.5))
    first, second = view(scene)[0], view(scene, 0, 16)[0]
    evidence_first = np.zeros((40, 40), np.float32)
    evidence_first[10:20, 10:20] = 1.0
    assert carrier.step(0, first, evidence_first).reset == "start"
    step = carrier.step(1, second, np.zeros((40, 40), np.float32))
    assert step.reset is None and step.carried_from == 0
    # A 16 px pan at 640 px is one cell of 40 to the left: the block arrives half as strong.
    assert step.evidence01[14, 10:18].max() == pytest.approx(0.5, abs=0.05)
    assert step.evidence01[14, 11] == pytest.approx(0.5, abs=0.05)
    assert step.evidence01[14, 19] < 0.1


def test_nothing_is_carried_across_a_scene_cut_or_a_dropped_frame(scene):
    carrier = EvidenceCarrier(carry_settings())
    other = make_scene(_H, _W, 99, SceneOptions(max_patches=3))[0]
    hot, cold = np.ones((40, 40), np.float32), np.zeros((40, 40), np.float32)
    carrier.step(0, view(scene)[0], hot)
    assert carrier.step(1, view(scene, 2, 6)[0], hot).carried_from == 0
    cut = carrier.step(2, other, cold)
    assert cut.reset == "scene cut" and cut.carried_from is None
    assert np.array_equal(cut.evidence01, cold)        # nothing of the hot frames remains
    after = carrier.step(3, other, cold)
    assert after.carried_from == 2                      # the new scene starts its own chain
    skipped = carrier.step(5, other, hot)               # frame 4 never arrived: a short gap
    assert skipped.carried_from == 3                    # is measured like any step
    gap = 1 + carrier.settings.max_gap_frames
    dropped = carrier.step(6 + gap, other, hot)         # a longer one starts again
    assert dropped.reset == "drop" and np.array_equal(dropped.evidence01, hot)


def test_stills_carry_nothing_even_when_they_show_the_same_scene(scene):
    carrier = EvidenceCarrier(carry_settings())
    hot, cold = np.ones((40, 40), np.float32), np.zeros((40, 40), np.float32)
    carrier.step(None, view(scene)[0], hot)
    step = carrier.step(None, view(scene, 0, 4)[0], cold)
    assert step.reset == "still" and np.array_equal(step.evidence01, cold)


def test_gate_hysteresis_one_low_frame_keeps_the_mask_and_several_switch_it_off():
    hold = GateHold(off_after=3)
    assert [hold.update(o, True) for o in (True, False, True)] == [True, True, True]
    assert [hold.update(o, True) for o in (False, False, False, False)] == \
        [True, True, False, False]
    assert hold.update(True, True) is True
    # A cut (or a drop, or a still) forgets the past: the plain gate decides.
    assert hold.update(False, False) is False
    assert GateHold(off_after=1).update(False, True) is False


def _run_records(tmp_path, source: str, name: str) -> list[dict]:
    from edge.live.app import RunRequest, run_loop
    config = load_config(overrides={"refine.mode": "none", "refine.worker": "thread"})
    log = tmp_path / f"{name}.jsonl"
    run_loop(config, RunRequest(source, (), str(log), None, True))
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_folder_of_stills_carries_nothing_where_the_same_frames_as_a_video_do(scene,
                                                                               tmp_path):
    folder = tmp_path / "stills"
    folder.mkdir()
    video = tmp_path / "same.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (_W, _H))
    for i in range(4):
        frame = np.ascontiguousarray(view(scene, i, 4 * i)[0])
        cv2.imwrite(str(folder / f"{i}.png"), frame)
        writer.write(frame)
    writer.release()
    stills = _run_records(tmp_path, str(folder), "stills")
    clip = _run_records(tmp_path, str(video), "video")
    assert len(stills) == len(clip) == 4
    assert all(r["evidence_from"] is None and r["carry_reset"] == "still" for r in stills)
    assert [r["evidence_from"] for r in clip] == [None, 0, 1, 2]
    assert all(r["mask"] == "fresh" and r["mask_from"] == r["index"] for r in stills + clip)


_NUMBERS_SHIM = """
const BASE = process.argv[2], el = {};
const document = {getElementById: id => (el[id] ??= {id, src: '', textContent: ''})};
const realFetch = fetch;
globalThis.fetch = (url, options) => realFetch(BASE + url, options);
setTimeout(() => { console.log(JSON.stringify({mask: el.mask?.textContent,
                                               path: el.path?.textContent})); process.exit(0); },
           Number(process.argv[3]) * 1000);
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="runs the page's script in Node")
@pytest.mark.parametrize("record, shown", [
    ({"mask": "carried", "mask_from": 7, "path": "full"}, "carried from #7"),
    ({"mask": "fresh", "mask_from": 9, "path": "light"}, "fresh")])
def test_the_console_shows_the_records_fresh_or_carried_flag(tmp_path, monkeypatch, record,
                                                            shown):
    import re
    import subprocess
    import urllib.request

    from edge.console.server import HttpFeedSink
    from edge.outputs import FrameRecord, OutputFrame

    monkeypatch.delenv("RUSTSEG_TOKEN", raising=False)
    sink = HttpFeedSink("127.0.0.1", 0, "", 70, 4)
    try:
        base = f"http://127.0.0.1:{sink.port}"
        with urllib.request.urlopen(f"{base}/", timeout=3) as reply:
            settings = re.search(r'<script id="settings" type="application/json">(.*?)</script>',
                                 reply.read().decode(), re.S).group(1)
        with urllib.request.urlopen(f"{base}/static/console.js", timeout=3) as reply:
            script = reply.read().decode()   # the page's script is a static file
        shim = _NUMBERS_SHIM + f"el.settings = {{textContent: {json.dumps(settings)}}};\n"
        (tmp_path / "page.js").write_text(shim + script)
        sink.write(OutputFrame(9, "9", np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), bool),
                               FrameRecord.from_json({"index": 9, "name": "9", "captured_at": 0.0,
                                                      "output_at": 0.0, "score": 0.5,
                                                      **record})))
        node = subprocess.run(["node", str(tmp_path / "page.js"),
                               f"http://127.0.0.1:{sink.port}", "2"], capture_output=True,
                              text=True, timeout=30)
    finally:
        sink.close()
    assert json.loads(node.stdout.strip().splitlines()[-1]) == {"mask": shown,
                                                              "path": record["path"]}


def _evidence_of(mask: np.ndarray) -> np.ndarray:
    """Evidence a model might give for a mask: the mask, blurred, at 40x40."""
    small = cv2.resize(mask.astype(np.float32), (40, 40), interpolation=cv2.INTER_AREA)
    return np.clip(cv2.GaussianBlur(small, (0, 0), 1.0) * 1.2, 0, 1)


def test_the_full_path_without_lag_draws_the_last_full_mask_carried_onto_each_new_frame(scene):
    from edge.method.refine.factory import make_refiner
    from edge.method.refine.lagless import LaglessFullRefiner
    from edge.method.refine.worker import RefineWorker

    config = load_config()
    moves = [(0, 0), (3, 8), (5, 14), (7, 22)]          # the camera pans right and down
    frames = [np.ascontiguousarray(view(scene, dy, dx)[0]) for dy, dx in moves]
    truths = [view(scene, dy, dx)[1] for dy, dx in moves]
    evidence = [_evidence_of(mask) for mask in truths]
    in_line = make_refiner("full", config.refine, 0.0)   # the full CRF, here, on frame 0
    full_first = in_line.refine(evidence[0], frames[0]).mask
    estimator = MotionEstimator(config.carry)
    with RefineWorker(config.refine, ("full",)) as worker:
        refiner = make_refiner("full", config.refine, 0.0, worker, config.carry)
        assert isinstance(refiner, LaglessFullRefiner)
        refiner.start_source(live=True, consecutive=True)
        estimator.estimate(frames[0])
        refiner.follow_motion(0, None)
        first = refiner.refine(evidence[0], frames[0])
        assert first.path == "light" and first.mask_from is None   # no full mask yet
        while worker.busy:                                         # frame 0's CRF, elsewhere
            time.sleep(0.01)
        for index in (1, 2):
            refiner.follow_motion(index, estimator.estimate(frames[index]))
            result = refiner.refine(evidence[index], frames[index])
            assert result.path == "full" and result.mask_from == index - 1
            if index == 1:
                while worker.busy:
                    time.sleep(0.01)
        # Frame 2 shows frame 1's full mask, carried onto frame 2: aligned with frame 2.
        # Frame 1's full mask is frame 0's scene moved, so compare frame 0's full mask moved
        # by the true pan with what frame 2 drew, within one pixel.
        dy, dx = moves[2]
        moved = np.zeros_like(full_first)
        moved[:_H - dy, :_W - dx] = full_first[dy:, dx:]
        inner = np.zeros_like(moved)
        inner[8:_H - 8 - dy, 8:_W - 8 - dx] = True   # away from the edges the views do not share
        near = np.ones((3, 3), np.uint8)
        mismatch = inner & (result.mask ^ moved)
        near_both = (cv2.dilate(moved.astype(np.uint8), near) > 0) & \
            (cv2.dilate(result.mask.astype(np.uint8), near) > 0)
        # the full CRF on frame 1 may settle a few pixels differently from frame 0's
        assert (mismatch & ~near_both).sum() <= 0.01 * moved.sum()
        assert (inner & (result.mask ^ full_first)).sum() > 5 * (mismatch & ~near_both).sum()
        # A cut: nothing earlier is carried onto the new scene.
        refiner.follow_motion(3, None)
        after_cut = refiner.refine(evidence[3], frames[3])
        assert after_cut.path == "light" and after_cut.mask_from is None

"""Virtual flights: does the overlay hold still while the camera moves? (issue 18)

Over a subset of the holdout photos of vt_corrosion/train (nothing was trained or tuned on
them), a virtual camera flies a smooth path (pan, zoom, a little rotation; some clips fast, some
with a cut to another photo halfway). Each clip is written as a video file and the expert mask
is warped exactly alongside. All clips go, one after another, into one video per run, so every
run pays its start-up once and the jumps between clips are scene cuts too. Each run is the real
`rustseg run --source CLIP.avi --save-masks DIR --log frames.jsonl` with one refine path, with
carrying off and on (`carry.enabled`), and with the lagless full path on the video
(`carry.full_without_lag: always`, which live sources get by default).

Per run:
- IoU: per-frame pooled IoU against the warped expert mask (all frames of all clips);
- TC (temporal consistency, Liu et al., ECCV 2020): IoU between each mask and the previous
  frame's mask carried onto it by the known camera motion, over the part of the frame both
  views see; pooled over frame pairs (and the mean over pairs with any mask); pairs across a
  cut are left out;
- blinks: frames with >= 5 % rust whose mask is empty while both neighbours' masks are not;
- carried across cuts: frames right after a cut whose evidence or mask came from before it
  (must be 0);
- cost: the medians of the per-frame `carry` stage and of preprocess + invoke + carry + refine,
  from frames.jsonl.

    nice -n 5 python benchmarks/flights.py [--clips 20] [--frames 30] [--split holdout]
        [--runs none light full ...]
    nice -n 5 python benchmarks/flights.py --split synthetic --clips 4 --runs light light+carry
        --strip docs/steady_strip.png --out /tmp/flights_synthetic

Choosing settings is done with `--split tune`; the holdout split only reports. The strip of
frames in docs/ is drawn from synthetic scenes: the vt_corrosion photos may not be shown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common import ROOT, RESULTS, SHARED_DATA, machine, write_report

_WIDTH, _HEIGHT = 640, 480
_FPS = 30.0
_BLINK_MIN_RUST = 0.05
_CUT_EVERY = 4          # every 4th clip jumps to another photo halfway
_FAST_EVERY = 3         # every 3rd clip flies fast
# name -> (refine path, config overrides); the first two of each path are the before/after
RUNS = {
    "none": ("none", {"carry": {"enabled": False}}),
    "none+carry": ("none", {}),
    "light": ("light", {"carry": {"enabled": False}}),
    "light+carry": ("light", {}),
    "full": ("full", {"carry": {"enabled": False}}),
    "full+carry": ("full", {"carry": {"full_without_lag": "never"}}),
    "full+carry+lagless": ("full", {"carry": {"full_without_lag": "always"}}),
}


@dataclass
class Clip:
    photos: list[str]          # photo stem per frame
    affines: list[np.ndarray]  # float64 [2, 3] photo px -> frame px, per frame
    cut_at: int | None         # first frame after the cut, if any
    fast: bool


def camera_path(rng: np.random.Generator, frames: int, fast: bool, photo_px: int
                ) -> list[np.ndarray]:
    """A smooth path over a square photo: view centre, width and roll eased from a start to an
    end pose, as photo -> frame affines. The 4:3 view stays inside the photo."""
    def pose():
        width = rng.uniform(0.5, 0.85) * photo_px
        half_w, half_h = width / 2 * 1.08, width * 0.75 / 2 * 1.08   # room for the roll
        return (np.array([rng.uniform(half_w, photo_px - half_w),
                          rng.uniform(half_h, photo_px - half_h)]), width,
                np.deg2rad(rng.uniform(-4, 4)))

    (c0, w0, r0), (c1, w1, r1) = pose(), pose()
    if not fast:  # a slow pass: end a little way from the start
        c1, w1 = c0 + 0.3 * (c1 - c0), w0 + 0.3 * (w1 - w0)
    affines = []
    for t in np.linspace(0.0, 1.0, frames):
        ease = 0.5 - 0.5 * np.cos(np.pi * t)
        centre, width = c0 + ease * (c1 - c0), w0 + ease * (w1 - w0)
        roll = r0 + ease * (r1 - r0)
        scale = _WIDTH / width
        cos, sin = scale * np.cos(roll), scale * np.sin(roll)
        # frame = R*S*(photo - centre) + frame centre
        linear = np.array([[cos, -sin], [sin, cos]])
        offset = np.array([_WIDTH / 2, _HEIGHT / 2]) - linear @ centre
        affines.append(np.hstack([linear, offset[:, None]]))
    return affines


def make_clips(stems: list[str], frames: int, seed: int) -> list[Clip]:
    rng = np.random.default_rng(seed)
    clips = []
    for number, stem in enumerate(stems):
        fast = number % _FAST_EVERY == _FAST_EVERY - 1
        affines = camera_path(rng, frames, fast, 512)
        photos = [stem] * frames
        cut_at = None
        if number % _CUT_EVERY == _CUT_EVERY - 1:
            cut_at = frames // 2
            other = stems[(number + len(stems) // 2) % len(stems)]
            photos[cut_at:] = [other] * (frames - cut_at)
            affines[cut_at:] = camera_path(rng, frames - cut_at, fast, 512)
        clips.append(Clip(photos, affines, cut_at, fast))
    return clips


def render(photo_bgr: np.ndarray, mask: np.ndarray, affine: np.ndarray):
    frame = cv2.warpAffine(photo_bgr, affine, (_WIDTH, _HEIGHT), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    truth = cv2.warpAffine(mask.astype(np.uint8), affine, (_WIDTH, _HEIGHT),
                           flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
    return frame, truth.astype(bool)


def frame_to_frame(older: np.ndarray, newer: np.ndarray) -> np.ndarray:
    """Affine [2, 3] taking the older frame's pixels to the newer frame's (same photo)."""
    older3 = np.vstack([older, [0, 0, 1]])
    newer3 = np.vstack([newer, [0, 0, 1]])
    return (newer3 @ np.linalg.inv(older3))[:2]


def write_flight(clips: list[Clip], photos: dict, path: Path) -> list[np.ndarray]:
    """All clips into one MJPEG video; returns the warped expert mask of every frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), _FPS,
                             (_WIDTH, _HEIGHT))
    truths = []
    try:
        for clip in clips:
            for stem, affine in zip(clip.photos, clip.affines):
                frame, truth = render(*photos[stem], affine)
                writer.write(frame)
                truths.append(truth)
    finally:
        writer.release()
    return truths


def run_rustseg(video: Path, out: Path, path: str, overrides: dict) -> dict:
    """The real `rustseg run` over the flight; masks and frames.jsonl land in `out`."""
    out.mkdir(parents=True)
    config = out / "config.yaml"
    config.write_text(json.dumps(overrides))   # YAML accepts JSON
    command = [sys.executable, "-m", "edge.cli", "run", "--source", str(video),
               "--save-masks", str(out / "masks"), "--log", str(out / "frames.jsonl"),
               "--refine", path, "--config", str(config), "--headless", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"rustseg run failed ({done.returncode}): {done.stderr[-800:]}")
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    return {"records": records, "wall_s": time.perf_counter() - started}


def carry_cost_ms(video: Path, threads: int = 2) -> dict:
    """Median cost of carrying alone (motion + warp + blend; `EvidenceCarrier.step`) per frame
    of the flight, measured here with OpenCV on `threads` threads and nothing else running in
    this process; the runs' own `carry` stage also pays for sharing the GIL with the loop."""
    from edge.config import load_config
    from edge.method.carry import EvidenceCarrier

    cv2.setNumThreads(threads)
    carrier = EvidenceCarrier(load_config().carry)
    evidence = np.random.default_rng(0).random((40, 40), np.float32)
    capture = cv2.VideoCapture(str(video))
    samples, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        started = time.perf_counter()
        carrier.step(index, frame, evidence)
        samples.append((time.perf_counter() - started) * 1000)
        index += 1
    capture.release()
    return {"p50": float(np.median(samples)), "p95": float(np.percentile(samples, 95)),
            "frames": len(samples), "opencv_threads": threads}


def read_masks(folder: Path, count: int) -> list[np.ndarray]:
    masks = []
    for index in range(count):
        image = cv2.imread(str(folder / f"{index:06d}.png"), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise RuntimeError(f"mask {index} missing in {folder}")
        masks.append(image > 127)
    return masks


def score_run(clips: list[Clip], truths: list[np.ndarray], masks: list[np.ndarray],
              records: list[dict]) -> dict:
    inter = union = tc_inter = tc_union = 0
    tc_pairs, blinks, carried_over_cuts, blink_frames = [], 0, 0, []
    start = 0
    ones = np.ones((_HEIGHT, _WIDTH), np.uint8)
    for clip in clips:
        n = len(clip.affines)
        for t in range(n):
            i = start + t
            inter += np.count_nonzero(masks[i] & truths[i])
            union += np.count_nonzero(masks[i] | truths[i])
            first_of_scene = t == 0 or t == clip.cut_at
            if first_of_scene:
                record = records[i]
                if i > 0 and (record.get("evidence_from") is not None
                              or record.get("mask", "fresh") == "carried"):
                    carried_over_cuts += 1
                continue
            move = frame_to_frame(clip.affines[t - 1], clip.affines[t])
            carried = cv2.warpAffine(masks[i - 1].astype(np.uint8), move, (_WIDTH, _HEIGHT),
                                     flags=cv2.INTER_NEAREST) > 0
            seen = cv2.warpAffine(ones, move, (_WIDTH, _HEIGHT), flags=cv2.INTER_NEAREST) > 0
            a, b = carried & seen, masks[i] & seen
            pair_union = np.count_nonzero(a | b)
            pair_inter = np.count_nonzero(a & b)
            tc_inter += pair_inter
            tc_union += pair_union
            if pair_union:
                tc_pairs.append(pair_inter / pair_union)
            last_of_scene = t == n - 1 or t + 1 == clip.cut_at
            if not last_of_scene and truths[i].mean() >= _BLINK_MIN_RUST and \
                    not masks[i].any() and masks[i - 1].any() and masks[i + 1].any():
                blinks += 1
                blink_frames.append(i)
        start += n
    carry_ms = [r["ms"].get("carry", 0.0) for r in records]
    work_ms = [sum(r["ms"].get(k, 0.0) for k in ("preprocess", "invoke", "carry", "refine"))
               for r in records]
    paths: dict[str, int] = {}
    for r in records:
        paths[r["path"]] = paths.get(r["path"], 0) + 1
    return {"iou": inter / union if union else 0.0,
            "tc": tc_inter / tc_union if tc_union else 0.0,
            "tc_mean": float(np.mean(tc_pairs)) if tc_pairs else 0.0,
            "blinks": blinks, "blink_frames": blink_frames,
            "carried_across_cuts": carried_over_cuts,
            "carry_ms_p50": float(np.median(carry_ms)), "work_ms_p50": float(np.median(work_ms)),
            "frames_carried_mask": sum(r.get("mask") == "carried" for r in records),
            "frames_carried_evidence": sum(r.get("evidence_from") is not None for r in records),
            "paths": paths}


def strip(video: Path, runs: dict, names: tuple[str, str], first: int, count: int,
          out: Path) -> None:
    """Frames `first`.. of the flight with the masks of two runs (before above, after below)."""
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, first)
    tiles = [[], []]
    for offset in range(count):
        ok, frame = capture.read()
        if not ok:
            break
        for row, name in enumerate(names):
            mask = runs[name]["masks"][first + offset]
            tile = frame.copy()
            tile[mask] = (0.55 * tile[mask] + 0.45 * np.array([0, 80, 255])).astype(np.uint8)
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(tile, contours, -1, (0, 80, 255), 2, cv2.LINE_AA)
            cv2.putText(tile, f"{name}  frame {first + offset}", (10, 36),
                        cv2.FONT_HERSHEY_SIMPLEX, 1.1, (255, 255, 255), 3, cv2.LINE_AA)
            tiles[row].append(cv2.resize(tile, (256, 192), interpolation=cv2.INTER_AREA))
    capture.release()
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack([np.hstack(row) for row in tiles]),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20, help="photos flown over (a subset)")
    parser.add_argument("--frames", type=int, default=30, help="frames per clip")
    parser.add_argument("--split", default="holdout", choices=("holdout", "tune", "synthetic"),
                        help="synthetic: scenes from the generator with exact masks, which may "
                             "be shown anywhere (the real photos may not be committed)")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--out", default=str(RESULTS / "flights"))
    parser.add_argument("--strip", default=None, help="PNG of before/after frames of light "
                        "(with --split synthetic)")
    parser.add_argument("--set", nargs="*", default=[], metavar="carry.KEY=VALUE",
                        help="carry settings for every run (to choose them on --split tune)")
    args = parser.parse_args()
    if args.strip and args.split != "synthetic":
        sys.exit("flights: --strip needs --split synthetic (the real photos may not be "
                 "committed or shown)")

    sys.path.insert(0, str(ROOT))
    from edge.config import load_config
    from edge.data.datasets import find_masked_images
    from edge.data.imageio import read_image_bgr, read_mask
    from edge.data.synthetic import SceneOptions, make_scene

    if args.split == "synthetic":
        step = 1
        options = SceneOptions(max_patches=6, patch_scale=0.5, blur_prob=0.0)
        photos = {f"scene{i}": make_scene(512, 512, args.seed + i, options)
                  for i in range(args.clips)}
        stems = list(photos)
    else:
        root = SHARED_DATA / "vt_corrosion" / "train"
        if not root.is_dir():
            sys.exit(f"flights: {root} is absent; the benchmark needs the real photos")
        pairs = find_masked_images(root, args.split, load_config().data.holdout_fraction)
        step = max(1, len(pairs) // args.clips)
        stems = [p.image.stem for p in pairs[::step][:args.clips]]
        photos = {p.image.stem: (read_image_bgr(p.image), read_mask(p.mask)) for p in pairs}
    clips = make_clips(stems, args.frames, args.seed)
    started = time.perf_counter()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="flights-") as scratch:
        video = Path(scratch) / "flight.avi"
        truths = write_flight(clips, photos, video)
        carry_alone = carry_cost_ms(video)
        print("carry alone", carry_alone, flush=True)
        for name in args.runs:
            path, overrides = RUNS[name]
            overrides = _with_settings(overrides, args.set)
            done = run_rustseg(video, Path(scratch) / name, path, overrides)
            masks = read_masks(Path(scratch) / name / "masks", len(truths))
            runs[name] = {**score_run(clips, truths, masks, done["records"]),
                          "wall_s": done["wall_s"], "masks": masks}
            row = {k: v for k, v in runs[name].items() if k not in ("masks", "blink_frames")}
            print(name, json.dumps(row), flush=True)
        if args.strip and {"light", "light+carry"} <= set(runs):
            strip(video, runs, ("light", "light+carry"), _strip_start(runs, clips), 6,
                  Path(args.strip))
    for run in runs.values():
        run.pop("masks")
    report = {"machine": machine(), "split": args.split, "settings": args.set,
              "photos": stems, "clips": len(clips),
              "frames_per_clip": args.frames, "frame_size": f"{_WIDTH}x{_HEIGHT}",
              "fast_clips": sum(c.fast for c in clips),
              "cut_clips": sum(c.cut_at is not None for c in clips),
              "load_1min": os.getloadavg()[0], "wall_s": time.perf_counter() - started,
              "carry_alone_ms": carry_alone,
              "runs": runs}
    lines = [f"# Virtual flights ({args.split} split of vt_corrosion/train)", "",
             f"{len(clips)} clips x {args.frames} frames at {_WIDTH}x{_HEIGHT} over every "
             f"{step}th {args.split} photo ({report['fast_clips']} fast, {report['cut_clips']} "
             "with a cut), through `rustseg run --save-masks`; "
             "`python benchmarks/flights.py`.", "",
             f"Carrying alone (motion, warp, blend) per frame, 2 OpenCV threads: median "
             f"{carry_alone['p50']:.2f} ms, p95 {carry_alone['p95']:.2f} ms; the runs' `carry` "
             "column is the same stage inside the loop (sharing the GIL with it).", "",
             "| run | IoU | TC pooled | TC mean | blinks | carried across cuts | carried masks |"
             " carry ms p50 | work ms p50 | paths |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in runs.items():
        lines.append(f"| {name} | {r['iou']:.3f} | {r['tc']:.3f} | {r['tc_mean']:.3f} | "
                     f"{r['blinks']} | {r['carried_across_cuts']} | {r['frames_carried_mask']} |"
                     f" {r['carry_ms_p50']:.2f} | {r['work_ms_p50']:.1f} | {r['paths']} |")
    write_report(args.out, report, lines)


def _with_settings(overrides: dict, settings: list[str]) -> dict:
    """The run's config overrides with `--set carry.KEY=VALUE` laid under them."""
    carry = {}
    for item in settings:
        key, _, value = item.partition("=")
        if not key.startswith("carry.") or not value:
            sys.exit(f"flights: --set {item!r}: expected carry.KEY=VALUE")
        carry[key.split(".", 1)[1]] = json.loads(value) if value[0] in "0123456789-[{tf" \
            else value
    return {**overrides, "carry": {**carry, **overrides.get("carry", {})}}


def _strip_start(runs: dict, clips: list[Clip]) -> int:
    """Where the light path without carrying blinked, else the first clip's middle."""
    blinks = runs["light"]["blink_frames"]
    return max(0, blinks[0] - 2) if blinks else len(clips[0].affines) // 2 - 3


if __name__ == "__main__":
    main()

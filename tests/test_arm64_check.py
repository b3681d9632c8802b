"""The pieces of `make arm64-check` that run on this machine: the mask comparison and the promise
that the README's Pi section installs exactly what the check installs. The check itself (qemu,
debootstrap) is a script CI runs, not a unit test."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT

CHECK_DIR = ROOT / "deploy" / "arm64"
sys.path.insert(0, str(CHECK_DIR))
import compare_masks  # noqa: E402  (deploy/arm64 is a folder of scripts, not a package)


def _apt_file_packages() -> list[str]:
    lines = (CHECK_DIR / "apt-packages.txt").read_text().splitlines()
    return [name for line in lines for name in line.split("#")[0].split()]


def test_readme_pi_section_installs_what_the_check_installs():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## On a Raspberry Pi or a Jetson", 1)[1].split("\n## ", 1)[0]
    first_apt_line = re.search(r"^sudo apt install (.+)$", section, re.M).group(1)
    assert first_apt_line.split() == _apt_file_packages()
    assert ".venv/bin/pip install '.[edge,report]'" in section
    check = (CHECK_DIR / "check.sh").read_text()
    assert "python3 -m venv --system-site-packages" in check
    assert "pip install -q '.[edge,report]'" in check


def _write_masks(folder: Path, masks: list[np.ndarray]) -> None:
    folder.mkdir(parents=True)
    for i, mask in enumerate(masks):
        cv2.imwrite(str(folder / f"{i:06d}.png"), mask.astype(np.uint8) * 255)


def _write_log(path: Path, scores: list[float]) -> None:
    path.write_text("".join(json.dumps({"name": f"{i:06d}", "score": s, "valid": True}) + "\n"
                            for i, s in enumerate(scores)))


def _square(shift_px: int = 0, size: int = 100) -> np.ndarray:
    mask = np.zeros((120, 160), bool)
    mask[10 + shift_px:10 + shift_px + size, 20:20 + size] = True
    return mask


def _results(tmp_path: Path, arm_masks: list[np.ndarray], arm_scores: list[float]) -> Path:
    host = [_square(), _square(), np.zeros((120, 160), bool)]
    for path in compare_masks.MIN_POOLED_IOU:
        _write_masks(tmp_path / f"host-masks-{path}", host)
        _write_masks(tmp_path / f"arm64-masks-{path}", arm_masks)
        _write_log(tmp_path / f"host-frames-{path}.jsonl", [0.9, 0.8, 0.1])
        _write_log(tmp_path / f"arm64-frames-{path}.jsonl", arm_scores)
    return tmp_path


def _compare(results: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK_DIR / "compare_masks.py"), str(results),
                           "--apt-seconds", "5", "--install-seconds", "60"],
                          capture_output=True, text=True, timeout=60)


def test_outline_noise_agrees_and_reports_the_figures(tmp_path):
    # One pixel row more on one frame (what a probability flip at the outline does): agrees.
    results = _results(tmp_path, [_square(), _square(size=101), np.zeros((120, 160), bool)],
                       [0.9, 0.8004, 0.1])
    done = _compare(results)
    assert done.returncode == 0, done.stderr
    assert "pip install '.[edge,report]' took 60 s" in done.stdout
    assert "agrees" in done.stdout and "DOES NOT AGREE" not in done.stdout
    report = json.loads((results / "agreement.json").read_text())
    none = report["paths"]["none"]
    assert none["frames"] == 3
    assert none["min_frame_iou"] == pytest.approx(100 * 100 / (101 * 101))
    assert none["pooled_iou"] == pytest.approx(2 * 100 * 100 / (100 * 100 + 101 * 101))
    assert none["score_max_abs_diff"] == pytest.approx(0.0004)


def test_moved_regions_fail_the_check(tmp_path):
    # Regions moved by a third of their size (a wrong resize or channel order does worse).
    results = _results(tmp_path, [_square(shift_px=35), _square(shift_px=35),
                                  np.zeros((120, 160), bool)], [0.9, 0.8, 0.1])
    done = _compare(results)
    assert done.returncode == 1
    assert "DOES NOT AGREE" in done.stdout
    assert not json.loads((results / "agreement.json").read_text())["paths"]["none"]["agrees"]


def test_missing_arm64_masks_are_one_line(tmp_path):
    results = _results(tmp_path, [_square()], [0.9])  # the arm64 run stopped after one frame
    done = _compare(results)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "do not hold the same masks" in done.stderr

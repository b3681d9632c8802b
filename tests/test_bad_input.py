"""Reliability, bad input: a bad model, config, source URI, image, video or training folder is
one clear line (or is processed), never a traceback."""

import shutil

import cv2
import numpy as np
import pytest

from conftest import DEFAULT_MODEL, ROOT
from reliability_support import assert_one_line_error, cli
from edge.config import load_config
from edge.data.synthetic import make_scene
from edge.live.app import RunRequest, run_loop


# --- 1. bad input -----------------------------------------------------------------------------

def test_bad_models_are_one_line_errors(tmp_path):
    assert_one_line_error(cli("eval", "--model", str(tmp_path / "gone.tflite"), "--data",
                                str(tmp_path)), 2, "expected class folders")
    from edge.data.synthetic import write_classification_folder
    data = write_classification_folder(tmp_path / "cls", 1, 32, 0)
    assert_one_line_error(cli("eval", "--model", str(tmp_path / "gone.tflite"), "--data",
                                str(data)), 2, "gone.tflite does not exist")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    assert_one_line_error(cli("eval", "--model", str(junk), "--data", str(data)), 2,
                           "is not a TFLite file")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(DEFAULT_MODEL.read_bytes()[:5000])
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), corrupt.with_suffix(".json"))
    assert_one_line_error(cli("eval", "--model", str(corrupt), "--data", str(data)), 2,
                           "does not match")


def test_bad_config_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text((ROOT / "config.yaml").read_text().replace("threads: 2", "threads: 2\n  turbo: 1"))
    assert_one_line_error(cli("--config", str(bad), "config"), 2, "model.turbo")


@pytest.mark.parametrize("uri, fragment", [("bogus://x", "unknown scheme"),
                                           ("synthetic://?fps=x", "not a number")])
def test_bad_source_uri_on_the_command_line(uri, fragment):
    assert_one_line_error(cli("run", "--source", uri, "--headless"), 3, fragment)


def test_corrupt_image_and_truncated_video(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    assert_one_line_error(cli("run", "--source", str(broken), "--headless"), 3,
                           "not a readable image")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(20):
        writer.write(make_scene(48, 64, i)[0])
    writer.release()
    data = video.read_bytes()
    truncated = tmp_path / "cut.avi"
    truncated.write_bytes(data[: len(data) // 2])
    result = cli("run", "--source", str(truncated), "--headless", "--quiet", "--log",
                  str(tmp_path / "cut.jsonl"))
    assert result.returncode == 0, result.stderr          # plays what can be decoded
    assert 0 < len((tmp_path / "cut.jsonl").read_text().splitlines()) < 20
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert_one_line_error(cli("run", "--source", str(empty), "--headless"), 3, "empty.mp4")


def test_grayscale_rgba_and_16_bit_images_are_processed(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    frame = make_scene(60, 80, 1)[0]
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "deep.png"), frame.astype(np.uint16) * 257)
    report = run_loop(load_config(overrides={"refine.mode": "full"}),
                      RunRequest(str(folder), (), None, str(tmp_path / "m"), True))
    assert report.frames_processed == 3
    for stem in ("gray", "rgba", "deep"):
        assert cv2.imread(str(tmp_path / "m" / f"{stem}.png"), cv2.IMREAD_UNCHANGED).shape \
            == (60, 80)


@pytest.mark.parametrize("mode", ["none", "light", "full", "auto"])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (4320, 7680)])
def test_tiny_and_8k_frames_for_every_refine_path(mode, size):
    from edge.method.model import CorrosionModel
    from edge.method.refine.factory import make_refiner
    from edge.method.segment import Segmenter

    config = load_config()
    segmenter = Segmenter(CorrosionModel(DEFAULT_MODEL, 2),
                          make_refiner(mode, config.refine, 15))
    frame = np.full((*size, 3), (40, 70, 150), np.uint8)  # rust-brown everywhere
    result = segmenter.segment(frame)
    assert result.mask.shape == size and result.mask.dtype == bool
    cam = np.full(segmenter.model.cam_hw, np.nan, np.float32)  # NaN heat still gives a mask
    assert segmenter.refiner.refine(cam, frame).mask.shape == size


def test_empty_or_corrupt_training_folder_is_a_one_line_error(tmp_path):
    pytest.importorskip("tensorflow")
    (tmp_path / "corrosion").mkdir()
    (tmp_path / "no_corrosion").mkdir()
    (tmp_path / "no_corrosion" / "x.jpg").write_bytes(b"garbage")
    assert_one_line_error(cli("train", "--data", str(tmp_path), "--out",
                                str(tmp_path / "m"), "--weights", "none"), 2, "holds no images")



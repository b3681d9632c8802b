import subprocess
import sys

import pytest
import yaml

from edge.config import default_config_path, load_config
from edge.errors import ConfigError


def _write(tmp_path, mutate):
    raw = yaml.safe_load(default_config_path().read_text())
    mutate(raw)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_shipped_config_loads_and_every_key_is_documented():
    config = load_config()
    assert config.model.threads >= 1
    text = default_config_path().read_text()
    for section in ("model", "train", "export", "refine", "loop", "overlay", "http", "data",
                    "demo"):
        assert f"\n{section}:" in "\n" + text


@pytest.mark.parametrize("mutate, expected", [
    (lambda raw: raw["refine"].update(bogus=1), "unknown config key refine.bogus"),
    (lambda raw: raw.update(extra={}), "unknown config section 'extra'"),
    (lambda raw: raw["model"].update(threads="many"), "model.threads = 'many' has the wrong type"),
    (lambda raw: raw["model"].update(threads=0), "model.threads = 0 is out of range; expected 1"),
    (lambda raw: raw["refine"].update(mode="fast"), "refine.mode = 'fast' is not allowed"),
    (lambda raw: raw["loop"].update(loop_video="maybe"), "loop.loop_video = 'maybe'"),
    (lambda raw: raw["overlay"].update(colour_bgr=[0, 300, 0]), "overlay.colour_bgr"),
    (lambda raw: raw["overlay"].update(colour_bgr=[0, 0]), "3 comma-separated numbers"),
    (lambda raw: raw["train"].pop("seed"), "config key train.seed is missing"),
    (lambda raw: raw["train"].update(dropout=float("nan")), "not NaN"),
])
def test_bad_values_name_the_key_and_what_is_expected(tmp_path, mutate, expected):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, mutate))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_overrides_are_validated_like_the_file():
    config = load_config(overrides={"refine.mode": "light", "model.threads": "3",
                                    "overlay.colour_bgr": "1,2,3", "loop.loop_video": "true"})
    assert config.refine.mode == "light"
    assert config.model.threads == 3
    assert config.overlay.colour_bgr == (1, 2, 3)
    assert config.loop.loop_video is True
    with pytest.raises(ConfigError, match="model.threads = -1 is out of range"):
        load_config(overrides={"model.threads": "-1"})
    with pytest.raises(ConfigError, match="not a config key"):
        load_config(overrides={"nosuch.key": 1})
    assert config.replace({"refine.mode": "full"}).refine.mode == "full"


def test_cli_show_prints_effective_config_and_flags_override():
    out = subprocess.run([sys.executable, "-m", "edge.cli", "config", "--show"],
                         capture_output=True, text=True, check=True).stdout
    assert yaml.safe_load(out)["refine"]["mode"] == load_config().refine.mode


def test_cli_bad_flag_value_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edge.cli", "eval", "--data", str(tmp_path),
                             "--threads", "0"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "model.threads = 0 is out of range" in result.stderr

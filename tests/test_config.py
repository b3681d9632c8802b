import re
import subprocess
import sys

import pytest
import yaml

from edge.config import default_config_path, load_config
from edge.errors import ConfigError
from edge.method.refine.registry import REFINE_MODES


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
    (lambda raw: raw.update(loop=[1]), "config section 'loop' is missing or not a mapping"),
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


def test_cli_show_prints_effective_config_and_flags_override(tmp_path):
    def shown(*args):
        return yaml.safe_load(subprocess.run([sys.executable, "-m", "edge.cli", *args],
                                             capture_output=True, text=True, check=True).stdout)

    default = load_config().refine.mode
    assert shown("config", "--show")["refine"]["mode"] == default
    other = next(mode for mode in REFINE_MODES if mode != default)
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"refine: {{mode: {other}}}\n")
    # --config before or after the command, as every flag that mirrors a key
    assert shown("--config", str(mine), "config", "--show")["refine"]["mode"] == other
    assert shown("config", "--show", "--config", str(mine))["refine"]["mode"] == other


def test_cli_bad_flag_value_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edge.cli", "eval", "--data", str(tmp_path),
                             "--threads", "0"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "model.threads = 0 is out of range" in result.stderr


def test_a_user_config_holds_only_the_keys_it_changes(tmp_path):
    partial = tmp_path / "mine.yaml"
    partial.write_text("loop: {target_fps: 20}\n")
    config, defaults = load_config(partial), load_config()
    assert config.loop.target_fps == 20
    assert config.replace({"loop.target_fps": defaults.loop.target_fps}) == defaults
    typo = tmp_path / "typo.yaml"
    typo.write_text("loop: {target_fsp: 20}\n")
    with pytest.raises(ConfigError, match="unknown config key loop.target_fsp"):
        load_config(typo)


@pytest.mark.parametrize("before", [True, False])
def test_config_flag_works_before_or_after_the_command(tmp_path, before):
    partial = tmp_path / "mine.yaml"
    partial.write_text("loop: {target_fps: 20}\n")
    flag = ["--config", str(partial)]
    argv = [*flag, "config"] if before else ["config", *flag]
    out = subprocess.run([sys.executable, "-m", "edge.cli", *argv], capture_output=True,
                         text=True, check=True).stdout
    assert yaml.safe_load(out)["loop"]["target_fps"] == 20


@pytest.mark.parametrize("command", ["run", "eval", "bench", "train", "export", "demo"])
def test_help_shows_each_default_once(command):
    from edge.cli import build_parser

    parser = build_parser(load_config())
    subparsers = next(a for a in parser._actions if a.choices and command in a.choices)
    text = subparsers.choices[command].format_help().split("exit codes:")[0]
    entries = re.split(r"\n  (?=-)", text)  # one entry per option, continuation lines joined
    assert len(entries) > 3
    for entry in entries:
        assert entry.count("default:") <= 1, entry
        assert "(default: None)" not in entry

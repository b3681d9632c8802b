"""The effective configuration: `config.yaml` parsed once into frozen dataclasses and validated.

Every default value lives in `config.yaml` (the project root's, or the copy installed with the
package); the dataclasses below only say what each key is and what it may hold. Command-line
flags override keys by their dotted name (`refine.mode`), and everything is validated after the
overrides, so a bad flag gets the same one-line error as a bad file.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from edge.errors import ConfigError
from edge.method.choices import QUANT_MODES, RUNTIME_CHOICES  # leaves: the names only
from edge.method.refine.registry import REFINE_MODES

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_INSTALLED_SHARE = Path(sys.prefix) / "share" / "rustseg"


def spec(help: str, *, range: tuple[float, float] | None = None,
         choices: Iterable[Any] | Callable[[], Iterable[Any]] | None = None,
         parse: Callable[[str, Any], Any] | None = None) -> Any:
    """A dataclass field with no default (defaults live in config.yaml) and validation metadata.

    `range` is inclusive; `choices` may be a callable so a registry can supply it lazily;
    `parse(key, value)` checks a value with a syntax of its own and raises ConfigError.
    """
    return field(metadata={"help": help, "range": range, "choices": choices, "parse": parse})


@dataclass(frozen=True)
class ModelConfig:
    path: str = spec("default .tflite model; its model card NAME.json sits next to it")
    threads: int = spec("TFLite interpreter threads", range=(1, 64))
    runtime: str = spec("which TFLite runtime to load; auto tries them in order", choices=RUNTIME_CHOICES)


@dataclass(frozen=True)
class TrainConfig:
    alpha: float = spec("MobileNetV2 width multiplier", choices=(0.35, 0.5))
    input_size: int = spec("square input side in pixels", range=(32, 640))
    weights: str = spec("backbone weights: imagenet, none or a path to a Keras .h5 file")
    weights_dir: str = spec("folder holding the Keras MobileNetV2 no-top .h5 files")
    batch_size: int = spec("images per training step", range=(1, 512))
    head_epochs: int = spec("epochs with the backbone frozen", range=(0, 1000))
    finetune_epochs: int = spec("epochs with the top of the backbone unfrozen", range=(0, 1000))
    head_lr: float = spec("Adam learning rate for the head stage", range=(1e-7, 1.0))
    finetune_lr: float = spec("Adam learning rate for the fine-tune stage", range=(1e-8, 1.0))
    finetune_from: str = spec("first backbone layer (name prefix) unfrozen for fine-tuning")
    patience: int = spec("early stopping: epochs without validation AUC gain", range=(1, 1000))
    dropout: float = spec("dropout before the logit", range=(0.0, 0.9))
    label_smoothing: float = spec("binary label smoothing", range=(0.0, 0.4))
    calibration_fraction: float = spec("share of the class-folder training images held out to "
                                       "choose the decision threshold (0: fixed 0.5)",
                                       range=(0.0, 0.5))
    val_fraction: float = spec("share held out for validation when --val is not given",
                               range=(0.05, 0.5))
    seed: int = spec("seed for splits, shuffling, augmentation and weights", range=(0, 2**31 - 1))
    max_hue_shift: float = spec("largest hue shift of augmentation, as a fraction of the hue "
                                "circle; rust colour is the signal, keep it small", range=(0.0, 0.1))
    tile_size: int = spec("--tiles-from: tile side in pixels", range=(32, 2048))
    tile_stride: int = spec("--tiles-from: step between tiles in pixels", range=(16, 2048))
    tile_positive_min: float = spec("--tiles-from: mask coverage at or above which a tile is "
                                    "labelled corrosion", range=(0.0, 1.0))
    tile_weight: float = spec("--tiles-from: loss weight of one tile relative to one image",
                              range=(0.0, 10.0))
    tile_negative_max: float = spec("--tiles-from: mask coverage at or below which a tile is "
                                    "labelled no_corrosion; tiles between are left out",
                                    range=(0.0, 1.0))


@dataclass(frozen=True)
class ExportConfig:
    quant: str = spec("weight/activation precision of the exported model", choices=QUANT_MODES)
    cam_layer: str = spec("Keras layer whose activations the Grad-CAM++ map is taken at")
    input_size: int = spec("square input side of the exported model (0: the training size)",
                           range=(0, 1024))
    rep_images: int = spec("int8: representative images drawn from --rep-data", range=(1, 5000))
    verify_images: int = spec("images compared with the reference after export", range=(0, 500))


@dataclass(frozen=True)
class CrfSettings:
    """CAM -> prior mapping and dense CRF of one refine path (full and light each have one)."""

    scale_px: int = spec("longest side, in px, the path works at", range=(16, 4096))
    iterations: int = spec("mean-field iterations of the dense CRF (0: prior only)",
                           range=(0, 50))
    fg_floor: float = spec("P(corrosion) the coldest CAM level maps to", range=(0.0, 0.5))
    fg_ceiling: float = spec("P(corrosion) the hottest CAM level maps to", range=(0.5, 1.0))
    cam_gamma: float = spec("CAM ** gamma before the mapping; >1 sharpens the blob",
                            range=(0.1, 5.0))
    colour_prior_weight: float = spec("blend of the rust-colour prior into the CAM evidence "
                                      "(0: CAM only)", range=(0.0, 1.0))
    gauss_sxy: float = spec("Gaussian (smoothness) kernel width, working px", range=(0.1, 100))
    gauss_compat: float = spec("Gaussian kernel weight", range=(0.0, 100))
    bilateral_sxy: float = spec("bilateral kernel spatial width, working px", range=(0.1, 500))
    bilateral_srgb: float = spec("bilateral kernel colour width (0..255 units)",
                                 range=(0.1, 255))
    bilateral_compat: float = spec("bilateral kernel weight", range=(0.0, 100))


@dataclass(frozen=True)
class TeacherConfig:
    """`rustseg distill`, step 1: pseudo masks from image-level labels (converter/teacher.py)."""

    scales: tuple[int, int] = spec("whole-photo input sizes of the multi-view CAM, px",
                                   range=(32, 1024))
    crop_grid: int = spec("half-size crops per side (0: none)", range=(0, 6))
    crop_size: int = spec("input size the crops are resized to, px", range=(32, 1024))
    flip: bool = spec("add mirrored views")
    fine_layer: str = spec("earlier layer whose CAM is fused with out_relu's ('' = none)")
    work_px: int = spec("side of the grid the views are fused on", range=(8, 1024))
    affinity_epochs: int = spec("epochs of the affinity embedding trained from confident "
                                "cells (0: no random walk)", range=(0, 200))
    affinity_beta: float = spec("random walk: affinity ** beta sharpens the transitions",
                                range=(0.5, 64))
    affinity_steps: int = spec("random walk: propagation steps", range=(1, 1024))
    affinity_bg_power: float = spec("random walk: background seed is (1 - cam) ** this",
                                    range=(0.1, 16))
    crf: CrfSettings = spec("the teacher's own CAM -> prior mapping and full-resolution CRF "
                              "(apart from the device's refine.full, which is re-tuned on seg)")
    cam_threshold: float = spec("fused CAM level that counts as rust; pixels where the CRF "
                                "disagrees with it are ignored in training", range=(0.0, 1.0))
    sure_fg: float = spec("CRF posterior at or above which a pixel is rust", range=(0.5, 1.0))
    sure_bg: float = spec("CRF posterior at or below which a pixel is background; between "
                          "the two it is ignored in training", range=(0.0, 0.5))


@dataclass(frozen=True)
class StudentConfig:
    """`rustseg distill`, step 2: the segmentation head trained on the pseudo masks."""

    input_size: int = spec("training input side; the export size, so seg learns its stride",
                           range=(32, 1024))
    epochs: int = spec("passes over the pseudo-labelled samples (and their mirrors)",
                       range=(1, 1000))
    batch_size: int = spec("samples per step", range=(1, 1024))
    learning_rate: float = spec("Adam learning rate (cosine decay to 0)", range=(1e-6, 1.0))
    tiles_per_photo: int = spec("half-size tiles of each tune photo (4 corners + centre)",
                                range=(0, 5))
    negative_weight: float = spec("loss weight of a no_corrosion photo relative to a "
                                  "corrosion one", range=(0.0, 10.0))
    seed: int = spec("seed for shuffling and the head's initial weights", range=(0, 2**31 - 1))


@dataclass(frozen=True)
class RefineConfig:
    mode: str = spec("how the heatmap becomes a mask", choices=REFINE_MODES)
    cam_threshold: float = spec("none: CAM level (0..1) above which a pixel is corrosion",
                                range=(0.0, 1.0))
    full: CrfSettings = spec("the full dense CRF path")
    light: CrfSettings = spec("the light path's prior and short CRF")
    light_clusters: int = spec("light: k-means colour clusters", range=(2, 32))
    light_colour_space: str = spec("light: colour features for k-means",
                                   choices=("lab", "hsv", "bgr"))
    light_sure_fg: float = spec("light: cluster mean CAM at or above which it is sure rust",
                                range=(0.0, 1.0))
    light_sure_bg: float = spec("light: cluster mean CAM at or below which it is sure background",
                                range=(0.0, 1.0))
    auto_hysteresis: float = spec("auto: fraction of the frame budget kept spare before "
                                  "switching back up to full", range=(0.0, 0.9))
    auto_hold_frames: int = spec("auto: frames a choice is held before it may change",
                                 range=(1, 1000))
    worker: str = spec("where paths that hold the GIL (light, full: pydensecrf) run in `run` "
                       "and `bench`: a worker process, or a thread of the loop",
                       choices=("process", "thread"))


@dataclass(frozen=True)
class GateConfig:
    score_floor: float = spec("v2 models: a frame scoring at least this (below the card's "
                              "threshold) still gets a mask when its seg evidence is large "
                              "enough", range=(0.0, 1.0))
    seg_min_area: float = spec("v2 models: share of the frame where seg >= 0.5 that opens the "
                               "gate below the card's threshold", range=(0.0, 1.0))


@dataclass(frozen=True)
class CarryConfig:
    """Evidence carried from frame to frame along the camera motion (video and live only)."""

    enabled: bool = spec("carry evidence across frames of video and live sources (never "
                         "between stills)")
    weight: float = spec("share of the previous frame's carried evidence in the blend",
                         range=(0.0, 0.95))
    flow_side_px: int = spec("longest side, px, of the grey frames the optical flow runs on",
                             range=(32, 1024))
    fb_tolerance_px: float = spec("forward-backward check: a pixel agrees when its round trip "
                                  "ends within this many flow px", range=(0.1, 20.0))
    min_consistent: float = spec("share of pixels that must pass the forward-backward check, "
                                 "else the flow is unreliable and nothing is carried",
                                 range=(0.0, 1.0))
    max_residual: float = spec("mean grey difference (0..255) between a frame and the previous "
                               "one warped onto it above which it is a scene cut",
                               range=(0.0, 255.0))
    max_gap_frames: int = spec("frames a live source may skip between two frames shown with "
                               "evidence still carried (the motion is measured between the "
                               "frames shown); a longer gap starts again", range=(0, 1000))
    gate_off_after: int = spec("a mask that was on switches off only after this many frames "
                               "in a row without enough evidence", range=(1, 100))
    full_without_lag: str = spec("where the full CRF runs in the background on the newest frame "
                                 "and the frames between get its mask carried by the motion",
                                 choices=("live", "always", "never"))
    full_max_shift: float = spec("lagless full: the last full mask is carried while the motion "
                                 "since its frame stays under this share of the frame width; "
                                 "beyond, light is used", range=(0.0, 1.0))


@dataclass(frozen=True)
class LoopConfig:
    target_fps: float = spec("frame budget of the live loop and of --refine auto",
                             range=(0.1, 240))
    frames: int = spec("stop after this many frames (0: until the source ends)",
                       range=(0, 10**9))
    loop_video: bool = spec("restart video files when they end")
    queue_depth: int = spec("frames buffered between pipeline stages", range=(1, 64))
    reconnect_timeout_s: float = spec("give up on a lost camera or stream after this long",
                                      range=(0.0, 3600))
    reconnect_backoff_s: float = spec("first wait before reconnecting; doubles each try",
                                      range=(0.01, 60))
    sink_error_policy: str = spec("when an output fails mid-run: drop it and go on, or stop "
                                  "cleanly", choices=("drop", "stop"))


@dataclass(frozen=True)
class OverlayConfig:
    colour_bgr: tuple[int, int, int] = spec("mask fill and outline colour, B,G,R 0..255",
                                            range=(0, 255))
    fair_bgr: tuple[int, int, int] = spec("v3 models: colour of Fair (CS2) rust, B,G,R 0..255",
                                          range=(0, 255))
    poor_bgr: tuple[int, int, int] = spec("v3 models: colour of Poor (CS3) rust, B,G,R 0..255",
                                          range=(0, 255))
    severe_bgr: tuple[int, int, int] = spec("v3 models: colour of Severe (CS4) rust, B,G,R "
                                            "0..255", range=(0, 255))
    alpha: float = spec("opacity of the mask fill", range=(0.0, 1.0))
    outline_px: int = spec("outline thickness at 640 px wide; scales with frame width",
                           range=(0, 20))
    heatmap: bool = spec("blend the Grad-CAM++ heatmap under the mask")
    hud: bool = spec("draw the FPS / stage timing / score panel")

    @property
    def state_colours_bgr(self) -> tuple[tuple[int, int, int], ...]:
        """Fair, Poor, Severe, in the order of the state values 1, 2, 3."""
        return self.fair_bgr, self.poor_bgr, self.severe_bgr


@dataclass(frozen=True)
class HttpConfig:
    host: str = spec("address the live page binds; 127.0.0.1 keeps it on this machine")
    port: int = spec("default port when an http:// output names none", range=(1, 65535))
    token: str = spec("access token required on every route ('' = none; a non-empty env "
                      "RUSTSEG_TOKEN overrides)")
    jpeg_quality: int = spec("JPEG quality of the MJPEG stream", range=(10, 100))
    max_clients: int = spec("concurrent viewers served; more are refused with 503 "
                            "(connections served, and connections still sending their "
                            "request head, are each capped at twice this)", range=(1, 1000))
    max_per_address: int = spec("open connections one client address may hold; more are "
                                "refused with 503 (a browser opens up to 6 to one page)",
                                range=(1, 2000))


@dataclass(frozen=True)
class StreamConfig:
    bitrate_kbps: int = spec("H.264 target bitrate of rtp:// and udp:// outputs, kbit/s",
                             range=(50, 100000))
    gop_s: float = spec("seconds between keyframes (a late receiver waits at most this)",
                        range=(0.1, 10.0))
    preset: str = spec("x264 speed preset", choices=("ultrafast", "superfast", "veryfast",
                                                     "faster", "fast", "medium"))
    sdp_file: str = spec("rtp:// outputs: the SDP file written at start ('' = none)")


@dataclass(frozen=True)
class TelemetryConfig:
    max_age_s: float = spec("live MAVLink: a fix older than this at capture is missing",
                            range=(0.01, 60.0))
    srt_max_gap_s: float = spec("DJI .SRT: widest gap between two cues bridged by interpolation",
                                range=(0.0, 10.0))
    baud: int = spec("serial MAVLink baud rate", range=(1200, 4000000))
    camera_hfov_deg: float = spec("footprint: camera field of view across the frame, degrees",
                                  range=(1.0, 179.0))
    camera_vfov_deg: float = spec("footprint: camera field of view down the frame, degrees",
                                  range=(1.0, 179.0))
    footprint_min_pitch_deg: float = spec("footprint only when the camera looks down at least "
                                          "this steeply, degrees below the horizon",
                                          range=(0.0, 90.0))


@dataclass(frozen=True)
class DataConfig:
    holdout_fraction: float = spec("share of every mask folder kept as 'holdout': never trained "
                                   "or tuned on, only reported", range=(0.0, 0.9))


@dataclass(frozen=True)
class RecordConfig:
    finding_min_area: float = spec("a frame is a finding only if at least this share of it is "
                                   "marked corroded", range=(0.0, 1.0))
    finding_gap_frames: int = spec("video and cameras: findings lie more than this many frames "
                                   "apart; the largest corroded area in between wins",
                                   range=(0, 10**6))
    finding_gap_photos: int = spec("photo folders: the same gap counted in photos (0: every "
                                   "photo above the floor is a finding)", range=(0, 10**6))
    report_top: int = spec("findings shown in the report, largest corroded area first",
                           range=(1, 1000))
    root: str = spec("`rustseg run` records every run into a new folder under this one, named "
                     "by its start time ('' = only with --record)")
    reserve_mb: float = spec("free space kept on the record's file system: under it the video "
                             "stops, findings and the log go on", range=(0, 10**7))


@dataclass(frozen=True)
class ServiceConfig:
    name: str = spec("the systemd unit is NAME.service")
    source: str = spec("source URI the service runs on")
    record_root: str = spec("folder the service records every run under (an absolute path)")
    output: str = spec("output URI of the service, the live page ('' = none)")
    watchdog_s: int = spec("systemd restarts the loop when no frame has come out for this long",
                           range=(2, 3600))
    restart_s: int = spec("wait before starting again after a failure", range=(0, 3600))


@dataclass(frozen=True)
class StillsConfig:
    tile_grid: int = spec("photos (folders, globs, `rustseg eval`, batch over photos): the "
                          "model also reads a GRID x GRID set of overlapping half-size crops "
                          "and averages their seg and state in place; 0 = off (one invoke)",
                          range=(0, 5))


def parse_surface(key: str, text: str) -> tuple[tuple[float, float], ...]:
    """'x,y x,y x,y ...' (fractions of the frame's width and height, at least three points
    enclosing some area) -> the points; '' -> () (no surface: the whole frame)."""
    def refuse(why: str) -> ConfigError:
        return ConfigError(f"config key {key} = {text!r} {why}; expected at least three x,y "
                           "points in fractions of the frame, e.g. '0.1,0.2 0.9,0.2 0.5,0.9'")

    if not text.strip():
        return ()
    points = []
    for pair in text.split():
        parts = pair.split(",")
        try:
            x, y = (float(v) for v in parts)
        except ValueError:
            raise refuse(f"has {pair!r}, not a number pair x,y") from None
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):  # also refuses NaN
            raise refuse(f"has {pair!r} outside 0..1")
        points.append((x, y))
    if len(points) < 3:
        raise refuse(f"has {len(points)} point{'s' if len(points) != 1 else ''}")
    doubled_area = sum(x0 * y1 - x1 * y0
                       for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]))
    if abs(doubled_area) < 1e-6:
        raise refuse("encloses no area")
    return tuple(points)


@dataclass(frozen=True)
class GradesConfig:
    surface: str = spec("the coated steel's outline in a fixed camera's view, as x,y points in "
                        "fractions of the frame ('0.1,0.2 0.9,0.2 0.9,0.8'): rust grades are "
                        "then of the rusted share of that surface; '' = the whole frame (an "
                        "indication only)", parse=parse_surface)

    @property
    def surface_points(self) -> tuple[tuple[float, float], ...]:
        return parse_surface("grades.surface", self.surface)


@dataclass(frozen=True)
class DemoConfig:
    source: str = spec("source URI of `rustseg demo`")
    out_dir: str = spec("folder the demo writes its run record (demo_record/) into")


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    train: TrainConfig
    export: ExportConfig
    teacher: TeacherConfig
    student: StudentConfig
    refine: RefineConfig
    gate: GateConfig
    carry: CarryConfig
    loop: LoopConfig
    overlay: OverlayConfig
    http: HttpConfig
    stream: StreamConfig
    telemetry: TelemetryConfig
    data: DataConfig
    record: RecordConfig
    service: ServiceConfig
    stills: StillsConfig
    grades: GradesConfig
    demo: DemoConfig

    def replace(self, overrides: Mapping[str, Any]) -> "Config":
        """A new validated Config with dotted keys (`refine.mode`) replaced."""
        return _build(_merge(dataclasses.asdict(self), overrides, origin="option"), "option")

    def to_yaml(self) -> str:
        return yaml.safe_dump(_plain(dataclasses.asdict(self)), sort_keys=False)


def _plain(value: Any) -> Any:
    """asdict() output with tuples as lists, so YAML writes plain sequences."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def default_config_path() -> Path:
    """config.yaml of a source checkout, else the copy `pip install` put under share/rustseg."""
    for candidate in (_PROJECT_ROOT / "config.yaml", _INSTALLED_SHARE / "config.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"config.yaml not found in {_PROJECT_ROOT} or {_INSTALLED_SHARE}; "
                      "reinstall rustseg or pass --config FILE")


def resolve_resource(path: str) -> Path:
    """A relative path from the config (models/x.tflite) as it exists: cwd, checkout, install."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    for root in (_PROJECT_ROOT, _INSTALLED_SHARE):
        if (root / p).exists():
            return root / p
    return p


def load_config(path: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Read, merge and validate. Raises ConfigError naming the key, the value and what it needs.

    A user's file (`path`) holds only the keys it changes; they are merged over the defaults
    in the project's config.yaml, and unknown keys are still refused."""
    defaults = default_config_path()
    raw = _read_yaml(defaults)
    source = Path(path) if path else defaults
    if path:
        raw = _deep_merge(raw, _read_yaml(source, empty_ok=True))
    if overrides:
        raw = _merge(raw, overrides, origin="option")
    return _build(raw, str(source))


_CONFIG_MAX_BYTES = 1 << 20   # config.yaml is about 12 KB: a file near 1 MiB is no config
_CONFIG_MAX_DEPTH = 16        # config.yaml nests 3 deep (teacher.crf.iterations)


class _RefusedYaml(yaml.YAMLError):
    """YAML that parses but that a config must not hold (an alias, deep nesting, a key twice)."""


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with three refusals, so a config file cannot hang or crash loading
    and cannot hide a mistake:
    - aliases (`*name`): nothing in a config needs them, and a few nested ones expand into
      billions of nodes (an "alias bomb");
    - nesting deeper than _CONFIG_MAX_DEPTH (the composer recurses once per level, so
      thousands of `[` raise RecursionError);
    - a key given twice in one mapping (YAML keeps the last one and silently drops the first,
      e.g. a second `refine:` section)."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _RefusedYaml(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) "
                               "are not allowed in a config; write the value out")
        if self.depth >= _CONFIG_MAX_DEPTH:
            raise _RefusedYaml(f"line {event.start_mark.line + 1}: nested more than "
                               f"{_CONFIG_MAX_DEPTH} levels deep")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        first_line: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = first_line.setdefault(key, line)
            except TypeError:
                continue  # an unhashable key: construct_mapping itself reports it
            if first != line:
                raise _RefusedYaml(f"line {line}: duplicate key {_show(key)} (first at line "
                                   f"{first})")
        return super().construct_mapping(node, deep)


def _read_yaml(source: Path, empty_ok: bool = False) -> dict:
    try:
        with open(source, "rb") as file:
            data = file.read(_CONFIG_MAX_BYTES + 1)  # bounded: /dev/zero is a path too
        if len(data) > _CONFIG_MAX_BYTES:
            raise ConfigError(f"config file {source} is larger than {_CONFIG_MAX_BYTES} bytes; "
                              "a config holds only the keys it changes")
        raw = yaml.load(data.decode("utf-8"), Loader=_ConfigLoader)  # noqa: S506 (a safe loader)
    except FileNotFoundError:
        raise ConfigError(f"config file {source} does not exist") from None
    except _RefusedYaml as exc:
        raise ConfigError(f"config file {source} {exc}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"config file {source} is not valid YAML: {first_line}") from None
    if raw is None and empty_ok:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {source} must hold a mapping of sections, "
                          f"got {type(raw).__name__}")
    return raw


def _deep_merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` laid over it, section by section and key by key."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _merge(raw: dict, overrides: Mapping[str, Any], origin: str) -> dict:
    """A deep copy of `raw` with each dotted key (`refine.full.iterations`) set."""
    merged = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if len(parts) < 2 or parts[0] not in _SECTIONS or not all(parts):
            raise ConfigError(f"{origin} {dotted!r} is not a config key; expected SECTION.KEY "
                              f"with SECTION one of {', '.join(_SECTIONS)}")
        node = merged
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{origin} {dotted!r}: {part!r} is not a group of keys")
        node[parts[-1]] = value
    return merged


def _build(raw: dict, origin: str) -> Config:
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{origin}: unknown config section {unknown[0]!r}; expected one of "
                          f"{', '.join(_SECTIONS)}")
    return Config(**{name: _build_group(name, cls, raw.get(name), origin)
                     for name, cls in _SECTIONS.items()})


def _build_group(path: str, cls: type, values: Any, origin: str):
    """One dataclass from a mapping; fields whose type is a dataclass are nested groups."""
    if not isinstance(values, dict):
        raise ConfigError(f"{origin}: config section {path!r} is missing or not a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{origin}: unknown config key {path}.{unknown[0]}; known keys: "
                          f"{', '.join(fields)}")
    checked = {}
    for name, f in fields.items():
        key = f"{path}.{name}"
        if name not in values:
            raise ConfigError(f"{origin}: config key {key} is missing")
        if dataclasses.is_dataclass(hints[name]):
            checked[name] = _build_group(key, hints[name], values[name], origin)
        else:
            checked[name] = _check_value(key, values[name], hints[name], f.metadata)
    return cls(**checked)


def _check_value(key: str, value: Any, expected: Any, meta: Mapping) -> Any:
    value = _coerce(key, value, expected)
    lo_hi = meta.get("range")
    items = value if isinstance(value, tuple) else (value,)
    if lo_hi and not isinstance(value, (str, bool)):
        lo, hi = lo_hi
        for item in items:
            if not lo <= item <= hi:
                raise ConfigError(f"config key {key} = {_show(value)} is out of range; "
                                  f"expected {lo} to {hi}")
    if meta.get("parse") is not None:
        meta["parse"](key, value)
    choices = meta.get("choices")
    if choices is not None:
        allowed = tuple(choices() if callable(choices) else choices)
        if value not in allowed:
            raise ConfigError(f"config key {key} = {_show(value)} is not allowed; expected one of "
                              f"{', '.join(map(str, allowed))}")
    return value


def _coerce(key: str, value: Any, expected: Any) -> Any:
    """Accept the YAML type or the string a command-line flag gives; reject everything else."""
    def fail(what: str) -> ConfigError:
        return ConfigError(f"config key {key} = {_show(value)} has the wrong type; expected {what}")

    if typing.get_origin(expected) is tuple:
        parts = value.split(",") if isinstance(value, str) else value
        args = typing.get_args(expected)
        if not isinstance(parts, (list, tuple)) or len(parts) != len(args):
            raise fail(f"{len(args)} comma-separated numbers")
        return tuple(_coerce(key, p, a) for p, a in zip(parts, args))
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise fail("true or false")
    if expected is int:
        if isinstance(value, bool):
            raise fail("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise fail("an integer")
    if expected is float:
        if isinstance(value, bool):
            raise fail("a number")
        if isinstance(value, (int, float)):
            if value != value:  # NaN never validates
                raise fail("a number, not NaN")
            return float(value)
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise fail("a number") from None
            if number != number:
                raise fail("a number, not NaN")
            return number
        raise fail("a number")
    if expected is str:
        if isinstance(value, str):
            return value
        raise fail("a string")
    raise AssertionError(f"unsupported config type {expected!r} for {key}")


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def describe_key(dotted: str) -> str:
    """The help text of a config key, for CLI --help."""
    first, *rest = dotted.split(".")
    cls = _SECTIONS[first]
    for part in rest:
        f = next(f for f in dataclasses.fields(cls) if f.name == part)
        cls = typing.get_type_hints(cls)[part]
    return f.metadata["help"]


_SECTIONS: dict[str, type] = {f.name: typing.get_type_hints(Config)[f.name]
                              for f in dataclasses.fields(Config)}

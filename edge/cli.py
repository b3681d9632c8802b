"""`rustseg`: the one command-line entry point.

This module only parses arguments, builds the effective config and calls the library; it is
also the only place that turns exceptions into one-line messages and exit codes. Flags that
mirror a config key carry that key as their `dest` (`refine.mode`) and default to None, so
"not given" means "use config.yaml".

The exit codes are listed once, in `_EXIT_CODES_HELP` below; `rustseg --help` shows them and
README's Reliability section repeats them for readers.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from edge import native_logs
from edge.config import Config, describe_key, load_config
from edge.errors import ConfigError, MissingDependencyError, RustsegError
from edge.method.choices import QUANT_MODES, RUNTIME_CHOICES
from edge.stop_reason import StopReason, StopRequest
from edge.untrusted import printable
from edge.uris import OUTPUT_FORMS, SOURCE_FORMS, TELEMETRY_FORMS, forms_list
from edge.writable import check_option_writable

_EXIT_INTERRUPTED = 128 + signal.SIGINT
_EXIT_INTERNAL = 70
_EXIT_OUTPUT_STOPPED = 4     # = SinkError.exit_code: an output failed and stopped the run
_EXIT_OUTPUT_LOST = 5        # an output failed mid-run; the run went on without it
_EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
_EXIT_CODES_HELP = """exit codes:
  0    ended as asked, every output kept every frame
  1    operating-system error (the message names the file)
  2    bad option, config, model or data; an output that would overwrite a source
  3    source not opened, or lost and not back in loop.reconnect_timeout_s
  4    output not opened at start, or failed and stopped the run (sink_error_policy=stop)
  5    output lost mid-run, the run went on without it (sink_error_policy=drop)
  6    batch: one or more inputs failed or were lost (listed in DIR/index.csv)
  7    batch: every input ran, but frames of some were skipped (status partial)
  70   internal error
  75   the --out or --record folder is in use by another live rustseg; try again later
  130  stopped by Ctrl-C (143: by SIGTERM), outputs closed properly
  141  stdout closed by its reader (e.g. | head)"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter,
                     argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default once, and only a real one: flags that mirror a config key name theirs in
    their help text (their argparse default is None, meaning "use the config"); an off switch
    or an empty list says nothing. The epilog (exit codes) keeps its layout."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default == [] \
                or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {value}")
    return value


def _key_option(parser: argparse.ArgumentParser, flag: str, key: str, defaults: Config | None,
                **kwargs) -> None:
    """A flag that overrides config key `key`; its help shows the key and current default."""
    section, _, name = key.partition(".")
    default = getattr(getattr(defaults, section), name) if defaults else "?"
    parser.add_argument(flag, dest=key, default=None,
                        help=f"{describe_key(key)} [{key}, default: {default}]", **kwargs)


def build_parser(defaults: Config | None) -> argparse.ArgumentParser:
    from edge.method.refine.registry import REFINE_MODES

    parser = argparse.ArgumentParser(
        prog="rustseg", description="Corrosion segmentation on live video from image-level "
        "labels: classify, Grad-CAM++ in TFLite, refine with a dense CRF.",
        epilog=_EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common_options(parser, argparse.SUPPRESS)
    # The same options after the subcommand; SUPPRESS keeps an absent one from resetting
    # what was given before it.
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, argparse.SUPPRESS)
    parser.set_defaults(config=None, verbose=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[common],
                                   epilog=_EXIT_CODES_HELP, formatter_class=_HelpFormatter)

    def option(p, flag, key, **kw):
        _key_option(p, flag, key, defaults, **kw)

    def model_options(p):
        option(p, "--model", "model.path", metavar="M.tflite")
        option(p, "--threads", "model.threads", metavar="N")
        option(p, "--runtime", "model.runtime", choices=RUNTIME_CHOICES)

    def refine_option(p):
        option(p, "--refine", "refine.mode", choices=REFINE_MODES)

    p = command("train", "train the classifier on image-level labels (needs the train extra)")
    p.add_argument("--data", required=True, help="class folders corrosion/ and no_corrosion/")
    p.add_argument("--val", help="validation class folders (default: split off --data)")
    p.add_argument("--tiles-from", help="images+masks folder cut into tiles labelled by "
                   "mask coverage (its holdout part is never used)")
    p.add_argument("--out", required=True, help="output stem, e.g. models/NAME")
    option(p, "--weights", "train.weights", metavar="imagenet|none|PATH.h5")
    option(p, "--alpha", "train.alpha", choices=("0.35", "0.5"))
    option(p, "--input-size", "train.input_size", metavar="N")
    option(p, "--epochs-head", "train.head_epochs", metavar="N")
    option(p, "--epochs-finetune", "train.finetune_epochs", metavar="N")
    option(p, "--seed", "train.seed", metavar="N")

    p = command("distill", "teacher pseudo masks -> a segmentation head in the classifier "
                "(model contract v2; needs the train extra)")
    p.add_argument("--model", required=True, help="trained classifier NAME.keras")
    p.add_argument("--data", help="class folders corrosion/ and no_corrosion/ (image labels)")
    p.add_argument("--photos-from", help="images+masks folder: the photos of its tune part "
                   "(its masks are never read)")
    p.add_argument("--out", required=True, help="output stem, e.g. models/NAME (NAME.keras)")
    p.add_argument("--cache", default="build/pseudo", help="folder caching the teacher's maps")
    option(p, "--epochs", "student.epochs", metavar="N")

    p = command("states", "tile tags of condition states -> a state head in a v2 model "
                "(model contract v3; needs the train extra)")
    p.add_argument("--model", required=True, help="a v2 NAME.keras from `rustseg distill`")
    p.add_argument("--photos-from", required=True, help="images+masks folder with condition-"
                   "state masks: only its tune photos are read, and only as tile tags")
    p.add_argument("--out", required=True, help="output stem, e.g. models/NAME (NAME.keras)")

    p = command("export", "export TFLite with Grad-CAM++ inside the graph (needs the train extra)")
    p.add_argument("--model", required=True, help="trained NAME.keras")
    p.add_argument("--out", required=True, help="output NAME.tflite (card: NAME.json)")
    option(p, "--quant", "export.quant", choices=QUANT_MODES)
    p.add_argument("--rep-data", help="images for int8 calibration and the fidelity check "
                   "(default: synthetic scenes)")
    option(p, "--cam-layer", "export.cam_layer", metavar="LAYER")
    option(p, "--input-size", "export.input_size", metavar="N")

    p = command("eval", "measure a model and refine path on class folders or images+masks")
    model_options(p)
    p.add_argument("--data", required=True, help="class folders or an images+masks folder")
    p.add_argument("--json", dest="json_out", help="write the metrics to this JSON file")
    refine_option(p)
    p.add_argument("--split", default="all", choices=("all", "tune", "holdout"),
                   help="images+masks: which part of the folder (data.holdout_fraction)")
    p.add_argument("--limit", type=_non_negative_int, default=0,
                   help="evaluate at most N images (0: all)")

    for name, help in (("run", "run the live loop: source -> model -> refine -> outputs"),
                       ("demo", "the shipped model on a synthetic moving-camera clip")):
        p = command(name, help)
        model_options(p)
        refine_option(p)
        option(p, "--target-fps", "loop.target_fps", metavar="FPS")
        option(p, "--frames", "loop.frames", metavar="N")
        p.add_argument("--log", help="write one JSON line per frame to this file")
        p.add_argument("--save-masks", metavar="DIR", help="write one binary PNG mask per frame")
        p.add_argument("--headless", action="store_true", help="never open a window")
        p.add_argument("--quiet", action="store_true", help="no per-frame line on stdout")
        if name == "run":
            p.add_argument("--source", required=True, metavar="URI",
                           help=forms_list(SOURCE_FORMS))
            p.add_argument("--output", action="append", default=[], metavar="URI",
                           help=f"{forms_list(OUTPUT_FORMS)} (repeatable)")
            p.add_argument("--record", metavar="DIR", help="write the run record into this new "
                           "or empty folder: overlay video, frames.jsonl, findings, run.json, "
                           "summary.json (then: rustseg report DIR)")
            option(p, "--loop", "loop.loop_video", metavar="true|false")
            option(p, "--record-root", "record.root", metavar="DIR")
            p.add_argument("--telemetry", metavar="URI", help="live MAVLink positions: "
                           f"{forms_list(TELEMETRY_FORMS)}; a video's DJI .SRT sidecar is read "
                           "without it")
        else:
            option(p, "--source", "demo.source", metavar="URI")
            option(p, "--out-dir", "demo.out_dir", metavar="DIR")

    p = command("bench", "measure the pipeline's latency stage by stage on this device")
    model_options(p)
    refine_option(p)
    p.add_argument("--source", metavar="URI", help="frame source (default: synthetic 640x480)")
    p.add_argument("--data", help="images folder (or images+masks) instead of --source")
    p.add_argument("--frames", type=int, default=300, help="frames measured after warm-up")
    p.add_argument("--warmup", type=int, default=10, help="frames run before timing starts")
    p.add_argument("--json", dest="json_out", help="write the full report as JSON")
    p.add_argument("--csv", dest="csv_out", help="write per-stage summaries as CSV")
    p.add_argument("--cpus", type=int, metavar="N",
                   help="pin to N cores (sched_setaffinity) with N TFLite/OpenCV threads")
    option(p, "--target-fps", "loop.target_fps", metavar="FPS")

    p = command("batch", "one run record per archive input (video, image folder, glob, "
                "@list.txt), an index and a manifest; re-runs resume")
    model_options(p)
    refine_option(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--out", required=True, metavar="DIR", help="records, index and manifest")
    p.add_argument("--engine", default="local", choices=tuple(_batch_engines()),
                   help="local: a process pool here; ray: Ray tasks (needs the cluster extra)")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster to join (default: a local Ray)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="inputs processed at once (default: one per core; never more than "
                   "the inputs to do or the cores)")

    p = command("report", "write the HTML report, findings.csv and findings.geojson of a run "
                "record (needs the report extra: matplotlib)")
    p.add_argument("record", metavar="DIR", help="a folder written by rustseg run --record DIR")
    option(p, "--top", "record.report_top", metavar="N")

    p = command("records", "list the run records under a record root: size, duration, "
                "findings, how each run ended (nothing is ever deleted)")
    p.add_argument("root", nargs="?", metavar="DIR", help="record root (default: record.root, "
                   "else service.record_root)")

    p = command("service", "the live loop as a systemd service: install writes and enables "
                "the unit (started at boot, restarted on failure, watched by a watchdog); "
                "status says what it is doing")
    p.add_argument("action", choices=("install", "status"))
    option(p, "--name", "service.name", metavar="NAME")
    option(p, "--source", "service.source", metavar="URI")
    option(p, "--record-root", "service.record_root", metavar="DIR")
    option(p, "--output", "service.output", metavar="URI")
    p.add_argument("--user", help="the user the loop runs as (default: the one who ran sudo)")
    p.add_argument("--root", default="/", metavar="DIR",
                   help="install into this system image instead of / (as systemctl --root)")
    p.add_argument("--now", action="store_true", help="also start it now (systemd running)")

    p = command("config", "print the effective configuration")
    p.add_argument("--show", action="store_true", help="print it as YAML (the default)")
    return parser


def _batch_engines():
    from edge.batch.engines import ENGINES  # imports no Ray: that waits for --engine ray

    return ENGINES


def _common_options(parser: argparse.ArgumentParser, default) -> None:
    """Options every command takes, before or after the command name."""
    parser.add_argument("--config", default=default, metavar="FILE",
                        help="config file holding only the keys it changes, merged over the "
                        "project's config.yaml")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="let FFmpeg, OpenCV and TFLite log lines through")


def _overrides(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if "." in k and v is not None}


class _TerminalFormatter(logging.Formatter):
    """What the library logs, as the terminal shows it: progress as it is, problems named."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"rustseg: error: {message}"
        if record.levelno >= logging.WARNING:
            return f"rustseg: WARNING: {message}"
        return message


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes, not the one it was built with:
    main() may run more than once in one process, each time with its own stderr (tests)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass  # StreamHandler.__init__ sets it; the property decides


def _log_to_stderr() -> None:
    """The library's events (logger `edge`, INFO and up) become lines on stderr; stdout keeps
    the per-frame lines and the final report, so it can be piped."""
    logger = logging.getLogger("edge")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_TerminalFormatter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


@contextmanager
def _stop_on_signals(stop: StopRequest):
    """Around the loop: the first SIGINT/SIGTERM asks it to stop (the frames in flight are
    finished and every output closed); a second SIGINT exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled on the main thread (main() inside a test thread)
        return

    def request_stop(signum, _frame):
        name = signal.Signals(signum).name
        if stop.is_set() and signum == signal.SIGINT:
            print("\nrustseg: second interrupt, exiting now", file=sys.stderr, flush=True)
            os._exit(_EXIT_INTERRUPTED)
        stop.request(StopReason(name))
        print(f"\nrustseg: {name} received; finishing the frames in flight and closing "
              "outputs (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _honour_ctrl_c() -> None:
    """Make SIGINT raise KeyboardInterrupt from the very start, even when this process was
    started with SIGINT ignored. A shell starts background jobs that way (`make test &`,
    `nohup ... &` in a script), and Python then installs no handler of its own, so a SIGINT
    during start-up (a stream that is slow to open) was ignored while the same SIGINT during
    the loop (_stop_on_signals) stopped the run. One behaviour at every point."""
    if threading.current_thread() is threading.main_thread():  # main() inside a test thread
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _honour_ctrl_c()
    # A file name need not be UTF-8: a message holding one must still print (the messages
    # that name files show such bytes as \xNN themselves, edge/untrusted.py `printable`).
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        try:
            defaults = load_config(_config_flag(argv))
        except RustsegError:
            defaults = None  # reported properly below, after --help has had its chance
        args = build_parser(defaults).parse_args(argv)
        native_logs.configure(args.verbose)
        _log_to_stderr()
        config = load_config(args.config, _overrides(args))
        return _dispatch(args, config)
    except BrokenPipeError:
        # The reader of stdout has gone (`| head`): stop quietly, like any Unix filter. Point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return _EXIT_BROKEN_PIPE
    except RustsegError as exc:
        print(f"rustseg: error: {printable(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rustseg: interrupted", file=sys.stderr)
        return _EXIT_INTERRUPTED
    except OSError as exc:  # disk full, permission denied, ... outside any handled spot
        print(f"rustseg: error: {exc.strerror or exc} ({exc.filename or 'no file'})",
              file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one line unless RUSTSEG_DEBUG asks for the traceback
        if os.environ.get("RUSTSEG_DEBUG"):
            raise
        print(f"rustseg: internal error: {type(exc).__name__}: {exc} "
              "(set RUSTSEG_DEBUG=1 for the traceback)", file=sys.stderr)
        return _EXIT_INTERNAL


def _config_flag(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return None


def _dispatch(args: argparse.Namespace, config: Config) -> int:
    handler = {"train": _train, "distill": _distill, "states": _states, "export": _export,
               "eval": _eval, "run": _run, "demo": _demo,
               "report": _write_report, "records": _records, "service": _service,
               "bench": _bench, "batch": _batch, "config": _show_config}[args.command]
    return handler(args, config)


def _require_tensorflow(command: str) -> None:
    """A one-line message instead of an ImportError deep inside converter/ (and edge/ itself
    never imports TensorFlow: this only asks whether it is installed)."""
    try:
        found = importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingDependencyError(
            f"rustseg {command} needs TensorFlow: pip install 'rustseg-edge[train]' "
            "(from a checkout: pip install -e '.[train]')")


def _show_config(args, config: Config) -> int:
    print(config.to_yaml(), end="")
    return 0


def _train(args, config: Config) -> int:
    _require_tensorflow("train")
    from edge import workstation

    metrics = workstation.train(args.data, args.out, args.val, args.tiles_from, config)
    print(f"validation: accuracy {metrics['accuracy']:.4f}  f1 {metrics['f1']:.4f}  "
          f"auc {metrics['auc']:.4f}  (n={metrics['n_images']}); wrote {args.out}.keras")
    return 0


def _distill(args, config: Config) -> int:
    _require_tensorflow("distill")
    from edge import workstation

    metrics = workstation.distill(args.model, args.out, args.data, args.photos_from, args.cache,
                                  config)
    student = metrics["student"]
    print(f"pseudo labels: {student['pseudo_label_data']}; ignored share "
          f"{student['ignored_share']:.3f}; final loss {student['final_loss']:.4f}; wrote "
          f"{Path(args.out).with_suffix('.keras')} (export it to get the seg output)")
    return 0


def _states(args, config: Config) -> int:
    _require_tensorflow("states")
    from edge import workstation

    states = workstation.states(args.model, args.photos_from, args.out, config)["states"]
    measured = states["check_measurements"]
    print(f"state head learnt from tile tags of {states['n_fit_photos']} tune photos; on "
          f"{states['n_check_photos']} check photos: IoU per state (fair, poor, severe) "
          f"{', '.join(f'{v:.3f}' for v in measured['state_iou'])}, thresholds poor "
          f"{states['thresholds']['poor']}, severe {states['thresholds']['severe']}; wrote "
          f"{Path(args.out).with_suffix('.keras')} (export it to get the state output)")
    return 0


def _export(args, config: Config) -> int:
    _require_tensorflow("export")
    from edge import workstation

    report = workstation.export(args.model, args.out, args.rep_data, config)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}")
    if report:
        print(f"fidelity vs reference Grad-CAM++ on {report['n_images']} images: score max diff "
              f"{report['score_max_abs_diff']:.2e}, CAM max diff {report['cam_max_abs_diff']:.2e}, "
              f"CAM correlation min {report['cam_correlation_min']:.4f}, CAM-mask IoU@0.5 mean "
              f"{report['cam_mask_iou_at_0.5_mean']:.3f}")
    return 0


def _eval(args, config: Config) -> int:
    from edge.measure.evaluate import EvalRequest, check_layout, evaluate, format_report
    from edge.method.segment import build_segmenter

    check_layout(args.data)  # a wrong folder fails before the model is even loaded
    check_option_writable(args.json_out, "--json")  # ... and so does an unwritable --json
    segmenter = build_segmenter(config)
    print(f"model {segmenter.model.path} on {segmenter.model.runtime}", file=sys.stderr)
    report = evaluate(segmenter, EvalRequest(args.data, args.json_out, args.split,
                                             config.data.holdout_fraction, args.limit))
    print(format_report(report))
    return 0


def _run(args, config: Config) -> int:
    from edge.live.app import RunRequest, run_loop

    if not (args.output or args.log or args.save_masks or args.record or config.record.root):
        print("rustseg: no --output, --log or --save-masks given; every frame is processed and "
              "the report printed, nothing is kept", file=sys.stderr)
    if args.record and getattr(args, "record.root") is not None:
        raise ConfigError("rustseg run: give --record DIR or --record-root DIR, not both")
    request = RunRequest(args.source, tuple(args.output), args.log, args.save_masks,
                         args.headless, None if args.quiet else sys.stdout, args.record,
                         record_root=config.record.root or None, telemetry=args.telemetry)
    return _report(run_loop(config, request, guard=_stop_on_signals))


def _demo(args, config: Config) -> int:
    from edge.live.app import demo_request, run_loop
    from edge.record.report import write_report

    request = dataclasses.replace(demo_request(config), log=args.log,
                                  save_masks=args.save_masks,
                                  frame_lines=None if args.quiet else sys.stdout)
    code = _report(run_loop(config, request, guard=_stop_on_signals))
    result = write_report(request.record, config.record.report_top)
    print(f"wrote the run record {request.record}; report: {result.html}")
    return code


def _report(report) -> int:
    """Print the report; the exit code says what was kept (see the module docstring)."""
    print(report.format())
    if report.stopped_by is StopReason.OUTPUT_FAILURE:
        return _EXIT_OUTPUT_STOPPED
    if report.lost_outputs:
        return _EXIT_OUTPUT_LOST
    if report.interrupted_by:
        return 128 + signal.Signals[report.interrupted_by.value]
    return 0


def _write_report(args, config: Config) -> int:
    from edge.record.report import write_report

    result = write_report(args.record, config.record.report_top)  # logs positions left out
    ended = "still running (pid {}): the report covers the frames so far, summary.json is " \
            "left to the run".format(result.running_pid) if result.running_pid is not None \
        else result.summary["ended"]
    print(f"report: {printable(result.html)}  ({result.findings} findings, "
          f"{result.positions} with a position; run ended: {ended})")
    return 0


def _records(args, config: Config) -> int:
    from edge.record.catalogue import format_records, list_records

    root = Path(args.root or config.record.root or config.service.record_root)
    print(format_records(list_records(root), root))
    return 0


def _service(args, config: Config) -> int:
    from edge.service import systemd
    from edge.service.unit import UnitSettings

    service = config.service
    if args.action == "status":
        lines, running = systemd.status_lines(service.name, service.record_root, Path(args.root))
        print("\n".join(lines))
        return 0 if running else 3  # as `systemctl status`: 3 = not running
    if not Path(service.record_root).is_absolute():
        raise ConfigError(f"--record-root {service.record_root}: give an absolute path (the "
                          "service does not start in this folder)")
    settings = UnitSettings(systemd.rustseg_command(), service.source, service.record_root,
                            args.user or systemd.default_user(),
                            (service.output,) if service.output else (),
                            str(Path(args.config).resolve()) if args.config else None,
                            service.watchdog_s, service.restart_s)
    for line in systemd.install(systemd.InstallRequest(service.name, settings, Path(args.root),
                                                       args.now)):
        print(line)
    return 0


def _bench(args, config: Config) -> int:
    from edge.measure.bench import BenchRequest, format_bench, run_bench

    if args.source and args.data:
        raise ConfigError("rustseg bench: give --source or --data, not both")
    if args.frames < 1 or args.warmup < 0:
        raise ConfigError("rustseg bench: --frames must be >= 1 and --warmup >= 0")
    check_option_writable(args.json_out, "--json")
    check_option_writable(args.csv_out, "--csv")
    report = run_bench(config, BenchRequest(args.source, args.data, args.frames, args.warmup,
                                            args.json_out, args.csv_out, args.cpus))
    print(format_bench(report))
    return 0


def _batch(args, config: Config) -> int:
    from edge.batch import BatchRequest, run_batch
    result = run_batch(config, BatchRequest(tuple(args.inputs), args.out, args.engine,
                                            args.address, args.workers))
    print(f"{result.format()}; index: {Path(args.out) / 'index.html'}")
    return _EXIT_INTERRUPTED if result.interrupted else result.exit_code


if __name__ == "__main__":
    sys.exit(main())

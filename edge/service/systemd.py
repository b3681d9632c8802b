"""`rustseg service install` and `rustseg service status`: the unit on this machine, through
systemd's own tools (systemctl, systemd-analyze).

install writes NAME.service under ROOT/etc/systemd/system (ROOT is / unless --root names an
image being prepared), checks it with `systemd-analyze verify` where that exists, creates the
record root for the service's user, and enables the unit with `systemctl enable` (which only
links it into multi-user.target, so it also works where systemd is not running, as in a
container or a chroot; it then starts at the next boot). With systemd running, --now starts it.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edge.errors import ConfigError, RustsegError
from edge.record.catalogue import list_records
from edge.service.unit import UnitSettings, render_unit

_UNIT_DIR = Path("etc/systemd/system")
_SYSTEMCTL_TIMEOUT_S = 60


class ServiceError(RustsegError):
    """systemctl or systemd-analyze refused the unit; the message is theirs, in one line."""

    exit_code = 1


@dataclass(frozen=True)
class InstallRequest:
    name: str
    settings: UnitSettings
    root: Path = Path("/")       # install into an image: systemctl --root
    start_now: bool = False


def rustseg_command() -> tuple[str, ...]:
    """How the unit starts this very installation of rustseg: the `rustseg` script beside this
    Python (a venv's bin/), else this Python with `-m edge.cli` (a checkout on PYTHONPATH)."""
    script = Path(sys.executable).with_name("rustseg")
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (sys.executable, "-m", "edge.cli")


def default_user() -> str:
    """The user who ran `sudo rustseg service install`, else the current user."""
    return os.environ.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name


def check_user(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"--user {user}: no such user on this machine") from None


def systemd_running() -> bool:
    """True when systemd is this machine's init (sd_booted: /run/systemd/system exists)."""
    return Path("/run/systemd/system").is_dir()


def unit_path(name: str, root: Path = Path("/")) -> Path:
    return root / _UNIT_DIR / f"{name}.service"


def install(request: InstallRequest) -> list[str]:
    """Write, verify, enable (and with start_now start) the unit; return what was done."""
    account = check_user(request.settings.user)
    path = unit_path(request.name, request.root)
    done = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_unit(request.settings))
    except OSError as exc:
        raise ConfigError(f"service unit {path}: cannot write ({exc.strerror}); run it with "
                          "sudo") from None
    done.append(f"wrote {path}")
    problem = verify_unit(path)
    if problem:
        raise ServiceError(f"systemd-analyze verify {path}: {problem}")
    record_root = request.root / request.settings.record_root.lstrip("/")
    _make_record_root(record_root, account)
    done.append(f"record root {record_root} (owner {account.pw_name})")
    root_flag = [] if request.root == Path("/") else [f"--root={request.root}"]
    if systemd_running() and not root_flag:
        _systemctl("daemon-reload")
    _systemctl(*root_flag, "enable", path.name)
    done.append(f"enabled {path.name}: it starts at boot")
    if request.start_now:
        if not systemd_running() or root_flag:
            done.append("not started now: systemd is not running here")
        else:
            _systemctl("restart", path.name)
            done.append(f"started {path.name}")
    return done


def verify_unit(path: Path) -> str:
    """systemd-analyze verify's complaints about the unit ('' when none, or no such tool)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return ""
    done = subprocess.run([tool, "verify", str(path)], capture_output=True, text=True,
                          timeout=_SYSTEMCTL_TIMEOUT_S)
    # Lines about other units (a target missing in a chroot) are not this unit's problem.
    ours = [line for line in (done.stdout + done.stderr).splitlines()
            if line.strip() and path.name in line]
    return "; ".join(ours) if ours or done.returncode == 0 else \
        (done.stderr.strip().splitlines() or ["failed"])[-1]


def _make_record_root(folder: Path, account: pwd.struct_passwd) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            os.chown(folder, account.pw_uid, account.pw_gid)
    except OSError as exc:
        raise ConfigError(f"--record-root {folder}: cannot create it for {account.pw_name} "
                          f"({exc.strerror})") from None


def _systemctl(*args: str) -> str:
    tool = shutil.which("systemctl")
    if tool is None:
        raise ServiceError("systemctl not found: this machine has no systemd")
    done = subprocess.run([tool, *args], capture_output=True, text=True,
                          timeout=_SYSTEMCTL_TIMEOUT_S)
    if done.returncode != 0:
        message = (done.stderr.strip() or done.stdout.strip() or "failed").splitlines()[-1]
        raise ServiceError(f"systemctl {' '.join(args)}: {message}")
    return done.stdout


# --- status ------------------------------------------------------------------------------------

_SHOWN = ("ActiveState", "SubState", "MainPID", "NRestarts", "StatusText",
          "ExecMainStartTimestamp", "Result")


def status_lines(name: str, fallback_record_root: str, root: Path = Path("/")) -> tuple[list[str], bool]:
    """What the service is doing, in lines for a person, and whether it is running."""
    path = unit_path(name, root)
    if not path.is_file():
        return [f"{name}.service is not installed ({path} does not exist): "
                "rustseg service install"], False
    root_flag = [] if root == Path("/") else [f"--root={root}"]
    enabled = _systemctl_quiet(*root_flag, "is-enabled", path.name) or "unknown"
    lines = [f"{path.name}: {path}, {enabled}" +
             (" (starts at boot)" if enabled == "enabled" else "")]
    running = False
    if systemd_running() and not root_flag:
        show = _properties(path.name)
        running = show.get("ActiveState") == "active"
        lines.append(f"  state: {show.get('ActiveState', '?')} ({show.get('SubState', '?')}), "
                     f"main PID {show.get('MainPID', '?')}, restarts {show.get('NRestarts', '?')}, "
                     f"last result {show.get('Result', '?')}, since "
                     f"{show.get('ExecMainStartTimestamp') or '-'}")
        if show.get("StatusText"):
            lines.append(f"  loop says: {show['StatusText']}")
    else:
        lines.append("  state: not running: systemd is not this machine's init (a container, a "
                     "chroot or an image)" + ("; the unit starts at the next boot"
                                              if enabled == "enabled" else ""))
    record_root = root / (record_root_of(path) or fallback_record_root).lstrip("/")
    lines += _records_lines(record_root)
    lines.append(f"  logs: journalctl -u {path.name}")
    return lines, running


def record_root_of(unit: Path) -> str | None:
    """The --record-root the unit's ExecStart passes (what install wrote), if any."""
    match = re.search(r"^ExecStart=(.*)$", unit.read_text(), re.M)
    if not match:
        return None
    argv = shlex.split(match.group(1).replace("%%", "%").replace("$$", "$"))
    return argv[argv.index("--record-root") + 1] if "--record-root" in argv[:-1] else None


def _records_lines(record_root: Path) -> list[str]:
    if not record_root.is_dir():
        return [f"  records: {record_root} does not exist yet"]
    entries = list_records(record_root)
    free_mb = shutil.disk_usage(record_root).free / 2**20
    lines = [f"  records: {len(entries)} in {record_root}, {free_mb:.0f} MB free there "
             "(rustseg records lists them)"]
    if entries:
        e = entries[-1]
        lines.append(f"  latest: {e.name}: {e.ended}, {e.frames if e.frames is not None else '-'}"
                     f" frames, {e.findings} findings, video {e.video}")
    return lines


def _properties(unit: str) -> dict:
    text = _systemctl_quiet("show", unit, *(f"--property={p}" for p in _SHOWN))
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _systemctl_quiet(*args: str) -> str:
    """systemctl's answer, or '' when it has none (is-enabled of a disabled unit exits 1)."""
    tool = shutil.which("systemctl")
    if tool is None:
        return ""
    done = subprocess.run([tool, *args], capture_output=True, text=True,
                          timeout=_SYSTEMCTL_TIMEOUT_S)
    return done.stdout.strip()

"""Live positions from the autopilot: MAVLink GLOBAL_POSITION_INT and ATTITUDE via pymavlink.

PX4 and ArduPilot stream both to a companion computer over UDP (`udpin:0.0.0.0:14550`: listen
for the autopilot or a router such as mavlink-router) or a serial port (`/dev/ttyAMA0`,
`/dev/ttyUSB0`). A thread reads the link and keeps the messages of the last few seconds, each
with the wall-clock time it arrived. A frame captured at time t takes the newest fix that
arrived at or before t, only when it is at most `max_age_s` old: a stale fix (the link dropped,
the autopilot stopped sending) leaves the frame without a position, and it is said why.
"""

from __future__ import annotations

import collections
import logging
import math
import re
import threading
import time

from edge.errors import ConfigError, MissingDependencyError, SourceError
from edge.uris import TELEMETRY_FORMS, forms_list

_log = logging.getLogger(__name__)
_NETWORK_KINDS = ("udpin", "udpout", "udp", "udpbcast", "tcp", "tcpin")
_SERIAL = re.compile(r"^(/dev/\S+|COM\d+)$")
_KEPT_S = 5.0                   # history kept per message kind (frames wait in queues a while)
_READ_TIMEOUT_S = 0.25          # how often the reader thread checks for close()
_MESSAGES = ["GLOBAL_POSITION_INT", "ATTITUDE"]


def check_telemetry_uri(uri: str) -> str:
    """`udpin:HOST:PORT` (and pymavlink's other network kinds) or a serial device path;
    ConfigError (one line) otherwise."""
    uri = uri.strip()
    kind, _, rest = uri.partition(":")
    if kind in _NETWORK_KINDS:
        host, _, port = rest.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return uri
    elif _SERIAL.match(uri):
        return uri
    raise ConfigError(f"--telemetry {uri!r}: expected {forms_list(TELEMETRY_FORMS)}")


def _mavutil():
    try:
        from pymavlink import mavutil
    except ImportError:
        raise MissingDependencyError("--telemetry needs pymavlink: pip install "
                                     "'rustseg-edge[mavlink]' (or pip install pymavlink)") \
            from None
    return mavutil


class MavlinkTelemetry:
    """Context manager: opens the link, reads it on a thread, closes it on exit."""

    def __init__(self, uri: str, max_age_s: float, baud: int = 57600) -> None:
        self.uri, self.max_age_s = check_telemetry_uri(uri), max_age_s
        mavutil = _mavutil()
        try:
            self._link = mavutil.mavlink_connection(self.uri, baud=baud, autoreconnect=True)
        except Exception as exc:  # pymavlink raises OSError, serial's errors, ValueError ...
            raise SourceError(f"--telemetry {self.uri}: cannot open ({_one_line(exc)})") \
                from None
        self._lock = threading.Lock()
        self._positions: collections.deque = collections.deque()   # (arrived_at, fix)
        self._attitudes: collections.deque = collections.deque()   # (arrived_at, attitude)
        self.received = 0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read_loop, name="mavlink", daemon=True)
        self._thread.start()

    def __enter__(self) -> "MavlinkTelemetry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join(timeout=2 * _READ_TIMEOUT_S + 1.0)
        try:
            self._link.close()
        except OSError:
            pass  # the link is gone either way

    def position_at(self, captured_at: float) -> tuple[dict | None, str | None]:
        """The position of a frame captured at `captured_at` (time.time()), or None and why."""
        with self._lock:
            fix = _newest_before(self._positions, captured_at)
            attitude = _newest_before(self._attitudes, captured_at)
        if fix is None:
            return None, f"no MAVLink position from {self.uri} yet"
        arrived_at, position = fix
        age = captured_at - arrived_at
        if age > self.max_age_s:
            return None, f"MAVLink position stale: newest is {age:.1f} s old " \
                         f"(telemetry.max_age_s {self.max_age_s:g})"
        fresh_attitude = attitude[1] if attitude and \
            captured_at - attitude[0] <= self.max_age_s else None
        return {**position, "attitude": fresh_attitude, "age_s": round(age, 3)}, None

    def _read_loop(self) -> None:
        while not self._closed.is_set():
            try:
                message = self._link.recv_match(type=_MESSAGES, blocking=True,
                                                timeout=_READ_TIMEOUT_S)
            except Exception as exc:  # a serial port unplugged, a socket error: keep trying
                _log.warning("telemetry %s: read failed (%s)", self.uri, _one_line(exc))
                self._closed.wait(_READ_TIMEOUT_S)
                continue
            if message is not None:
                self._take(message, time.time())

    def _take(self, message, arrived_at: float) -> None:
        kind = message.get_type()
        if kind == "GLOBAL_POSITION_INT":
            if message.lat == 0 and message.lon == 0:
                return  # autopilots send zeros before the GPS has a fix
            item = {"lat": message.lat / 1e7, "lon": message.lon / 1e7,
                    "alt": message.alt / 1000.0, "rel_alt": message.relative_alt / 1000.0,
                    "gimbal": None, "source": "mavlink"}
            history = self._positions
        else:
            item = {"roll": math.degrees(message.roll), "pitch": math.degrees(message.pitch),
                    "yaw": math.degrees(message.yaw)}
            history = self._attitudes
        with self._lock:
            history.append((arrived_at, item))
            while history and arrived_at - history[0][0] > _KEPT_S:
                history.popleft()
            self.received += 1


def _newest_before(history, t: float):
    """The newest (arrived_at, item) that arrived at or before `t`, or None."""
    for entry in reversed(history):
        if entry[0] <= t:
            return entry
    return None


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

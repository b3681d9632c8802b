"""Positions from the .SRT subtitle file DJI drones write beside each video (same stem).

Each cue covers one frame (newer models) or one second (older ones) and carries the drone's
fix as text. Two layouts are common, and both are read:

    [latitude: 52.123456] [longitude: 4.654321] [rel_alt: 35.200 abs_alt: 62.480]
    [gb_yaw: 12.3 gb_pitch: -45.0 gb_roll: 0.0]            (Mini, Air 2/2S, Mavic 3, ...)

    GPS(4.654321,52.123456,62) BAROMETER:35.2               (Phantom 4, Mavic Pro; lon first)

The file is parsed with the `srt` library; the fields inside each cue with the regular
expressions below. A frame at video time t takes the cue that covers t. Between two cues no
more than `max_gap_s` apart it takes their linear blend (flagged `interpolated`); otherwise,
and before the first or after the last cue, it has no position. A cue whose fix is absent,
(0, 0) (DJI writes that without GPS lock) or out of range gives no position either.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from pathlib import Path

from edge.errors import DataError, MissingDependencyError

SIDECAR_SUFFIXES = (".SRT", ".srt")
_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_TAG = re.compile(r"<[^>]+>")
_KEY_VALUE = re.compile(rf"(\w+)\s*:\s*({_NUMBER})")          # [latitude: 52.1] rel_alt: 35
_GPS_TUPLE = re.compile(rf"GPS\s*\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*(?:,\s*({_NUMBER})\s*)?\)")
_HEIGHT = re.compile(rf"(?:BAROMETER\s*:\s*|\bH\s+)({_NUMBER})")   # Phantom / Mavic 2 height
_LONGITUDE_KEYS = ("longitude", "longtitude")                  # some firmware spells it so
_TIMING_LINE = re.compile(r"\d+:\d+[:,.]\S*\s*-->")
_LATITUDE = re.compile(r"latitude\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    fix: dict | None       # the position dict (see the package docstring), None: no fix


def sidecar_for(video: Path) -> Path | None:
    """The DJI .SRT beside `video` (same stem), or None."""
    for suffix in SIDECAR_SUFFIXES:
        candidate = video.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def parse_cue_text(text: str) -> dict | None:
    """The position in one cue's text, or None when it holds no valid fix."""
    text = _TAG.sub(" ", text)
    values = {key.lower(): float(value) for key, value in _KEY_VALUE.findall(text)}
    lon_key = next((k for k in _LONGITUDE_KEYS if k in values), None)
    alt = rel_alt = None
    if "latitude" in values and lon_key:
        lat, lon = values["latitude"], values[lon_key]
        alt, rel_alt = values.get("abs_alt"), values.get("rel_alt")
    else:
        match = _GPS_TUPLE.search(text)
        if match is None:
            return None
        lon, lat = float(match.group(1)), float(match.group(2))
        alt = float(match.group(3)) if match.group(3) is not None else None
        height = _HEIGHT.search(text)
        rel_alt = float(height.group(1)) if height else None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0) or (lat == 0.0 and lon == 0.0):
        return None
    gimbal = {name: values[f"gb_{name}"] for name in ("pitch", "yaw", "roll")
              if f"gb_{name}" in values}
    return {"lat": lat, "lon": lon, "alt": alt, "rel_alt": rel_alt,
            "gimbal": gimbal or None, "source": "srt"}


def _srt_library():
    try:
        import srt
    except ImportError:
        raise MissingDependencyError("reading DJI .SRT positions needs srt: pip install "
                                     "'rustseg-edge[edge]' (or pip install srt)") from None
    return srt


class SrtTrack:
    """The fixes of one .SRT file by time; `position_at(t)` -> (position or None, reason)."""

    def __init__(self, path: Path, cues: list[Cue], max_gap_s: float) -> None:
        self.path, self.cues, self.max_gap_s = path, cues, max_gap_s
        self._starts = [cue.start_s for cue in cues]

    @classmethod
    def read(cls, path: Path, max_gap_s: float) -> "SrtTrack":
        """Parse `path`; DataError (one line, naming the file) when it is not a usable SRT."""
        srt = _srt_library()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise DataError(f"telemetry {path}: cannot read ({exc.strerror})") from None
        except UnicodeDecodeError:
            raise DataError(f"telemetry {path}: not a text file; expected a DJI .SRT "
                            "subtitle file") from None
        try:
            subtitles = list(srt.parse(text))
        except srt.SRTParseError as exc:
            where = text[:exc.expected_start].count("\n") + 1
            raise DataError(f"telemetry {path}: not a valid SRT file (line {where}); fix or "
                            "remove it, or the video's findings get no position") from None
        for number, subtitle in enumerate(subtitles, start=1):
            _check_one_cue(path, number, subtitle.content)
        cues = sorted((Cue(s.start.total_seconds(), s.end.total_seconds(),
                           parse_cue_text(s.content)) for s in subtitles),
                      key=lambda cue: cue.start_s)
        if not cues:
            raise DataError(f"telemetry {path}: the SRT file holds no cue")
        if not any(cue.fix for cue in cues):
            raise DataError(f"telemetry {path}: no cue holds a DJI position ([latitude: ...] "
                            "[longitude: ...] or GPS(lon,lat,alt)); rename it if it is not "
                            "the drone's telemetry")
        return cls(path, cues, max_gap_s)

    @property
    def end_s(self) -> float:
        return self.cues[-1].end_s

    def position_at(self, t_s: float) -> tuple[dict | None, str | None]:
        i = bisect.bisect_right(self._starts, t_s) - 1
        if i < 0:
            return None, f"before the first SRT cue ({self.cues[0].start_s:.3f} s)"
        cue = self.cues[i]
        if t_s < cue.end_s:
            return (cue.fix, None) if cue.fix else (None, f"SRT cue {i + 1} has no GPS fix")
        if i + 1 == len(self.cues):
            return None, f"after the last SRT cue (it ends at {cue.end_s:.3f} s)"
        after = self.cues[i + 1]
        gap = after.start_s - cue.end_s
        if gap > self.max_gap_s:
            return None, f"in a {gap:.2f} s gap between SRT cues {i + 1} and {i + 2}"
        if not (cue.fix and after.fix):
            return None, f"between SRT cues {i + 1} and {i + 2}, one without a GPS fix"
        return _blend(cue.fix, after.fix, (t_s - cue.end_s) / gap if gap > 0 else 0.0), None


def _check_one_cue(path: Path, number: int, content: str) -> None:
    """DataError when a cue's text holds what belongs to another cue. The srt library folds
    a cue whose timing line is broken into the cue before it, so that cue would otherwise
    read the next cue's fix as its own: a wrong position."""
    if _TIMING_LINE.search(content) or len(_LATITUDE.findall(content)) > 1 or \
            len(_GPS_TUPLE.findall(content)) > 1:
        raise DataError(f"telemetry {path}: SRT cue {number} runs into the next one (a broken "
                        "timing line?); fix or remove the file, or the video's findings get "
                        "no position")


def _blend(a: dict, b: dict, w: float) -> dict:
    """Linear blend of two fixes a fraction `w` of the way from a to b (a gap of under a second
    at drone speeds, where a straight line is exact to centimetres)."""
    def mix(x, y):
        return None if x is None or y is None else x + (y - x) * w
    return {"lat": mix(a["lat"], b["lat"]), "lon": mix(a["lon"], b["lon"]),
            "alt": mix(a["alt"], b["alt"]), "rel_alt": mix(a["rel_alt"], b["rel_alt"]),
            "gimbal": (a if w < 0.5 else b)["gimbal"], "source": "srt", "interpolated": True}

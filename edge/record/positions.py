"""Where a still photo was taken: GPS from EXIF, gimbal angles from DJI's XMP, via exifread.

Drone cameras (DJI and most others) write latitude, longitude and altitude in the EXIF GPS
IFD as degree/minute/second rationals with N/S, E/W and above/below-sea-level references;
DJI adds the gimbal's pitch, yaw and roll as `drone-dji:Gimbal*Degree` in the photo's XMP.
exifread reads both (the XMP packet as text, which the standard XML parser then reads).
A photo without them has no position, which is not an error. A position that is not on
Earth (latitude beyond +-90, longitude beyond +-180, minutes or seconds of 60 or more, a
missing or unknown N/S/E/W reference, NaN or infinity) is dropped with a warning: a wrong
point on a map is worse than none. `geojson_position` is that rule, applied again by the
report to whatever a record holds, so findings.geojson is valid RFC 7946 whatever wrote it.
"""

from __future__ import annotations

import logging
import math
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from edge.errors import MissingDependencyError
from edge.untrusted import printable

_DJI_NS = "{http://www.dji.com/drone-dji/1.0/}"
_GIMBAL_KEYS = {"pitch": "GimbalPitchDegree", "yaw": "GimbalYawDegree",
                "roll": "GimbalRollDegree"}
_HEMISPHERES = {"GPS GPSLatitudeRef": ("N", "S"), "GPS GPSLongitudeRef": ("E", "W")}
_RANGES = {"lat": 90.0, "lon": 180.0}   # |degrees| allowed (RFC 7946 section 3.1.1, WGS 84)

_log = logging.getLogger(__name__)


class _BadPosition(ValueError):
    """A GPS field that is present but not a position on Earth."""


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def geojson_position(position: dict) -> tuple[dict | None, str | None]:
    """(the position cleaned for GeoJSON, None) or (None, why it is not a valid position).
    Latitude and longitude must be finite and in range; a non-finite altitude or gimbal angle
    is left out (the point stays)."""
    for key, limit in _RANGES.items():
        value = position.get(key)
        if not _finite(value):
            return None, f"{key} {value!r} is not a finite number"
        if abs(value) > limit:
            return None, f"{key} {value} is outside -{limit:g}..{limit:g}"
    alt = position.get("alt")
    gimbal = position.get("gimbal") or {}
    clean_gimbal = {k: v for k, v in gimbal.items() if _finite(v)} if isinstance(gimbal, dict) \
        else {}
    # Other keys (source, ...) are kept: the footprint and the GeoJSON use them; a non-finite
    # height above take-off is unknown, so no footprint is made from it.
    rel_alt = position.get("rel_alt")
    return {**position, "lat": position["lat"], "lon": position["lon"],
            "alt": alt if _finite(alt) else None, "gimbal": clean_gimbal or None,
            **({"rel_alt": rel_alt if _finite(rel_alt) else None} if "rel_alt" in position
               else {})}, None


def _exifread():
    try:
        import exifread
    except ImportError:
        raise MissingDependencyError("reading photo positions needs exifread: pip install "
                                     "'rustseg-edge[edge]' (or pip install exifread)") from None
    logging.getLogger("exifread").setLevel(logging.ERROR)  # it warns on every odd maker note
    return exifread


def read_position(path: Path) -> dict | None:
    """{"lat", "lon", "alt", "gimbal"} of a photo (degrees, metres above sea level, gimbal
    degrees or None), or None when it carries no GPS fix. Unreadable metadata is no position."""
    exifread = _exifread()
    try:
        with open(path, "rb") as file:
            # debug=True is what makes exifread collect the XMP packet (its "experimental" XMP)
            tags = exifread.process_file(file, details=True, debug=True)
    except (OSError, ValueError, KeyError, IndexError, TypeError, struct.error):
        return None  # unreadable or corrupt metadata: no position
    if "GPS GPSLatitude" not in tags or "GPS GPSLongitude" not in tags:
        return None  # no fix: not an error
    try:
        lat = _degrees(tags, "GPS GPSLatitude", "GPS GPSLatitudeRef")
        lon = _degrees(tags, "GPS GPSLongitude", "GPS GPSLongitudeRef")
        position, problem = geojson_position({"lat": lat, "lon": lon, "alt": _altitude(tags),
                                              "gimbal": _gimbal(tags)})
        if problem:
            raise _BadPosition(problem)
    except _BadPosition as exc:
        _log.warning("photo %s: GPS position dropped: %s", printable(path), exc)
        return None
    return position


def _degrees(tags: dict, key: str, ref_key: str) -> float:
    """Signed decimal degrees from EXIF's degrees, minutes, seconds and N/S or E/W."""
    tag = tags.get(key)
    if len(tag.values) != 3:
        raise _BadPosition(f"{key} has {len(tag.values)} values, expected 3")
    try:
        d, m, s = (float(v) for v in tag.values)
    except (ZeroDivisionError, ValueError, TypeError):
        raise _BadPosition(f"{key} is not a number") from None
    if not all(math.isfinite(v) and v >= 0 for v in (d, m, s)) or m >= 60 or s >= 60:
        raise _BadPosition(f"{key} {d:g} deg {m:g}' {s:g}\" is not degrees, minutes < 60 and "
                           "seconds < 60")
    ref = str(tags.get(ref_key, "")).strip().upper()
    positive, negative = _HEMISPHERES[ref_key]
    if ref not in (positive, negative):
        raise _BadPosition(f"{ref_key} {ref or '(missing)'!r} is not {positive} or {negative}")
    value = d + m / 60.0 + s / 3600.0
    return -value if ref == negative else value


def _altitude(tags: dict) -> float | None:
    tag = tags.get("GPS GPSAltitude")
    if tag is None or not tag.values:
        return None
    try:
        value = float(tag.values[0])
    except (ZeroDivisionError, ValueError, TypeError):
        return None
    ref = tags.get("GPS GPSAltitudeRef")
    below_sea = ref is not None and ref.values and int(ref.values[0]) == 1
    return -value if below_sea else value


def _gimbal(tags: dict) -> dict | None:
    """DJI gimbal angles from the XMP packet, or None when the photo has none."""
    xmp = tags.get("Image ApplicationNotes")
    if xmp is None:
        return None
    try:
        root = ElementTree.fromstring(bytes(xmp.values))
    except (ElementTree.ParseError, TypeError, ValueError):
        return None
    found: dict[str, float] = {}
    for element in root.iter():
        for name, key in _GIMBAL_KEYS.items():
            text = element.attrib.get(_DJI_NS + key)
            if text is None and element.tag == _DJI_NS + key:
                text = element.text
            if text is not None and name not in found:
                try:
                    value = float(text)
                except ValueError:
                    continue
                if math.isfinite(value):  # "NaN" and "inf" parse, but are not angles
                    found[name] = value
    return found or None

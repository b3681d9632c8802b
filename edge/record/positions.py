"""Where a still photo was taken: GPS from EXIF, gimbal angles from DJI's XMP, via exifread.

Drone cameras (DJI and most others) write latitude, longitude and altitude in the EXIF GPS
IFD as degree/minute/second rationals with N/S, E/W and above/below-sea-level references;
DJI adds the gimbal's pitch, yaw and roll as `drone-dji:Gimbal*Degree` in the photo's XMP.
exifread reads both (the XMP packet as text, which the standard XML parser then reads).
A photo without them has no position, which is not an error.
"""

from __future__ import annotations

import logging
import struct
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from edge.errors import MissingDependencyError

_DJI_NS = "{http://www.dji.com/drone-dji/1.0/}"
_GIMBAL_KEYS = {"pitch": "GimbalPitchDegree", "yaw": "GimbalYawDegree",
                "roll": "GimbalRollDegree"}


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
    lat = _degrees(tags, "GPS GPSLatitude", "GPS GPSLatitudeRef", "S")
    lon = _degrees(tags, "GPS GPSLongitude", "GPS GPSLongitudeRef", "W")
    if lat is None or lon is None:
        return None
    return {"lat": lat, "lon": lon, "alt": _altitude(tags), "gimbal": _gimbal(tags)}


def _degrees(tags: dict, key: str, ref_key: str, negative_ref: str) -> float | None:
    tag = tags.get(key)
    if tag is None or len(tag.values) != 3:
        return None
    try:
        d, m, s = (float(v) for v in tag.values)
    except (ZeroDivisionError, ValueError, TypeError):
        return None
    value = d + m / 60.0 + s / 3600.0
    ref = str(tags.get(ref_key, "")).strip().upper()
    return -value if ref == negative_ref else value


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
                    found[name] = float(text)
                except ValueError:
                    pass
    return found or None

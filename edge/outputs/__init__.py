"""Outputs behind one interface: every sink gets every finished frame through `write`.

    display://0          an OpenCV window (q or Esc stops the run)
    out.mp4 / out.avi    a video file of the overlay (closed properly on Ctrl-C / SIGTERM)
    dir/                 one overlay JPEG per frame
    http://HOST:PORT     the inspector's live page (edge/console/server.py)
    rtp://HOST:PORT      H.264 over RTP/UDP, with an SDP file (edge/outputs/stream.py)
    udp://HOST:PORT      H.264 in MPEG-TS over UDP (edge/outputs/stream.py)
    --log frames.jsonl   one JSON record per frame, flushed as it goes
    --save-masks DIR     one binary PNG mask per frame (named after the image for image sources)

Building a sink checks that it can write (and fails at start with the OS's reason) but writes
nothing: `start()` does the first write (the log is truncated there), after the run has checked
with `writes_to` that no output would replace a source file. A sink raises SinkError when it
cannot write; the loop then applies loop.sink_error_policy (drop that sink and go on, or stop
cleanly).

The http sink is the live console, which sits above this package (it is a FrameSink and serves
the console's page): `open_output` checks an http URI here and builds the sink with the
`http_sink` constructor its caller passes in (edge/live/app.py passes
`edge.console.server.HttpFeedSink.from_uri`), so nothing here imports the console.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from edge.errors import SinkError
from edge.outputs.base import FrameSink, OutputFrame, write_image
from edge.outputs.display import DisplaySink, display_available
from edge.outputs.files import (VIDEO_CODECS, ImageFolderSink, JsonlLogSink, MaskFolderSink,
                                VideoFileSink)
from edge.outputs.registry import OUTPUT_EXAMPLES, OUTPUT_SCHEMES

__all__ = ["DisplaySink", "FrameSink", "HttpAddress", "ImageFolderSink", "JsonlLogSink",
           "MaskFolderSink", "OutputFrame", "VideoFileSink", "display_available", "open_output",
           "parse_http_uri", "write_image"]


@dataclass(frozen=True)
class HttpAddress:
    """Where an http:// output listens and the token it asks for (empty: none)."""

    host: str
    port: int
    token: str


def parse_http_uri(uri: str, settings) -> HttpAddress:
    """`http://HOST:PORT` checked and completed from the http settings; SinkError (one line)
    for a path, a query or a bad port."""
    parsed = urlparse(uri)
    if parsed.path not in ("", "/") or parsed.query:
        raise SinkError(f"output {uri}: expected http://HOST:PORT with no path")
    try:
        port = parsed.port if parsed.port is not None else settings.port
    except ValueError:
        raise SinkError(f"output {uri}: the port must be a number 0..65535") from None
    host = parsed.hostname or settings.host
    # An empty RUSTSEG_TOKEN= is unset, not "no token": it must not switch the config's off.
    token = os.environ.get("RUSTSEG_TOKEN") or settings.token
    return HttpAddress(host, port, token)


def open_output(uri: str, fps: float, http_settings=None, headless: bool = False,
                overlay=None, http_sink: Callable[..., FrameSink] | None = None,
                stream_settings=None) -> FrameSink:
    """The sink an --output URI names; SinkError (one line) for anything malformed.

    An http:// URI is checked here and built by `http_sink(uri, http_settings, overlay)`
    (the console's HttpFeedSink.from_uri, passed in by the live app). rtp:// and udp://
    streams take `stream_settings` (the config's `stream` section)."""
    uri = str(uri).strip()
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower() if len(parsed.scheme) > 1 else ""
    if scheme and scheme not in OUTPUT_SCHEMES + ("https",):
        raise SinkError(f"output {uri!r}: unknown scheme {scheme}://; expected one of "
                        f"{OUTPUT_EXAMPLES}")
    if scheme == "display":
        if headless:
            raise SinkError("output display:// cannot be used with --headless")
        return DisplaySink()
    if scheme in ("http", "https"):
        if scheme == "https":
            raise SinkError(f"output {uri}: https is not served; use http:// behind a TLS proxy")
        parse_http_uri(uri, http_settings)  # a bad URI fails the same with or without a console
        if http_sink is None:
            raise SinkError(f"output {uri}: the live console is not available here")
        return http_sink(uri, http_settings, overlay)
    if scheme in ("rtp", "udp"):
        from edge.outputs.stream import H264StreamSink  # PyAV is loaded only for a stream
        return H264StreamSink(uri, fps, stream_settings)
    if not uri:
        raise SinkError(f"output is empty; expected one of {OUTPUT_EXAMPLES}")
    path = Path(uri).expanduser()
    if path.suffix.lower() in VIDEO_CODECS:
        return VideoFileSink(path, fps)
    if uri.endswith(("/", os.sep)) or path.is_dir() or not path.suffix:
        return ImageFolderSink(path)
    raise SinkError(f"output {uri}: unsupported file type {path.suffix}; expected .mp4, .avi, "
                    "a folder/ or a URI")

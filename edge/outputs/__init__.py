"""Outputs behind one interface: every sink gets every finished frame through `write`.

The URI forms are listed once, in edge/uris.py `OUTPUT_FORMS`; besides them a run may have
`--log frames.jsonl` (one JSON record per frame, flushed as it goes), `--save-masks DIR` (one
binary PNG mask per frame) and the terminal's per-frame line (`FrameLineSink`).

Building a sink checks that it can write (and fails at start with the OS's reason) but writes
nothing: `start()` does the first write (the log is truncated there), after the run has checked
with `writes_to` that no output would replace a source file. A sink raises SinkError when it
cannot write; the loop then applies loop.sink_error_policy (drop that sink and go on, or stop
cleanly).

The http sink is the live console, which sits above this package (it is a FrameSink and serves
the console's page): `open_output` checks an http URI here and builds the sink with the
`http_sink(uri)` constructor its caller passes in, with the caller's settings bound
(edge/live/app.py binds `edge.console.server.HttpFeedSink.from_uri` to the config's `http` and
`overlay`), so nothing here imports the console or reads config.yaml.
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
from edge.outputs.files import (VIDEO_CODECS, FrameLineSink, ImageFolderSink, JsonlLogSink,
                                MaskFolderSink, VideoFileSink)
from edge.outputs.frame_record import FrameRecord
from edge.uris import OUTPUT_FORMS, forms_list

__all__ = ["DisplaySink", "FrameLineSink", "FrameRecord", "FrameSink", "HttpAddress",
           "ImageFolderSink", "JsonlLogSink", "MaskFolderSink", "OutputFrame", "VideoFileSink",
           "display_available", "open_output", "parse_http_uri", "write_image"]

_EXPECTED = f"expected {forms_list(OUTPUT_FORMS)}"


@dataclass(frozen=True)
class HttpAddress:
    """Where an http:// output listens and the token it asks for (empty: none)."""

    host: str
    port: int | None         # None: neither the URI nor the settings name one
    token: str


def parse_http_uri(uri: str, settings=None) -> HttpAddress:
    """`http://HOST:PORT` checked and, given the http settings (config `http`), completed from
    them; SinkError (one line) for a path, a query or a bad port."""
    parsed = urlparse(uri)
    if parsed.path not in ("", "/") or parsed.query:
        raise SinkError(f"output {uri}: expected http://HOST:PORT with no path")
    try:
        port = parsed.port
    except ValueError:
        raise SinkError(f"output {uri}: the port must be a number 0..65535") from None
    host = parsed.hostname or (settings.host if settings is not None else "")
    if port is None and settings is not None:
        port = settings.port
    # An empty RUSTSEG_TOKEN= is unset, not "no token": it must not switch the config's off.
    token = os.environ.get("RUSTSEG_TOKEN") or (settings.token if settings is not None else "")
    return HttpAddress(host, port, token)


def open_output(uri: str, fps: float, headless: bool = False,
                http_sink: Callable[[str], FrameSink] | None = None,
                stream_settings=None) -> FrameSink:
    """The sink an --output URI names; SinkError (one line) for anything malformed.

    An http:// URI is checked here and built by `http_sink(uri)`, the console's constructor
    with the caller's settings bound; without one it is refused in one line. rtp:// and udp://
    streams take `stream_settings` (the config's `stream` section), likewise refused without."""
    uri = str(uri).strip()
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower() if len(parsed.scheme) > 1 else ""
    if scheme == "display":
        if headless:
            raise SinkError("output display:// cannot be used with --headless")
        return DisplaySink()
    if scheme in ("http", "https"):
        if scheme == "https":
            raise SinkError(f"output {uri}: https is not served; use http:// behind a TLS proxy")
        parse_http_uri(uri)  # a bad URI fails the same with or without a console
        if http_sink is None:
            raise SinkError(f"output {uri}: the live console is not available here (the "
                            "caller gave no http sink)")
        return http_sink(uri)
    if scheme in ("rtp", "udp"):
        if stream_settings is None:
            raise SinkError(f"output {uri}: streams are not available here (the caller gave "
                            "no stream settings)")
        from edge.outputs.stream import H264StreamSink  # PyAV is loaded only for a stream
        return H264StreamSink(uri, fps, stream_settings)
    if scheme:
        raise SinkError(f"output {uri!r}: unknown scheme {scheme}://; {_EXPECTED}")
    if not uri:
        raise SinkError(f"output is empty; {_EXPECTED}")
    path = Path(uri).expanduser()
    if path.suffix.lower() in VIDEO_CODECS:
        return VideoFileSink(path, fps)
    if uri.endswith(("/", os.sep)) or path.is_dir() or not path.suffix:
        return ImageFolderSink(path)
    raise SinkError(f"output {uri}: unsupported file type {path.suffix}; {_EXPECTED}")

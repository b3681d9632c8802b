"""`http://HOST:PORT`: the inspector's live page, an MJPEG stream and live stats.

Routes (nothing else is served, no paths from the request reach the file system):
    /             the live console (edge/console/page.py): stream, numbers, chart, findings
    /static/console.js, /static/console.css   its script and style (package files)
    /stream.mjpg  multipart MJPEG of the overlay
    /stats.json   the latest frame record, the HUD's rolling FPS, the recent findings and the
                  run's notices (the record's video stopped at the card's free-space reserve)
    /finding.jpg  ?id=FRAME&size=thumb|full: one of the recent findings (edge/console/live_findings.py)
Every route checks the access token when one is set (`?token=` or `Authorization: Bearer`;
a non-ASCII token works in both: the query is percent-encoded UTF-8, and the header's raw
bytes, which http.server hands over as Latin-1 text, are compared as the token's UTF-8 bytes,
which is what curl and other clients send).

The loop only hands over the newest overlay (`write` stores a reference and returns); one
encoder thread turns it into JPEG once, and each viewer's thread sends the newest JPEG when it
can. A slow or stalled viewer therefore only misses frames, it never slows the loop, and
viewers beyond http.max_clients get 503.

Connections are bounded too, so that clients that have not (yet) shown the token cannot lock
the token holder out (slowloris):
- the whole request head (request line, headers and any small body) must arrive within
  _HEAD_DEADLINE_S of the request's start, however slowly it trickles in; a body is read and
  discarded by its Content-Length (or the connection is closed), never parsed as a request;
- a connection still sending its head is "pending": at most 2 x max_clients are pending,
  and when they are all taken a new connection ends the pending one that has waited longest
  (a client that sends its head at once, as the token holder's browser does, is through in
  milliseconds, so slow clients cannot keep it out);
- a request whose head has arrived and carries the token (or any, when no token is set)
  moves its connection to the served ones, at most 2 x max_clients (a viewer holds a stream
  and a stats connection); a request without the token gets 401 and its connection closes;
- one client address holds at most http.max_per_address connections, pending or served;
  more are answered 503 and closed without a thread.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import socket
import sys
import threading
import time
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import cv2

from edge.config import OverlayConfig
from edge.console.live_findings import SIZES, RecentFindings
from edge.console.page import STATIC_ROUTES, render_page, static_file
from edge.errors import SinkError
from edge.outputs import FrameSink, OutputFrame, parse_http_uri

_BOUNDARY = "rustsegframe"
_CLIENT_WAIT_S = 1.0       # a viewer re-checks for shutdown at least this often
_SEND_TIMEOUT_S = 5.0      # a viewer that cannot take a frame for this long is dropped
_HEAD_DEADLINE_S = 5.0     # a request's head (and small body) must have arrived by then
_MAX_BODY_BYTES = 64 * 1024   # a body up to this is read and dropped; a larger one closes
_STALE_AFTER_S = 2.0       # the page says STALE when no frame came for this long
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 18\r\nConnection: close\r\n\r\ntoo many viewers\r\n")

_EXPOSED_WARNING = ("this page is served on {host} with no access token: anyone on the "
                    "network can watch (set RUSTSEG_TOKEN or http.token)")

def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that resolves elsewhere: treat it as exposed


class _LatestJpeg:
    """The newest overlay, encoded to JPEG once by one thread, waited on by every viewer."""

    def __init__(self, quality: int) -> None:
        self.quality = quality
        self.condition = threading.Condition()
        self.pending = None          # newest overlay not yet encoded
        self.jpeg: bytes | None = None
        self.sequence = 0
        self.closed = False
        self.thread = threading.Thread(target=self._encode_loop, name="mjpeg encoder",
                                       daemon=True)
        self.thread.start()

    def offer(self, image) -> None:
        with self.condition:
            self.pending = image
            self.condition.notify_all()

    def wait_newer(self, seen: int, timeout: float) -> tuple[int, bytes | None]:
        with self.condition:
            if self.sequence == seen and not self.closed:
                self.condition.wait(timeout)
            return self.sequence, self.jpeg

    def close(self) -> None:
        with self.condition:
            self.closed = True
            self.condition.notify_all()
        self.thread.join(timeout=2.0)

    def _encode_loop(self) -> None:
        while True:
            with self.condition:
                while self.pending is None and not self.closed:
                    self.condition.wait()
                if self.closed:
                    return
                image, self.pending = self.pending, None
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if ok:
                with self.condition:
                    self.jpeg, self.sequence = encoded.tobytes(), self.sequence + 1
                    self.condition.notify_all()


class _FeedServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's backlog of 5 leaves a burst of connections half-open in the kernel, out
    # of reach of the caps below; a deeper queue lets the caps see (and refuse) them at once.
    request_queue_size = 128

    def __init__(self, address, feed: "HttpFeedSink", max_connections: int,
                 max_per_address: int) -> None:
        self.feed = feed
        self.max_connections = max_connections   # served, and apart from them pending
        self.max_per_address = max_per_address
        # Accepted and not yet closed, by client address. A connection is pending (its head
        # has not arrived with the token) or served; `pending` keeps accept order.
        self.addresses: dict = {}
        self.pending: dict = {}
        self.served: set = set()
        self.per_address: Counter = Counter()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def verify_request(self, request, client_address) -> bool:
        # Runs in the accept thread, before a handler thread exists: the caps bound threads.
        address = client_address[0]
        evicted = None
        with self.connections_lock:
            if self.per_address[address] < self.max_per_address:
                if len(self.pending) >= self.max_connections:
                    evicted = next(iter(self.pending))  # the longest wait: the slowest head
                    self._forget(evicted)
                self.addresses[request] = address
                self.per_address[address] += 1
                self.pending[request] = address
                admitted = True
            else:
                admitted = False
        if evicted is not None:
            _hang_up(evicted)  # its thread sees the end of the stream and finishes
        if not admitted:
            try:
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass  # the refused client is gone or not reading: closing is all that is left
        return admitted

    def serve(self, request) -> bool:
        """Move a connection whose request carried the token to the served ones; False when
        those are all taken (the caller answers 503)."""
        with self.connections_lock:
            if request in self.served:
                return True
            if request not in self.addresses or len(self.served) >= self.max_connections:
                return False
            self.pending.pop(request, None)
            self.served.add(request)
            return True

    def _forget(self, request) -> None:
        """Stop counting a connection (closed, or evicted); the lock is held."""
        address = self.addresses.pop(request, None)
        if address is not None:
            self.per_address[address] -= 1
            if not self.per_address[address]:
                del self.per_address[address]
        self.pending.pop(request, None)
        self.served.discard(request)

    def drop_connections(self) -> None:
        """End every open connection: a closed feed must not keep answering on kept-alive
        ones, or a page would take a finished run for a stalled one."""
        with self.connections_lock:
            for request in list(self.addresses):
                _hang_up(request)

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self._forget(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        """A client that resets or leaves mid-reply (or was cut off) is ordinary here; only
        anything else is a bug worth socketserver's traceback on stderr."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _hang_up(request) -> None:
    try:
        request.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone


class _DeadlineReader(io.RawIOBase):
    """The connection's bytes, with every read limited to what is left of a deadline, so a
    client sending one byte a second cannot stretch a request head past it (a socket timeout
    alone bounds each read, not the request). Without a deadline each read waits `per_read_s`."""

    def __init__(self, connection: socket.socket, per_read_s: float) -> None:
        self.connection, self.per_read_s = connection, per_read_s
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        wait = self.per_read_s
        if self.deadline is not None:
            wait = min(wait, self.deadline - time.monotonic())
            if wait <= 0:
                # socket.timeout: what http.server catches (TimeoutError only from 3.10)
                raise socket.timeout("the request head took too long")
        self.connection.settimeout(wait)
        return self.connection.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: _FeedServer
    protocol_version = "HTTP/1.1"
    timeout = _HEAD_DEADLINE_S  # the head's deadline, and the longest wait of any one read

    def log_message(self, format, *args) -> None:  # keep the loop's stdout readable
        pass

    def setup(self) -> None:
        super().setup()
        self.reader = _DeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        # The clock starts before the request line: a kept-alive connection gets the same
        # time for its next request as a new one.
        self.reader.deadline = time.monotonic() + self.timeout
        super().handle_one_request()

    def _head_done(self) -> bool:
        """Drop the body (or close), stop the head's clock; False when the client is not let
        in: no token (401, closed) or no room among the served connections (503, closed)."""
        self._drop_body()
        self.reader.deadline = None
        self.connection.settimeout(self.timeout)  # not what the deadline's last read left
        url = urlparse(self.path)
        if not self.server.feed.authorised(self.headers.get("Authorization", ""),
                                           parse_qs(url.query)):
            self.close_connection = True  # an unauthorised client keeps no connection
            self._plain(HTTPStatus.UNAUTHORIZED, "access token required\n")
            return False
        if not self.server.serve(self.connection):
            self.close_connection = True
            self._plain(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n")
            return False
        return True

    def _drop_body(self) -> None:
        """Read and drop a request body by its Content-Length (still under the head's
        deadline), so its bytes are never taken for the next request; a body of unknown or
        large size closes the connection after the reply instead."""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or (length is not None and not length.isdigit()):
            self.close_connection = True
            return
        size = int(length or 0)
        if size > _MAX_BODY_BYTES:
            self.close_connection = True
            return
        while size > 0:
            chunk = self.rfile.read(size)
            if not chunk:
                self.close_connection = True  # the client stopped short
                return
            size -= len(chunk)

    def do_GET(self) -> None:
        if not self._head_done():
            return
        url = urlparse(self.path)
        route = {"/": self._page, "/index.html": self._page, "/stream.mjpg": self._stream,
                 "/stats.json": self._stats, "/finding.jpg": self._finding,
                 **dict.fromkeys(STATIC_ROUTES, self._static)}.get(url.path)
        if route is None:
            self._plain(HTTPStatus.NOT_FOUND, "not found\n")
            return
        route(url)

    def do_HEAD(self) -> None:
        if self._head_done():
            self._plain(HTTPStatus.METHOD_NOT_ALLOWED, "")

    do_POST = do_PUT = do_DELETE = do_HEAD

    def _plain(self, status: HTTPStatus, text: str, content_type: str = "text/plain") -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _page(self, url) -> None:
        feed = self.server.feed
        token = parse_qs(url.query).get("token", [""])[0]
        # urlencode percent-encodes every reserved character, so the result is also safe
        # inside the page's HTML attribute and JS string.
        query = "?" + urlencode({"token": token}) if token else ""
        page = render_page(query, " ".join(feed.warnings), _STALE_AFTER_S, feed.overlay)
        self._plain(HTTPStatus.OK, page, "text/html")

    def _static(self, url) -> None:
        body, content_type = static_file(url.path)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")  # a new version ships with a new run
        self.end_headers()
        self.wfile.write(body)

    def _finding(self, url) -> None:
        query = parse_qs(url.query)
        size = query.get("size", ["thumb"])[0]
        try:
            finding_id = int(query.get("id", [""])[0])
        except ValueError:
            finding_id = None
        jpeg = None if finding_id is None or size not in SIZES else \
            self.server.feed.findings.jpeg(finding_id, size)
        if jpeg is None:  # malformed, or no longer among the recent findings
            self._plain(HTTPStatus.NOT_FOUND, "no such finding\n")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(jpeg)))
        # Ids are frame indices, which a new run on the same address reuses: never cached.
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(jpeg)

    def _stats(self, url) -> None:
        self._plain(HTTPStatus.OK, json.dumps(self.server.feed.stats()), "application/json")

    def _stream(self, url) -> None:
        feed = self.server.feed
        if not feed.viewer_slots.acquire(blocking=False):
            self._plain(HTTPStatus.SERVICE_UNAVAILABLE, "too many viewers\n")
            return
        try:
            self.connection.settimeout(_SEND_TIMEOUT_S)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            seen = 0
            while not feed.closing:
                seen, jpeg = feed.latest.wait_newer(seen, _CLIENT_WAIT_S)
                if jpeg is None:
                    continue
                self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                self.wfile.flush()
        except (OSError, socket.timeout):
            pass  # the viewer went away or stalled: end its stream, the loop is unaffected
        finally:
            self.close_connection = True
            feed.viewer_slots.release()


class HttpFeedSink(FrameSink):
    def __init__(self, host: str, port: int, token: str, jpeg_quality: int,
                 max_clients: int, overlay: OverlayConfig | None = None,
                 max_per_address: int | None = None) -> None:
        self.token = token
        self.overlay = overlay   # the run's colours, for the page's legend (None: no legend)
        self.findings = RecentFindings(jpeg_quality)
        self.closing = False
        self.viewer_slots = threading.BoundedSemaphore(max_clients)
        self.max_clients = max_clients
        self.latest = _LatestJpeg(jpeg_quality)
        self._stats: dict = {"frame": None, "fps": None, "frames": 0}
        self._stats_lock = threading.Lock()
        self._last_frame_at: float | None = None
        exposed = not token and not is_loopback(host)
        self.warnings = (_EXPOSED_WARNING.format(host=host or "all addresses"),) if exposed \
            else ()
        try:
            self.server = _FeedServer((host, port), self, 2 * max_clients,
                                      max_per_address or 2 * max_clients)
        except OSError as exc:
            self.latest.close()
            raise SinkError(f"output http://{host}:{port}: cannot listen ({exc.strerror})") \
                from None
        self.host, self.port = host, self.server.server_address[1]
        self.name = f"http://{self.host}:{self.port}"
        self.url = f"{self.name}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="http feed",
                                       kwargs={"poll_interval": 0.2}, daemon=True)
        self.thread.start()

    @classmethod
    def from_uri(cls, uri: str, settings, overlay: OverlayConfig | None = None) -> "HttpFeedSink":
        address = parse_http_uri(uri, settings)
        return cls(address.host, address.port, address.token, settings.jpeg_quality,
                   settings.max_clients, overlay, settings.max_per_address)

    def authorised(self, header: str, query: dict) -> bool:
        if not self.token:
            return True
        offered = query.get("token", [""])[0].encode()  # parse_qs decodes UTF-8
        if header.startswith("Bearer "):
            # http.server decodes header bytes as Latin-1: encoding back gives the bytes sent.
            offered = header[len("Bearer "):].encode("latin-1", "replace")
        return hmac.compare_digest(offered, self.token.encode())

    def viewers(self) -> int:
        return self.max_clients - self.viewer_slots._value  # noqa: SLF001 (no public getter)

    def stats(self) -> dict:
        with self._stats_lock:
            last = self._last_frame_at
            age = None if last is None else round(time.perf_counter() - last, 2)
            stats = {**self._stats, "viewers": self.viewers(), "last_frame_age_s": age}
        return {**stats, "findings": self.findings.summaries()}

    def write(self, frame: OutputFrame) -> None:
        self.latest.offer(frame.overlay_bgr)
        self.findings.offer(frame.record, frame.overlay_bgr)
        with self._stats_lock:
            self._last_frame_at = time.perf_counter()
            # The HUD's rolling FPS, which the loop puts in the record (not an average since
            # start, which hides a slowdown and disagrees with the video).
            self._stats = {"frame": frame.record.to_json(), "frames": self._stats["frames"] + 1,
                           "fps": frame.record.fps, "notices": list(frame.notices)}

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.latest.close()
        self.server.shutdown()
        self.server.server_close()
        self.server.drop_connections()
        self.thread.join(timeout=2.0)

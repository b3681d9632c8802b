"""What the live page withstands: slow-header (slowloris) clients against the token holder.

The page's server (edge/console/server.py `HttpFeedSink`, the config's http settings, a token)
runs in a child process; this process plays the attackers and the token holder, all on
loopback. Attackers come from other loopback addresses (127.0.0.2 and up: Linux routes all of
127/8 to `lo`), so the per-address cap is measured as well as the pending-head rule.
Scenarios, each bounded by --seconds:

    one_address     64 connections from one address, each sending a request line and then
                    one header line every 3 s (the issue's attack)
    many_addresses  the same from 32 addresses, up to the per-address cap each
    reconnect_flood 32 addresses that open connections up to the cap, send nothing, and
                    reconnect the moment one is closed

Meanwhile the token holder asks for /stats.json (with `Authorization: Bearer`) every 0.2 s
on a new connection. Reported: the share of its requests answered 200, their latency (median,
p95, max), the longest an attacker's connection stayed open (by the attacker's clock, which
includes waiting in the kernel's listen queue, and by the server's, from accept to close),
and the server's peak thread count.

    python benchmarks/slow_headers.py [--seconds 20] [--json benchmarks/results/slow_headers.json]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_TOKEN = "bench-t0ken"
_HOLDER_EVERY_S = 0.2
_SLOW_LINE_EVERY_S = 3.0
_ATTACK_ADDRESSES = 32


def serve(seconds: float) -> None:
    """The child: the page's server with the config's settings, its peak thread count last."""
    from edge.config import load_config
    from edge.console.server import HttpFeedSink

    http = load_config().http
    sink = HttpFeedSink("127.0.0.1", 0, _TOKEN, http.jpeg_quality, http.max_clients,
                        max_per_address=http.max_per_address)
    # How long the server keeps each connection, from accept to close (a client's own clock
    # also counts the time its connection waited in the kernel's listen queue).
    server, opened, longest = sink.server, {}, [0.0]
    verify, shutdown = server.verify_request, server.shutdown_request

    def verify_request(request, client_address):
        admitted = verify(request, client_address)
        if admitted:
            opened[request] = time.monotonic()
        return admitted

    def shutdown_request(request):
        started = opened.pop(request, None)
        if started is not None:
            longest[0] = max(longest[0], time.monotonic() - started)
        shutdown(request)

    server.verify_request, server.shutdown_request = verify_request, shutdown_request
    print(json.dumps({"port": sink.port, "max_clients": http.max_clients,
                      "max_per_address": http.max_per_address}), flush=True)
    peak, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        peak = max(peak, threading.active_count())
        time.sleep(0.05)
    still_open = max((time.monotonic() - t for t in list(opened.values())), default=0.0)
    sink.close()
    print(json.dumps({"peak_threads": peak,
                      "longest_connection_s": round(max(longest[0], still_open), 2)}),
          flush=True)


def _slow(port: int, source: str, until: float, lifetimes: list, send_head: bool) -> None:
    """One attacker slot: connect, trickle (or send nothing), and reconnect when cut off."""
    while time.monotonic() < until:
        opened = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0,
                                          source_address=(source, 0)) as connection:
                if send_head:
                    connection.sendall(b"GET /stats.json HTTP/1.1\r\n")
                next_line = time.monotonic() + _SLOW_LINE_EVERY_S
                while time.monotonic() < until:
                    try:
                        if connection.recv(4096) == b"":
                            break  # the server hung up (deadline, eviction, 503)
                    except socket.timeout:
                        pass
                    if send_head and time.monotonic() >= next_line:
                        connection.sendall(b"X-Slow: 1\r\n")
                        next_line += _SLOW_LINE_EVERY_S
        except OSError:
            pass  # refused or reset: cut off too
        lifetimes.append(time.monotonic() - opened)
        if not send_head:
            continue  # the flood reconnects at once
        time.sleep(0.05)


def _holder(port: int, until: float, results: list) -> None:
    request = (f"GET /stats.json HTTP/1.1\r\nHost: rig\r\nAuthorization: Bearer {_TOKEN}\r\n"
               "Connection: close\r\n\r\n").encode()
    while time.monotonic() < until:
        started = time.monotonic()
        status = "error"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                connection.sendall(request)
                reply = connection.recv(64)
                status = reply.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
        except OSError as exc:
            status = type(exc).__name__
        results.append((status, time.monotonic() - started))
        time.sleep(_HOLDER_EVERY_S)


def scenario(name: str, seconds: float) -> dict:
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(seconds + 3)],
                             stdout=subprocess.PIPE, text=True)
    settings = json.loads(child.stdout.readline())
    port, per_address = settings["port"], settings["max_per_address"]
    if name == "one_address":
        slots = [("127.0.0.2", True)] * 64
    else:
        slots = [(f"127.0.1.{i + 1}", name == "many_addresses")
                 for i in range(_ATTACK_ADDRESSES) for _ in range(per_address)]
    until = time.monotonic() + seconds
    lifetimes: list[float] = []
    attackers = [threading.Thread(target=_slow, args=(port, source, until, lifetimes, head),
                                  daemon=True) for source, head in slots]
    for thread in attackers:
        thread.start()
    time.sleep(2.0)  # every slot the attackers can get is taken by now
    holder: list[tuple[str, float]] = []
    _holder(port, until, holder)
    for thread in attackers:
        thread.join(timeout=5)
    served = json.loads(child.stdout.readline())
    child.wait(timeout=10)
    latencies_ms = np.array([t for s, t in holder if s.startswith("HTTP/1.1 200")]) * 1000
    return {"attack": name, "attacker_connections": len(slots), "seconds": seconds,
            **settings, "holder_requests": len(holder),
            "holder_ok_share": round(len(latencies_ms) / max(1, len(holder)), 4),
            "holder_failures": sorted({s for s, _ in holder if not s.startswith("HTTP/1.1 200")}),
            "holder_latency_ms": {"median": round(float(np.median(latencies_ms)), 1),
                                  "p95": round(float(np.percentile(latencies_ms, 95)), 1),
                                  "max": round(float(latencies_ms.max()), 1)}
            if len(latencies_ms) else None,
            "attacker_connections_opened": len(lifetimes),
            "longest_attacker_connection_s": round(max(lifetimes, default=0.0), 2),
            "server_longest_connection_s": served["longest_connection_s"],
            "server_peak_threads": served["peak_threads"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    from common import machine

    results = [scenario(name, args.seconds)
               for name in ("one_address", "many_addresses", "reconnect_flood")]
    for r in results:
        print(f"{r['attack']:16s} {r['attacker_connections']:4d} attacker slots: token holder "
              f"{r['holder_ok_share']:.0%} of {r['holder_requests']} answered, latency "
              f"{r['holder_latency_ms']}, longest attacker connection "
              f"{r['longest_attacker_connection_s']} s (server side "
              f"{r['server_longest_connection_s']} s), server threads peak "
              f"{r['server_peak_threads']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "results": results},
                                              indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

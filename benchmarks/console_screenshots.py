"""Screenshots of the live console from a real run: the shipped model on a synthetic clip.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/console_screenshots.py   # docs/console_*.png

Needs Playwright (the `dev` extra) and Debian's chromium at /usr/bin/chromium. The run is
`rustseg run` in a child process with an access token, so the shots show the console exactly
as an inspector sees it, after ~20 s of frames (chart and findings filled).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
_WIDTHS_PX = (1280, 400)
_HEIGHT_PX = 800
_TOKEN = "demo-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_run(port: int, token: str,
              source: str = "synthetic://?width=640&height=480&frames=0&fps=15&seed=3"):
    """`rustseg run` serving the console on 127.0.0.1:port, in a child process."""
    env = {**os.environ, "RUSTSEG_TOKEN": token, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "edge.cli", "run", "--source", source, "--output",
               f"http://127.0.0.1:{port}", "--headless", "--quiet"]
    # stderr stays the caller's, so a run that fails to start says why.
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def wait_for_port(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="folder for console_*.png")
    parser.add_argument("--warm-up-s", type=float, default=20.0,
                        help="seconds of frames before the shots")
    args = parser.parse_args()
    port = free_port()
    run = start_run(port, _TOKEN)
    try:
        wait_for_port(port)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            pages = []
            for width in _WIDTHS_PX:
                page = browser.new_page(viewport={"width": width, "height": _HEIGHT_PX})
                page.goto(f"http://127.0.0.1:{port}/?token={_TOKEN}")
                pages.append((width, page))
            time.sleep(args.warm_up_s)
            for width, page in pages:
                path = Path(args.out) / f"console_{width}.png"
                page.screenshot(path=str(path), full_page=True)
                print(f"wrote {path}")
            browser.close()
    finally:
        run.terminate()
        run.wait(timeout=20)


if __name__ == "__main__":
    main()

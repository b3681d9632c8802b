"""The live console in a real browser: Debian's chromium driven by Playwright, against a real
`rustseg run` (shipped model, synthetic camera) serving http:// with an access token."""

from __future__ import annotations

import re
import signal
from urllib.parse import quote
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"browser test: Debian's chromium is not installed at {CHROMIUM} "
                "(apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="browser test: playwright is not installed (dev extra)")

from benchmarks.console_screenshots import (CHROMIUM_ARGS, free_port,  # noqa: E402
                                            start_run, wait_for_port)

_TOKEN = "t0k&n/with=reserved?chars"
_QUOTED = quote(_TOKEN, safe="")
_SOURCE = "synthetic://?width=320&height=240&frames=0&fps=15&seed=2"
_WAIT_MS = 30_000   # a loaded CI machine needs a while to load the model and serve frames


@pytest.fixture(scope="module")
def served():
    port = free_port()
    run = start_run(port, _TOKEN, source=_SOURCE)
    try:
        wait_for_port(port)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            yield {"port": port, "run": run, "browser": browser}
            browser.close()
    finally:
        if run.poll() is None:
            run.kill()
        run.wait(timeout=20)


def test_without_the_token_the_page_is_refused(served):
    page = served["browser"].new_page()
    base = f"http://127.0.0.1:{served['port']}"
    try:
        for url in (base + "/", base + "/?token=wrong", base + "/stats.json"):
            response = page.goto(url)
            assert response.status == 401, url
            assert "access token required" in page.content()
            assert page.locator("#v").count() == 0  # no console, no stream
    finally:
        page.close()


def test_with_the_token_the_video_numbers_chart_and_findings_appear(served):
    page = served["browser"].new_page(viewport={"width": 400, "height": 800})
    failed = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failed.append(r.url) if "stream.mjpg" not in r.url
            else None)
    try:
        assert page.goto(f"http://127.0.0.1:{served['port']}/?token={_QUOTED}").status == 200
        page.wait_for_function("document.getElementById('state').className === 'LIVE'",
                               timeout=_WAIT_MS)
        # The MJPEG stream decodes in the page at the run's frame size.
        page.wait_for_function("document.getElementById('v').naturalWidth === 320",
                               timeout=_WAIT_MS)
        page.wait_for_function("/^[0-9]+\\.[0-9]$/.test(document.getElementById('fps')"
                               ".textContent)", timeout=_WAIT_MS)
        fps = float(page.text_content("#fps"))
        assert 0 < fps < 40  # the HUD's rolling FPS of a 15 FPS camera
        assert 0 <= float(page.text_content("#score")) <= 1
        assert 0 <= float(page.text_content("#area")) <= 100
        assert int(page.text_content("#frame")) >= 0
        assert int(page.text_content("#drops")) >= 0
        assert int(page.text_content("#latency")) >= 0
        path = page.text_content("#path")
        assert path in ("none", "light", "full", "skipped")
        assert page.text_content("#why").startswith(f"{path}: ")  # the path is explained
        assert page.locator(".legend li").count() >= 1
        # The chart draws a line once two frames have been seen.
        page.wait_for_function("document.querySelectorAll('#chart polyline')[0]"
                               "?.getAttribute('points').split(' ').length >= 2",
                               timeout=_WAIT_MS)
        # The synthetic scene has rust: a thumbnail arrives and enlarges on click.
        thumb = page.locator("#strip img").first
        thumb.wait_for(timeout=_WAIT_MS)
        page.wait_for_function("document.querySelector('#strip img').naturalWidth > 0",
                               timeout=_WAIT_MS)
        assert page.locator("#box").is_hidden()
        thumb.click()
        page.wait_for_function("document.getElementById('big').naturalWidth === 320",
                               timeout=_WAIT_MS)
        assert page.locator("#box").is_visible()
        assert re.search(r"% corroded, score [0-9.]+$", page.text_content("#bigcap"))
        assert failed == []  # every request the page made carried the token and was served
    finally:
        page.close()


def test_the_state_turns_disconnected_when_the_run_stops(served):
    page = served["browser"].new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(f"http://127.0.0.1:{served['port']}/?token={_QUOTED}")
        page.wait_for_function("document.getElementById('state').className === 'LIVE'",
                               timeout=_WAIT_MS)
        served["run"].send_signal(signal.SIGINT)  # the inspector's Ctrl-C
        served["run"].wait(timeout=30)
        page.wait_for_function("document.getElementById('state').className === "
                               "'DISCONNECTED'", timeout=10_000)
        assert "DISCONNECTED" in page.text_content("#state")
    finally:
        page.close()

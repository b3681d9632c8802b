"""The pages are Jinja2 templates with autoescape, and the console's script and style are
static files of the package (issue 22 item 4): installed with it, served behind the token.

That any file name keeps a working link is checked with real records in
tests/test_any_file_name.py; stored markup in tests/test_record_safety.py.
"""

from __future__ import annotations

import fnmatch
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from edge.config import load_config

ROOT = Path(__file__).resolve().parent.parent
_PAGE_FILES = [p for pattern in ("edge/*/templates/*", "edge/console/static/*")
               for p in sorted(ROOT.glob(pattern))]


def _setup_cfg() -> dict:
    from setuptools.config.setupcfg import read_configuration

    return read_configuration(str(ROOT / "setup.cfg"))


def test_every_template_and_static_file_is_package_data():
    """A non-editable install gets only what package_data names: each file must match."""
    assert len(_PAGE_FILES) == 5, _PAGE_FILES
    package_data = _setup_cfg()["options"]["package_data"]
    for path in _PAGE_FILES:
        package = ".".join(path.relative_to(ROOT).parts[:2])
        inside = path.relative_to(ROOT / package.replace(".", "/")).as_posix()
        patterns = package_data.get(package, [])
        assert any(fnmatch.fnmatch(inside, p) for p in patterns), (package, inside, patterns)


def test_jinja2_and_fastjsonschema_are_in_the_extras_that_render_and_read_records():
    extras = _setup_cfg()["options"]["extras_require"]
    for extra in ("edge", "report"):  # the console runs on the device; the report anywhere
        names = {re.split(r"[<>=;\[ ]", r, maxsplit=1)[0].lower() for r in extras[extra]}
        assert {"jinja2", "fastjsonschema"} <= names, (extra, names)


def test_the_console_page_escapes_its_text_and_loads_its_script_from_the_package():
    from edge.console.page import render_page, static_file

    page = render_page("?token=a%2Bb%22", "<script>alert(1)</script>", 2.0,
                       load_config().overlay)
    assert "<script>alert(1)</script>" not in page
    assert "WARNING: &lt;script&gt;alert(1)&lt;/script&gt;" in page
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert [attrs.strip() for attrs, _ in scripts] == [
        'id="settings" type="application/json"', 'src="/static/console.js?token=a%2Bb%22"']
    assert '<link rel="stylesheet" href="/static/console.css?token=a%2Bb%22">' in page
    script, kind = static_file("/static/console.js")
    assert kind == "text/javascript" and b"function poll()" in script
    assert static_file("/static/../page.py") is None and static_file("/page.py") is None


def test_static_files_are_served_behind_the_token(monkeypatch):
    from edge.console.server import HttpFeedSink

    monkeypatch.setenv("RUSTSEG_TOKEN", "s3cret")
    sink = HttpFeedSink.from_uri("http://127.0.0.1:0", load_config().http)
    base = f"http://127.0.0.1:{sink.port}"
    try:
        for route, kind in (("/static/console.js", "text/javascript"),
                            ("/static/console.css", "text/css")):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + route, timeout=3)
            assert refused.value.code == 401
            with urllib.request.urlopen(base + route + "?token=s3cret", timeout=3) as r:
                assert r.headers["Content-Type"].startswith(kind)
                assert r.read() == (ROOT / "edge/console" / route.lstrip("/")).read_bytes()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/static/page.py?token=s3cret", timeout=3)
        assert missing.value.code == 404
    finally:
        sink.close()

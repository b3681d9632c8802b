"""The inspector's live console: a page from a Jinja2 template, with its style and script as
static files of the package (no CDN, nothing from the network).

The page polls /stats.json every _POLL_MS. No new frame for STALE_AFTER_S -> STALE, a failed
poll -> DISCONNECTED; when frames come again after either, the stream is requested anew (a
browser does not reopen an MJPEG stream that ended). The numbers are the loop's own, as the HUD
draws them (FPS over the HUD's last 30 frames), so a phone need not read the burnt-in HUD. The
script (static/console.js) reads its settings from the page as JSON and only uses
getElementById and plain property writes, so tests can run it in Node.
"""

from __future__ import annotations

from importlib import resources

from edge.method.paths import PATH_MEANINGS
from edge.method.states import STATE_LABELS, STATE_NAMES
from edge.pages import render

_POLL_MS = 500
_CHART_S = 60            # the chart's time span

_NUMBERS = (  # id, label, unit
    ("fps", "FPS (last 30 frames)", "frames/s"),
    ("score", "corrosion score", "0-1"),
    ("area", "corroded area", "% of frame"),
    ("path", "refine path", ""),
    ("mask", "mask", "fresh or carried"),
    ("drops", "dropped frames", "since start"),
    ("latency", "latency, capture to output", "ms"),
    ("frame", "frame", "#"),
    ("position", "position (telemetry)", "lat, lon"),
    ("position_age", "position age", "s at capture"),
    ("viewers", "viewers", "open streams"),
    # v3 models: the share of the frame in each condition state ('-' without states)
    ("fair", "Fair (CS2)", "% of frame"),
    ("poor", "Poor (CS3)", "% of frame"),
    ("severe", "Severe (CS4)", "% of frame"),
)

# The static files the server may serve, by route; nothing else of the package is reachable.
STATIC_ROUTES = {"/static/console.js": ("console.js", "text/javascript"),
                 "/static/console.css": ("console.css", "text/css")}


def static_file(route: str) -> tuple[bytes, str] | None:
    """(content, content type) of a static route, read from the installed package; None for
    any other route."""
    if route not in STATIC_ROUTES:
        return None
    name, content_type = STATIC_ROUTES[route]
    return (resources.files("edge.console").joinpath("static", name).read_bytes(),
            content_type)


def render_page(query: str, warning: str, stale_after_s: float, overlay) -> str:
    """The page. `query` is "" or "?token=..." already URL-encoded (it is escaped in the page
    all the same); `warning` is plain text ("" for none); `overlay` is the run's
    OverlayConfig, for the legend (None: no legend)."""
    settings = {"query": query, "stale_after_s": stale_after_s, "chart_s": _CHART_S,
                "poll_ms": _POLL_MS, "paths": PATH_MEANINGS}
    return render("edge.console", "console.html", query=query, warning=warning,
                  numbers=_NUMBERS, legend=_legend(overlay), settings=settings)


def _legend(overlay) -> dict | None:
    """What the page's legend draws: the run's own mask colour and the states' colours."""
    if overlay is None:
        return None
    b, g, r = (int(c) for c in overlay.colour_bgr)
    return {"r": r, "g": g, "b": b, "alpha": f"{overlay.alpha:.2f}",
            "opaque": round(100 * overlay.alpha), "heatmap": overlay.heatmap,
            "hud": overlay.hud,
            # v3 models draw each condition state in its own colour instead
            "states": [{"label": STATE_LABELS[name], "r": c[2], "g": c[1], "b": c[0]}
                       for name, c in zip(STATE_NAMES, overlay.state_colours_bgr)]}

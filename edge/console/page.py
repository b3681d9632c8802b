"""The inspector's live console: one self-contained HTML page (no files, no CDN, no library).

The page polls /stats.json every _POLL_MS. No new frame for STALE_AFTER_S -> STALE, a failed
poll -> DISCONNECTED; when frames come again after either, the stream is requested anew (a
browser does not reopen an MJPEG stream that ended). The numbers are the loop's own, as the HUD
draws them (FPS over the HUD's last 30 frames), so a phone need not read the burnt-in HUD. The
script only uses getElementById and plain property writes, so tests can run it in Node.
"""

from __future__ import annotations

import html
import json

from edge.method.paths import PATH_MEANINGS

_POLL_MS = 500
_CHART_S = 60            # the chart's time span

_STYLE = """
*{box-sizing:border-box}
body{margin:0;background:#111;color:#eee;font:15px/1.35 system-ui,sans-serif}
header{position:sticky;top:0;z-index:2;display:flex;flex-wrap:wrap;align-items:center;
 gap:8px 16px;padding:8px 12px;background:#1b1b1b;border-bottom:1px solid #333}
h1{font-size:18px;margin:0;font-weight:600}
h2{font-size:13px;margin:0 0 6px;color:#aaa;text-transform:uppercase;letter-spacing:.05em}
#state{padding:3px 10px;border-radius:4px;font-weight:700;background:#444}
#state.LIVE{background:#1f7a34;color:#fff}
#state.STALE{background:#b36b00;color:#fff}
#state.DISCONNECTED{background:#a00;color:#fff}
#w{background:#a00;color:#fff;padding:8px 12px;font-weight:bold}
#notice{background:#b36b00;color:#fff;padding:8px 12px;font-weight:bold}
#notice[hidden]{display:none}
main{display:grid;grid-template-columns:minmax(0,1fr);gap:12px;padding:12px}
@media (min-width:900px){main{grid-template-columns:minmax(0,3fr) minmax(300px,1fr)}}
@media (min-width:1600px){main{grid-template-columns:minmax(0,3fr) 420px}}
#v{display:block;width:100%;height:auto;max-height:max(240px,calc(100vh - 250px));
 object-fit:contain;background:#000;border-radius:4px}
#live.STALE #v,#live.DISCONNECTED #v{opacity:.35;filter:grayscale(1)}
#live.STALE .n b,#live.DISCONNECTED .n b{color:#777}
section.panel{background:#1b1b1b;border:1px solid #333;border-radius:6px;padding:10px}
aside{display:flex;flex-direction:column;gap:12px}
#numbers{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:8px}
.n{background:#222;border-radius:4px;padding:6px 8px}
.n span{display:block;font-size:12px;color:#aaa}
.n b{font-size:24px;font-variant-numeric:tabular-nums}
.n i{font-style:normal;font-size:13px;color:#aaa;margin-left:3px}
#why{font-size:13px;color:#ccc;margin:8px 0 0}
.legend{list-style:none;margin:0;padding:0;font-size:14px}
.legend li{display:flex;align-items:center;gap:8px;margin:4px 0}
.sw{width:28px;height:16px;border-radius:3px;flex:none}
#chart svg{width:100%;max-width:520px;height:auto;display:block}
#strip{display:flex;gap:8px;overflow-x:auto;padding-bottom:4px}
#strip figure{margin:0;flex:none;width:160px;cursor:zoom-in}
#strip img{width:160px;height:auto;border-radius:3px;display:block;border:2px solid transparent}
#strip img:hover{border-color:#fff}
#strip figcaption{font-size:12px;color:#ccc}
#box{position:fixed;inset:0;background:rgba(0,0,0,.88);display:flex;flex-direction:column;
 align-items:center;justify-content:center;padding:12px;cursor:zoom-out}
#box[hidden]{display:none}
#big{width:min(100%,1280px);max-height:85vh;object-fit:contain}
.muted{color:#888;font-size:13px}
"""

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
)

_SCRIPT = """
const QUERY = '{query}', STALE_AFTER_S = {stale_after}, CHART_S = {chart_s};
const PLOT_W = 280, BAND_H = 56;  // chart units: about CSS px in the side panel
const AUTH = QUERY ? '&' + QUERY.slice(1) : '';
const PATHS = {paths};
let state = 'CONNECTING', lastIndex = null, history = [], findingsKey = '';
let streamOk = true;  // false once STALE or DISCONNECTED: the MJPEG stream may have ended
const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/[&<>"']/g, c => `&#${{c.charCodeAt(0)}};`);
const num = (x, digits) => (x === undefined || x === null) ? '-' : Number(x).toFixed(digits);
function show(next, why) {{
  const el = $('state');
  el.className = next;
  $('live').className = next;  // a stale or lost stream and its numbers are greyed out
  el.textContent = next === 'LIVE' ? 'LIVE' : `${{next}}: ${{why}}`;
  state = next;
}}
function reconnect() {{  // a fresh stream request; the parameter only defeats the cache
  const sep = QUERY ? '&' : '?';
  $('v').src = `/stream.mjpg${{QUERY}}${{sep}}r=${{Date.now()}}`;
}}
function numbers(s, f) {{
  $('fps').textContent = num(s.fps, 1);
  $('score').textContent = num(f.score, 2);
  $('area').textContent = f.corroded_fraction === undefined ? '-' :
    (100 * f.corroded_fraction).toFixed(1);
  $('path').textContent = f.path ?? '-';
  $('why').textContent = f.path ? `${{f.path}}: ${{PATHS[f.path] ?? ''}}` : '';
  // the record's own flag: refined on this frame, or an earlier frame's mask carried onto it
  $('mask').textContent = f.mask === 'carried' ? `carried from #${{f.mask_from}}` :
    (f.mask ?? '-');
  $('drops').textContent = f.dropped ?? '-';
  $('latency').textContent = (f.output_at && f.captured_at) ?
    (1000 * (f.output_at - f.captured_at)).toFixed(0) : '-';
  $('frame').textContent = f.index ?? '-';
  const p = f.position;  // a missing position is shown as missing, with why on hover
  $('position').textContent = p ? `${{num(p.lat, 6)}}, ${{num(p.lon, 6)}}` :
    (f.position_missing ? 'missing' : '-');
  $('position').title = f.position_missing ?? '';
  $('position_age').textContent = p && p.age_s !== undefined ? num(p.age_s, 1) : '-';
  $('viewers').textContent = s.viewers ?? '-';
}}
function line(points, key, top, scale) {{
  return points.map(p => `${{(PLOT_W * (1 - p.age / CHART_S)).toFixed(1)}},` +
    `${{(top + BAND_H * (1 - Math.min(1, p[key] / scale))).toFixed(1)}}`).join(' ');
}}
function chart() {{  // two bands over the last CHART_S seconds: area (auto scale), score (0-1)
  const now = Date.now() / 1000;
  history = history.filter(p => now - p.t <= CHART_S);
  const points = history.map(p => ({{...p, age: now - p.t}}));
  const peak = Math.max(0, ...points.map(p => p.area));
  const scale = [1, 2, 5, 10, 25, 50, 100].find(v => v >= peak) ?? 100;
  let svg = `<svg viewBox="0 0 ${{PLOT_W + 34}} ${{2 * BAND_H + 34}}" role="img" ` +
    `aria-label="corroded area and score over the last ${{CHART_S}} s">`;
  const bands = [[2, 'corroded area %', scale, '#ff7a33', 'area'],
                 [BAND_H + 14, 'corrosion score', 1, '#4fc3f7', 'score']];
  for (const [top, label, max, colour, key] of bands) {{
    svg += `<rect x="0" y="${{top}}" width="${{PLOT_W}}" height="${{BAND_H}}" fill="#262626"/>` +
      `<text x="4" y="${{top + 13}}" fill="${{colour}}" font-size="12">${{label}}</text>` +
      `<text x="${{PLOT_W + 4}}" y="${{top + 10}}" fill="#aaa" font-size="11">${{max}}</text>` +
      `<text x="${{PLOT_W + 4}}" y="${{top + BAND_H}}" fill="#aaa" font-size="11">0</text>` +
      `<polyline fill="none" stroke="${{colour}}" stroke-width="1.5" ` +
      `points="${{line(points, key, top, max)}}"/>`;
  }}
  const bottom = 2 * BAND_H + 30;
  svg += `<text x="0" y="${{bottom}}" fill="#aaa" font-size="11">-${{CHART_S}} s</text>` +
    `<text x="${{PLOT_W}}" y="${{bottom}}" fill="#aaa" font-size="11" text-anchor="end">now` +
    `</text></svg>`;
  $('chart').innerHTML = svg;
}}
function findings(list) {{
  const key = list.map(x => x.id).join(',');
  if (key === findingsKey) return;  // unchanged: keep the images the browser already has
  findingsKey = key;
  $('strip').innerHTML = list.length ? list.map(x =>
    `<figure data-id="${{x.id}}"><img src="/finding.jpg?id=${{x.id}}&size=thumb${{AUTH}}" ` +
    `alt="frame ${{x.id}}" data-id="${{x.id}}" data-cap="${{esc(x.name)}}: ` +
    `${{(100 * x.corroded_fraction).toFixed(1)}} % corroded, score ${{x.score.toFixed(2)}}">` +
    `<figcaption>${{(100 * x.corroded_fraction).toFixed(1)}} % &middot; frame ${{x.id}}` +
    `</figcaption></figure>`).join('') :
    '<p class="muted">no frame with corrosion yet</p>';
}}
$('strip').onclick = e => {{  // enlarge a finding
  const id = e.target?.dataset?.id;
  if (id === undefined) return;
  $('big').src = `/finding.jpg?id=${{id}}&size=full${{AUTH}}`;
  $('bigcap').textContent = e.target.dataset.cap ?? '';
  $('box').hidden = false;
}};
$('box').onclick = () => {{ $('box').hidden = true; }};
async function poll() {{
  try {{
    const r = await fetch('/stats.json' + QUERY, {{cache: 'no-store'}});
    if (!r.ok) throw new Error(`HTTP ${{r.status}}`);
    const s = await r.json();
    const f = s.frame || {{}};
    const age = s.last_frame_age_s ?? 0;
    if (s.frames > 0 && age <= STALE_AFTER_S) {{
      if (!streamOk) reconnect();
      streamOk = true;
      show('LIVE');
    }} else if (s.frames > 0) {{
      streamOk = false;
      show('STALE', `no new frame for ${{age.toFixed(0)}} s`);
    }} else {{
      show('CONNECTING', 'waiting for the run to serve a frame');
    }}
    if (f.index !== undefined && f.index !== lastIndex) {{
      lastIndex = f.index;
      history.push({{t: Date.now() / 1000, area: 100 * (f.corroded_fraction ?? 0),
                    score: f.score ?? 0}});
    }}
    numbers(s, f);
    findings(s.findings ?? []);
    const notices = s.notices ?? [];  // e.g. the record's video stopped at the free-space reserve
    $('notice').hidden = notices.length === 0;
    $('notice').textContent = notices.join(' | ');
  }} catch (e) {{
    streamOk = false;
    show('DISCONNECTED', 'the run is not serving (stopped or lost); retrying');
  }}
  chart();
  setTimeout(poll, {poll_ms});
}}
show('CONNECTING', 'waiting for the run to serve a frame');
poll();
"""

_BODY = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>RustSEG Edge live console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{style}</style>
</head><body>
<header><h1>RustSEG Edge &middot; live corrosion console</h1>
<div id="state" class="CONNECTING">CONNECTING</div></header>
{warning}<div id="notice" role="status" hidden></div>
<main id="live" class="CONNECTING">
<section><img id="v" src="/stream.mjpg{query}" alt="live corrosion overlay"></section>
<aside>
<section class="panel"><h2>Now</h2><div id="numbers">{numbers}</div><p id="why"></p></section>
<section class="panel"><h2>Overlay colours</h2><ul class="legend">{legend}</ul></section>
<section class="panel"><h2>Last {chart_s} s</h2><div id="chart"></div></section>
</aside></main>
<section class="panel" style="margin:0 12px 12px"><h2>Recent findings (most corroded frame
of each few seconds; click to enlarge)</h2><div id="strip"><p class="muted">no frame with
corrosion yet</p></div></section>
<div id="box" hidden><img id="big" alt="finding, full size"><p id="bigcap"></p></div>
<script>{script}</script></body></html>
"""


def _legend(colour_bgr, alpha: float, heatmap: bool, hud: bool) -> str:
    b, g, r = (int(c) for c in colour_bgr)
    items = [f'<li><span class="sw" style="background:rgba({r},{g},{b},{alpha:.2f});'
             f'border:2px solid rgb({r},{g},{b})"></span>corrosion mask: fill '
             f'({round(100 * alpha)} % opaque) and outline</li>']
    if heatmap:
        items.append('<li><span class="sw" style="background:linear-gradient(90deg,#00008f,'
                     '#00f,#0ff,#ff0,#f00,#800000)"></span>Grad-CAM++ heatmap, blue low to '
                     'red high evidence</li>')
    if hud:
        items.append('<li><span class="sw" style="background:#333;border:1px solid #777">'
                     '</span>HUD panel: the same numbers as above, burnt into the video</li>')
    return "".join(items)


def render_page(query: str, warning: str, stale_after_s: float, overlay) -> str:
    """The page. `query` is "" or "?token=..." already URL-encoded (so it is safe inside an
    HTML attribute and a JS string); `warning` is plain text ("" for none); `overlay` is the
    run's OverlayConfig, for the legend."""

    numbers = "".join(f'<div class="n"><span>{label}</span><b id="{key}">-</b>'
                      f'<i>{unit}</i></div>' for key, label, unit in _NUMBERS)
    script = _SCRIPT.format(query=query, stale_after=stale_after_s, chart_s=_CHART_S,
                            paths=json.dumps(PATH_MEANINGS), poll_ms=_POLL_MS)
    banner = f'<div id="w">WARNING: {html.escape(warning)}</div>' if warning else ""
    return _BODY.format(style=_STYLE, warning=banner, query=query, numbers=numbers,
                        legend=_legend(overlay.colour_bgr, overlay.alpha, overlay.heatmap,
                                       overlay.hud), chart_s=_CHART_S, script=script)

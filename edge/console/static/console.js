// The live console's script (edge/console/templates/console.html). Its settings come from
// the page, as JSON in <script id="settings">: the page is rendered per request (it carries
// the viewer's token), this file is the same for everyone. It only uses getElementById and
// plain property writes, so tests can run it in Node.
const SETTINGS = JSON.parse(document.getElementById('settings').textContent);
const QUERY = SETTINGS.query, STALE_AFTER_S = SETTINGS.stale_after_s;
const CHART_S = SETTINGS.chart_s, POLL_MS = SETTINGS.poll_ms, PATHS = SETTINGS.paths;
const PLOT_W = 280, BAND_H = 56;  // chart units: about CSS px in the side panel
const AUTH = QUERY ? '&' + QUERY.slice(1) : '';
let state = 'CONNECTING', lastIndex = null, history = [], findingsKey = '';
let streamOk = true;  // false once STALE or DISCONNECTED: the MJPEG stream may have ended
const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`);
const num = (x, digits) => (x === undefined || x === null) ? '-' : Number(x).toFixed(digits);
function show(next, why) {
  const el = $('state');
  el.className = next;
  $('live').className = next;  // a stale or lost stream and its numbers are greyed out
  el.textContent = next === 'LIVE' ? 'LIVE' : `${next}: ${why}`;
  state = next;
}
function reconnect() {  // a fresh stream request; the parameter only defeats the cache
  const sep = QUERY ? '&' : '?';
  $('v').src = `/stream.mjpg${QUERY}${sep}r=${Date.now()}`;
}
function numbers(s, f) {
  $('fps').textContent = num(s.fps, 1);
  $('score').textContent = num(f.score, 2);
  $('area').textContent = f.corroded_fraction === undefined ? '-' :
    (100 * f.corroded_fraction).toFixed(1);
  $('path').textContent = f.path ?? '-';
  $('why').textContent = f.path ? `${f.path}: ${PATHS[f.path] ?? ''}` : '';
  // the record's own flag: refined on this frame, or an earlier frame's mask carried onto it
  $('mask').textContent = f.mask === 'carried' ? `carried from #${f.mask_from}` :
    (f.mask ?? '-');
  $('drops').textContent = f.dropped ?? '-';
  $('latency').textContent = (f.output_at && f.captured_at) ?
    (1000 * (f.output_at - f.captured_at)).toFixed(0) : '-';
  $('frame').textContent = f.index ?? '-';
  const p = f.position;  // a missing position is shown as missing, with why on hover
  $('position').textContent = p ? `${num(p.lat, 6)}, ${num(p.lon, 6)}` :
    (f.position_missing ? 'missing' : '-');
  $('position').title = f.position_missing ?? '';
  $('position_age').textContent = p && p.age_s !== undefined ? num(p.age_s, 1) : '-';
  for (const name of ['fair', 'poor', 'severe']) {  // v3 models: area per condition state
    const share = f.area_by_state ? f.area_by_state[name] : undefined;
    $(name).textContent = share === undefined ? '-' : (100 * share).toFixed(1);
  }
  $('viewers').textContent = s.viewers ?? '-';
}
function line(points, key, top, scale) {
  return points.map(p => `${(PLOT_W * (1 - p.age / CHART_S)).toFixed(1)},` +
    `${(top + BAND_H * (1 - Math.min(1, p[key] / scale))).toFixed(1)}`).join(' ');
}
function chart() {  // two bands over the last CHART_S seconds: area (auto scale), score (0-1)
  const now = Date.now() / 1000;
  history = history.filter(p => now - p.t <= CHART_S);
  const points = history.map(p => ({...p, age: now - p.t}));
  const peak = Math.max(0, ...points.map(p => p.area));
  const scale = [1, 2, 5, 10, 25, 50, 100].find(v => v >= peak) ?? 100;
  let svg = `<svg viewBox="0 0 ${PLOT_W + 34} ${2 * BAND_H + 34}" role="img" ` +
    `aria-label="corroded area and score over the last ${CHART_S} s">`;
  const bands = [[2, 'corroded area %', scale, '#ff7a33', 'area'],
                 [BAND_H + 14, 'corrosion score', 1, '#4fc3f7', 'score']];
  for (const [top, label, max, colour, key] of bands) {
    svg += `<rect x="0" y="${top}" width="${PLOT_W}" height="${BAND_H}" fill="#262626"/>` +
      `<text x="4" y="${top + 13}" fill="${colour}" font-size="12">${label}</text>` +
      `<text x="${PLOT_W + 4}" y="${top + 10}" fill="#aaa" font-size="11">${max}</text>` +
      `<text x="${PLOT_W + 4}" y="${top + BAND_H}" fill="#aaa" font-size="11">0</text>` +
      `<polyline fill="none" stroke="${colour}" stroke-width="1.5" ` +
      `points="${line(points, key, top, max)}"/>`;
  }
  const bottom = 2 * BAND_H + 30;
  svg += `<text x="0" y="${bottom}" fill="#aaa" font-size="11">-${CHART_S} s</text>` +
    `<text x="${PLOT_W}" y="${bottom}" fill="#aaa" font-size="11" text-anchor="end">now` +
    `</text></svg>`;
  $('chart').innerHTML = svg;
}
function findings(list) {
  const key = list.map(x => x.id).join(',');
  if (key === findingsKey) return;  // unchanged: keep the images the browser already has
  findingsKey = key;
  $('strip').innerHTML = list.length ? list.map(x =>
    `<figure data-id="${x.id}"><img src="/finding.jpg?id=${x.id}&size=thumb${AUTH}" ` +
    `alt="frame ${x.id}" data-id="${x.id}" data-cap="${esc(x.name)}: ` +
    `${(100 * x.corroded_fraction).toFixed(1)} % corroded, score ${x.score.toFixed(2)}">` +
    `<figcaption>${(100 * x.corroded_fraction).toFixed(1)} % &middot; frame ${x.id}` +
    `</figcaption></figure>`).join('') :
    '<p class="muted">no frame with corrosion yet</p>';
}
$('strip').onclick = e => {  // enlarge a finding
  const id = e.target?.dataset?.id;
  if (id === undefined) return;
  $('big').src = `/finding.jpg?id=${id}&size=full${AUTH}`;
  $('bigcap').textContent = e.target.dataset.cap ?? '';
  $('box').hidden = false;
};
$('box').onclick = () => { $('box').hidden = true; };
async function poll() {
  try {
    const r = await fetch('/stats.json' + QUERY, {cache: 'no-store'});
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const s = await r.json();
    const f = s.frame || {};
    const age = s.last_frame_age_s ?? 0;
    if (s.frames > 0 && age <= STALE_AFTER_S) {
      if (!streamOk) reconnect();
      streamOk = true;
      show('LIVE');
    } else if (s.frames > 0) {
      streamOk = false;
      show('STALE', `no new frame for ${age.toFixed(0)} s`);
    } else {
      show('CONNECTING', 'waiting for the run to serve a frame');
    }
    if (f.index !== undefined && f.index !== lastIndex) {
      lastIndex = f.index;
      history.push({t: Date.now() / 1000, area: 100 * (f.corroded_fraction ?? 0),
                    score: f.score ?? 0});
    }
    numbers(s, f);
    findings(s.findings ?? []);
    const notices = s.notices ?? [];  // e.g. the record's video stopped at the free-space reserve
    $('notice').hidden = notices.length === 0;
    $('notice').textContent = notices.join(' | ');
  } catch (e) {
    streamOk = false;
    show('DISCONNECTED', 'the run is not serving (stopped or lost); retrying');
  }
  chart();
  setTimeout(poll, POLL_MS);
}
show('CONNECTING', 'waiting for the run to serve a frame');
poll();

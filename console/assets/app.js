// app.js: the clickpipe console. Plain JavaScript, no build step. It reads
// the query listener's endpoints with the token kept in sessionStorage and
// renders untrusted event data with textContent only.
'use strict';

const TOKEN_KEY = 'clickpipe.queryToken';
const POLL_MS = 1000;
const LIVE_MAX_ROWS = 500;
const $ = (sel, el) => (el || document).querySelector(sel);

let token = sessionStorage.getItem(TOKEN_KEY) || '';

// ---- HTTP ----------------------------------------------------------------

class Unauthorized extends Error {}

async function request(path, opts) {
  const r = await fetch(path, Object.assign({ headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' }, opts));
  if (r.status === 401) throw new Unauthorized('token rejected');
  return r;
}

async function getJSON(path) {
  const r = await request(path);
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new Error((body && body.error) || 'HTTP ' + r.status);
  return body;
}

function failed(err, where) {
  if (err instanceof Unauthorized) { signOut('The server rejected the token.'); return; }
  if (where) where.textContent = String(err.message || err);
}

// ---- formatting and DOM --------------------------------------------------

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = document.createElement('td');
    if (c instanceof Node) td.append(c); else td.textContent = c == null ? '–' : String(c);
    tr.append(td);
  }
  return tr;
}

function kvTable(table, obj, skip) {
  table.replaceChildren(...Object.entries(obj || {}).filter(([k]) => !(skip || []).includes(k)).map(([k, v]) => {
    const tr = document.createElement('tr');
    tr.append(el('th', k), el('td', v === null ? 'null' : typeof v === 'object' ? JSON.stringify(v) : fmtValue(k, v)));
    return tr;
  }));
}

function fmtValue(k, v) {
  if (typeof v === 'number' && !Number.isInteger(v)) return v.toFixed(3);
  return String(v);
}

function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function fmtDur(s) {
  if (s == null) return '–';
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
  return (s / 3600).toFixed(1) + ' h';
}

function fmtBytes(b) {
  if (b == null) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + ' ' + u[i];
}

function fmtPct(v) { return v == null ? '–' : v.toFixed(1) + ' %'; }

// ---- Prometheus text format ----------------------------------------------

function parseMetrics(text) {
  const m = new Map();
  const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const brace = line.indexOf('{');
    const sp = brace >= 0 ? line.indexOf(' ', line.lastIndexOf('}')) : line.indexOf(' ');
    const name = line.slice(0, brace >= 0 ? brace : sp);
    const labels = {};
    if (brace >= 0) {
      const ls = line.slice(brace + 1, line.lastIndexOf('}'));
      for (const [, k, v] of ls.matchAll(labelRe)) labels[k] = v.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    const value = parseFloat(line.slice(sp + 1).split(' ')[0]);
    if (!m.has(name)) m.set(name, []);
    m.get(name).push({ l: labels, v: value });
  }
  return m;
}

function total(m, name, pred) {
  let s = 0, found = false;
  for (const x of m.get(name) || []) if (!pred || pred(x.l)) { s += x.v; found = true; }
  return found ? s : null;
}

function byLabel(m, name, label, pred) {
  const out = {};
  for (const x of m.get(name) || []) if (!pred || pred(x.l)) out[x.l[label]] = (out[x.l[label]] || 0) + x.v;
  return out;
}

// Sample holds two consecutive scrapes to turn counters into rates.
class Sample {
  constructor(cur, prev, dt) { this.cur = cur; this.prev = prev; this.dt = dt; }
  value(name, pred) { return total(this.cur, name, pred); }
  rate(name, pred) {
    if (!this.prev) return null;
    const a = total(this.cur, name, pred), b = total(this.prev, name, pred);
    if (a == null) return 0;
    const d = a - (b || 0);
    return d < 0 ? null : d / this.dt;
  }
  ratesBy(name, label, pred) {
    const out = {};
    if (!this.prev) return out;
    const a = byLabel(this.cur, name, label, pred), b = byLabel(this.prev, name, label, pred);
    for (const k of Object.keys(a)) { const d = a[k] - (b[k] || 0); out[k] = d < 0 ? null : d / this.dt; }
    return out;
  }
  // quantile of a histogram over the last interval, summed over all series.
  quantile(name, q) {
    if (!this.prev) return null;
    const a = byLabel(this.cur, name + '_bucket', 'le'), b = byLabel(this.prev, name + '_bucket', 'le');
    const les = Object.keys(a).map((le) => [le === '+Inf' ? Infinity : parseFloat(le), a[le] - (b[le] || 0)]).sort((x, y) => x[0] - y[0]);
    if (!les.length) return null;
    const n = les[les.length - 1][1];
    if (n <= 0) return null;
    let prevLe = 0, prevCount = 0;
    for (const [le, c] of les) {
      if (c >= q * n) {
        if (le === Infinity) return prevLe;
        return prevLe + ((le - prevLe) * (q * n - prevCount)) / Math.max(c - prevCount, 1e-9);
      }
      prevLe = le; prevCount = c;
    }
    return prevLe;
  }
}

// ---- overview --------------------------------------------------------------

const charts = {};

function makeCharts() {
  const ms = (v) => fmtNum(v) + ' ms', pct = (v) => fmtNum(v) + '%', sec = (v) => fmtNum(v) + ' s';
  charts.rate = new LineChart($('#chart-rate'), { format: (v) => fmtNum(v) + '/s' });
  charts.latency = new LineChart($('#chart-latency'), { format: ms });
  charts.lag = new LineChart($('#chart-lag'), {});
  charts.archive = new LineChart($('#chart-archive'), { format: sec });
  charts.full = new LineChart($('#chart-full'), { format: pct, max: 100 });
  charts.failed = new LineChart($('#chart-failed'), { format: (v) => fmtNum(v) + '/s' });
}

const notAccepted = (l) => l.outcome !== 'accepted';

function updateOverview(t, s) {
  const accepted = s.rate('clickpipe_ingest_events_total', (l) => l.outcome === 'accepted');
  const invalid = s.rate('clickpipe_ingest_events_total', (l) => l.outcome === 'invalid');
  const refused = s.rate('clickpipe_ingest_events_total', (l) => ['rate_limited', 'unavailable', 'not_stored'].includes(l.outcome));
  const dups = s.rate('clickpipe_process_events_total', (l) => l.result === 'duplicate');
  const applied = s.rate('clickpipe_process_events_total', (l) => l.result === 'applied');
  charts.rate.push(t, { accepted, failed: invalid, duplicates: dups, refused, applied });

  const lat = {};
  for (const [k, q] of [['p50', 0.5], ['p90', 0.9], ['p99', 0.99]]) {
    const v = s.quantile('clickpipe_ingest_request_duration_seconds', q);
    lat[k] = v == null ? null : v * 1000;
  }
  charts.latency.push(t, lat);

  const lag = {};
  for (const x of s.cur.get('clickpipe_process_consumer_lag_messages') || []) lag['p' + x.l.partition] = x.v;
  charts.lag.push(t, lag);

  const arch = {};
  for (const x of s.cur.get('clickpipe_archive_lag_seconds') || []) arch[x.l.table] = x.v;
  charts.archive.push(t, arch);

  const full = {};
  for (const x of s.cur.get('clickpipe_buffer_stream_bytes') || []) {
    const max = total(s.cur, 'clickpipe_buffer_stream_max_bytes', (l) => l.stream === x.l.stream);
    if (max > 0) full[x.l.stream.toLowerCase() + ' stream'] = (100 * x.v) / max;
  }
  const dfree = s.value('clickpipe_disk_free_bytes'), dtotal = s.value('clickpipe_disk_total_bytes');
  if (dtotal > 0) full.disk = (100 * (dtotal - dfree)) / dtotal;
  charts.full.push(t, full);

  const maxOf = (o) => { const v = Object.values(o).filter((x) => x != null); return v.length ? Math.max(...v) : null; };
  tiles([
    ['accepted events/s', fmtNum(accepted)],
    ['failed events/s', fmtNum(invalid)],
    ['duplicates/s', fmtNum(dups)],
    ['ingest p99', lat.p99 == null ? '–' : fmtNum(lat.p99) + ' ms'],
    ['max consumer lag', fmtNum(maxOf(lag)) + ' msgs'],
    ['max archive lag', fmtNum(maxOf(arch)) + ' s'],
    ['events stream', fmtPct(full['events stream'])],
    ['disk used', fmtPct(full.disk)],
    ['live subscribers', fmtNum(s.value('clickpipe_ingest_live_subscribers'))],
    ['resident memory', fmtBytes(s.value('clickpipe_process_resident_memory_bytes'))],
    ['goroutines', fmtNum(s.value('go_goroutines'))],
  ]);

  const reasons = {};
  for (const [k, v] of Object.entries(s.ratesBy('clickpipe_ingest_events_total', 'reason', (l) => l.outcome === 'invalid'))) reasons[k || '(none)'] = v;
  for (const [k, v] of Object.entries(s.ratesBy('clickpipe_ingest_events_total', 'outcome', (l) => notAccepted(l) && l.outcome !== 'invalid'))) reasons[k] = v;
  charts.failed.push(t, reasons);
}

function tiles(items) {
  const box = $('#tiles');
  if (box.children.length !== items.length) {
    box.replaceChildren(...items.map(([label]) => {
      const d = el('div', null, 'tile');
      d.append(el('b', '–'), el('span', label));
      return d;
    }));
  }
  items.forEach(([, v], i) => { box.children[i].firstChild.textContent = v; });
}

function renderReadiness(r) {
  const badge = $('#ready-badge');
  badge.textContent = r.ready ? 'ready' : 'not ready';
  badge.className = 'badge ' + (r.ready ? 'ok' : 'bad');
  const table = $('#readiness');
  table.replaceChildren(row(['ready', r.ready ? 'yes' : 'no']), ...Object.entries(r.checks || {}).map(([k, v]) => {
    const tr = row([k, v]);
    tr.lastChild.className = v === 'ok' ? 'ok' : 'bad';
    return tr;
  }));
  table.querySelectorAll('tr').forEach((tr) => { const td = tr.firstChild; const th = el('th', td.textContent); tr.replaceChild(th, td); });
}

function renderFailedTotals(m) {
  const rows = (m.get('clickpipe_ingest_events_total') || []).filter((x) => notAccepted(x.l) && x.v > 0)
    .sort((a, b) => b.v - a.v).map((x) => row([x.l.outcome, x.l.reason || '–', fmtNum(x.v)]));
  $('#failed-totals tbody').replaceChildren(...rows);
}

let prevMetrics = null, prevT = 0, polling = false;

async function poll() {
  if (polling || document.hidden || !token) return;
  polling = true;
  try {
    const t = Date.now();
    const [mr, rr] = await Promise.all([request('/metrics'), request('/readyz')]);
    const m = parseMetrics(await mr.text());
    renderReadiness(await rr.json());
    updateOverview(t, new Sample(m, prevMetrics, (t - prevT) / 1000));
    prevMetrics = m; prevT = t;
    if (current === 'overview') for (const k of ['rate', 'latency', 'lag', 'archive', 'full']) charts[k].draw();
    if (current === 'failed') { charts.failed.draw(); renderFailedTotals(m); }
  } catch (err) {
    failed(err);
  } finally {
    polling = false;
  }
}

// ---- live events -------------------------------------------------------------

const live = { ctrl: null, paused: false, skipped: 0, rows: 0, seen: 0, unshown: 0, queue: [], key: '' };

function liveFilters() {
  const f = new FormData($('#live-filters'));
  return { source: f.get('source').trim(), user_id: f.get('user_id').trim(), event: f.get('event').trim().toLowerCase(), type: f.get('type') };
}

function liveStart() {
  const f = liveFilters();
  const key = f.source + '\n' + f.user_id;
  if (live.ctrl && live.key === key) return;
  liveStop();
  live.key = key;
  const q = new URLSearchParams();
  if (f.source) q.set('source', f.source);
  if (f.user_id) q.set('user_id', f.user_id);
  const ctrl = new AbortController();
  live.ctrl = ctrl;
  liveRead('/v1/events/live?' + q, ctrl).catch((err) => {
    if (ctrl.signal.aborted) return;
    failed(err, $('#live-status'));
    if (live.ctrl === ctrl) { live.ctrl = null; setTimeout(() => { if (current === 'live' && !live.ctrl) liveStart(); }, 2000); }
  });
}

function liveStop() {
  if (live.ctrl) { live.ctrl.abort(); live.ctrl = null; }
}

async function liveRead(path, ctrl) {
  const r = await request(path, { signal: ctrl.signal });
  if (!r.ok) throw new Error('live events: HTTP ' + r.status);
  $('#live-status').textContent = 'connected';
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error('live events: the server closed the stream');
    buf += value;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      if (data) liveEvent(data);
    }
  }
}

// Under full load the stream carries thousands of events a second: they
// are queued as raw text and, ten times a second, at most LIVE_RENDER_MAX
// of the newest are parsed, filtered and shown; the rest are only counted.
const LIVE_RENDER_MAX = 50, LIVE_QUEUE_MAX = 2000;

function liveEvent(data) {
  live.seen++;
  if (live.paused) { live.skipped++; return; }
  live.queue.push(data);
  if (live.queue.length > LIVE_QUEUE_MAX) { live.unshown += live.queue.length - LIVE_QUEUE_MAX; live.queue.splice(0, live.queue.length - LIVE_QUEUE_MAX); }
}

function liveFlush() {
  if (!live.queue.length) { if (current === 'live') liveStatus(); return; }
  const batch = live.queue.splice(0);
  const show = batch.slice(-LIVE_RENDER_MAX);
  live.unshown += batch.length - show.length;
  const f = liveFilters();
  const tbody = $('#live-table tbody');
  for (const data of show) {
    let ev;
    try { ev = JSON.parse(data); } catch { continue; }
    if (f.type && ev.type !== f.type) continue;
    if (f.event && !String(ev.event || ev.name || '').toLowerCase().includes(f.event)) continue;
    const tr = row([fmtTime(ev.receivedAt), ev.source, ev.type, ev.event || ev.name || '', ev.userId || ev.anonymousId, ev.messageId]);
    tr.dataset.i = '';
    tr.ev = ev;
    tbody.prepend(tr);
    live.rows++;
  }
  while (live.rows > LIVE_MAX_ROWS) { tbody.lastChild.remove(); live.rows--; }
  liveStatus();
}

function liveStatus() {
  $('#live-status').textContent = (live.paused ? 'paused, ' + live.skipped + ' not shown' : 'live') + ' · ' + live.seen + ' received' +
    (live.unshown ? ' · ' + live.unshown + ' skipped to keep up' : '');
}

function selectRow(tbody, pre, show) {
  tbody.addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (!tr || !tr.ev) return;
    tbody.querySelectorAll('tr.sel').forEach((x) => x.classList.remove('sel'));
    tr.classList.add('sel');
    pre.textContent = show(tr.ev);
  });
}

// ---- failed events -----------------------------------------------------------

async function loadFailed() {
  try {
    const body = await getJSON('/v1/failed/recent?limit=100');
    const rows = (body.items || []).map((it) => {
      const tr = row([fmtTime(it.receivedAt), it.source, it.reason, it.detail, it.messageId]);
      tr.dataset.i = '';
      tr.ev = it;
      return tr;
    });
    if (!rows.length) rows.push(row(['no failed items in the stream']));
    $('#failed-table tbody').replaceChildren(...rows);
  } catch (err) { failed(err, $('#failed-json')); }
}

function showFailed(it) {
  let raw = it.raw;
  if (typeof raw === 'string') { try { raw = JSON.parse(raw); } catch { /* keep the text */ } }
  const meta = Object.assign({}, it);
  delete meta.raw;
  return JSON.stringify(meta, null, 2) + '\n\noriginal payload:\n' + (typeof raw === 'string' ? raw : JSON.stringify(raw, null, 2));
}

// ---- users ---------------------------------------------------------------------

async function lookupUser(id) {
  $('#user-form').user.value = id;
  const u = '/v1/users/' + encodeURIComponent(id);
  const fresh = $('#user-fresh');
  fresh.textContent = 'loading…';
  try {
    const [cw, ss, prof] = await Promise.all([getJSON(u + '/continue-watching'), getJSON(u + '/sessions?limit=50'), getJSON(u + '/profile')]);
    fresh.textContent = 'as of ' + fmtTime(cw.as_of) + ' · lag ' + fmtDur(cw.lag_seconds);
    const items = cw.items || [];
    $('#user-cw tbody').replaceChildren(...(items.length ? items.map((it) => {
      const bar = el('span', null, 'bar');
      bar.style.width = Math.round(60 * (it.progress || 0)) + 'px';
      const prog = el('span');
      prog.append(bar, ' ' + Math.round(100 * (it.progress || 0)) + ' %');
      return row([it.title || it.asset_id, it.series_id || '', it.season != null ? 'S' + it.season + 'E' + (it.episode ?? '?') : '',
        fmtDur(it.position_seconds) + ' of ' + fmtDur(it.total_seconds), prog, fmtTime(it.last_watched_at)]);
    }) : [row(['nothing to continue'])]));
    const sessions = ss.sessions || [];
    $('#user-sessions tbody').replaceChildren(...(sessions.length ? sessions.map((s) => row([fmtTime(s.start), s.state + (s.closed_by ? ' (' + s.closed_by + ')' : ''),
      fmtDur(s.duration_seconds), s.events, s.plays, fmtDur(s.watch_seconds), s.clicks_to_play, fmtDur(s.time_to_play_seconds),
      (s.screens_before_play || []).join(' › ') + (s.browse_abandon ? ' (abandoned)' : '')])) : [row(['no sessions'])]));
    kvTable($('#user-profile'), prof, ['user_id']);
  } catch (err) { failed(err, fresh); }
}

// ---- titles and paths ----------------------------------------------------------

async function lookupTitle(id) {
  $('#title-form').asset.value = id;
  try { kvTable($('#title-stats'), await getJSON('/v1/titles/' + encodeURIComponent(id) + '/stats')); } catch (err) { failed(err); }
}

async function loadPaths() {
  try {
    const body = await getJSON('/v1/paths/top');
    const paths = body.paths || [];
    const max = Math.max(1, ...paths.map((p) => p.sessions));
    $('#paths tbody').replaceChildren(...(paths.length ? paths.map((p) => {
      const bar = el('span', null, 'bar');
      bar.style.width = Math.round((200 * p.sessions) / max) + 'px';
      return row([p.path, p.sessions, bar]);
    }) : [row(['no closed sessions yet'])]));
  } catch (err) { failed(err); }
}

// ---- lake ----------------------------------------------------------------------

async function loadLake() {
  const note = $('#lake-note');
  try {
    const [body, mtext] = await Promise.all([getJSON('/v1/lake/status'), request('/metrics').then((r) => r.text())]);
    const m = parseMetrics(mtext);
    note.textContent = body.enabled ? (body.url ? body.url + ' · ' : '') + 'read ' + fmtTime(new Date().toISOString()) : 'archive disabled';
    const tables = body.tables || [];
    const metric = (name, table) => total(m, name, (l) => l.table === table);
    $('#lake-tables tbody').replaceChildren(...tables.map((t) => {
      const behind = metric('clickpipe_archive_behind', t.table), regress = metric('clickpipe_archive_sequence_regression', t.table);
      const tr = row([t.table, t.ranges, t.ranges ? t.firstSeq + '–' + t.lastSeq : '–', fmtNum(t.rows), fmtBytes(t.bytes),
        (t.gaps || []).map((g) => g.join('–')).join(', ') || 'none', (t.overlaps || []).map((g) => g.join('–')).join(', ') || 'none',
        t.orphans, t.staged ?? 0, (t.pendingErasures || []).length, fmtTime(t.lastCommit), fmtNum(metric('clickpipe_archive_lag_messages', t.table)),
        fmtDur(metric('clickpipe_archive_lag_seconds', t.table)), regress ? 'sequence regression' : behind ? 'retrying' : 'ok']);
      if (behind || regress || (t.gaps || []).length) tr.lastChild.className = 'bad';
      return tr;
    }));
    $('#lake-parts tbody').replaceChildren(...tables.flatMap((t) => (t.partitions || []).slice(-48).reverse().map((p) =>
      row([t.table, p.partition, p.objects, fmtNum(p.rows), fmtBytes(p.bytes), p.minSeq + '–' + p.maxSeq]))));
  } catch (err) { failed(err, note); }
}

// ---- navigation and sign-in ----------------------------------------------------

let current = '';
const PAGES = ['overview', 'live', 'failed', 'users', 'titles', 'lake'];

function route() {
  const [page, arg] = (location.hash.slice(1) || 'overview').split('/').map(decodeURIComponent);
  const name = PAGES.includes(page) ? page : 'overview';
  if (name !== current) {
    current = name;
    for (const p of PAGES) $('#page-' + p).hidden = p !== name;
    document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.getAttribute('href') === '#' + name));
    document.title = $('#page-' + name).dataset.title + ' · clickpipe console';
    if (name === 'live') liveStart(); else liveStop();
    if (name === 'failed') loadFailed();
    if (name === 'titles') loadPaths();
    if (name === 'lake') loadLake();
    if (name === 'overview' || name === 'failed') for (const c of Object.values(charts)) c.draw();
  }
  if (name === 'users' && arg) lookupUser(arg);
  if (name === 'titles' && arg) lookupTitle(arg);
}

// go navigates to hash, and looks up again when it is already there.
function go(hash) {
  if (location.hash === '#' + hash) route(); else location.hash = hash;
}

function signOut(message) {
  token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  liveStop();
  current = '';
  $('#app').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
}

function start() {
  $('#login').hidden = true;
  $('#app').hidden = false;
  route();
  poll();
}

function wire() {
  makeCharts();
  setInterval(poll, POLL_MS);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) poll(); });
  window.addEventListener('hashchange', route);
  window.addEventListener('resize', () => { for (const c of Object.values(charts)) c.draw(); });
  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    token = $('#token').value.trim();
    try {
      const r = await request('/v1/paths/top');
      if (!r.ok) throw new Error('HTTP ' + r.status);
      sessionStorage.setItem(TOKEN_KEY, token);
      $('#token').value = '';
      start();
    } catch (err) {
      signOut(err instanceof Unauthorized ? 'The server rejected this token.' : 'Could not reach the server: ' + err.message);
    }
  });
  $('#logout').addEventListener('click', () => signOut());
  $('#live-pause').addEventListener('click', (e) => {
    live.paused = !live.paused;
    live.skipped = 0;
    live.queue = [];
    e.target.textContent = live.paused ? 'Resume' : 'Pause';
    liveStatus();
  });
  $('#live-clear').addEventListener('click', () => { live.rows = 0; $('#live-table tbody').replaceChildren(); });
  setInterval(liveFlush, 100);
  $('#live-filters').addEventListener('change', () => { if (current === 'live') liveStart(); });
  $('#live-filters').addEventListener('submit', (e) => e.preventDefault());
  selectRow($('#live-table tbody'), $('#live-json'), (ev) => JSON.stringify(ev, null, 2));
  selectRow($('#failed-table tbody'), $('#failed-json'), showFailed);
  $('#failed-refresh').addEventListener('click', loadFailed);
  $('#paths-refresh').addEventListener('click', loadPaths);
  $('#lake-refresh').addEventListener('click', loadLake);
  $('#user-form').addEventListener('submit', (e) => {
    e.preventDefault();
    go('users/' + encodeURIComponent(e.target.user.value.trim()));
  });
  $('#title-form').addEventListener('submit', (e) => {
    e.preventDefault();
    go('titles/' + encodeURIComponent(e.target.asset.value.trim()));
  });
  if (token) start(); else signOut();
}

wire();

// linechart.js: a small time-series line chart on a canvas, written for the
// clickpipe console. Series are keyed by name and may appear at any time;
// values are kept for a fixed window of seconds.
'use strict';

const PALETTE = ['#2f6fde', '#d9822b', '#2e9d5b', '#c62828', '#8e44ad', '#00838f', '#b7950b',
  '#6d4c41', '#e91e63', '#546e7a', '#7cb342', '#3949ab'];

class LineChart {
  // opts: {window: seconds, format: v => string, min: number|undefined, max: number|undefined}
  constructor(canvas, opts) {
    this.canvas = canvas;
    this.legend = canvas.parentElement.querySelector('.legend');
    this.opts = Object.assign({ window: 300, format: (v) => fmtNum(v) }, opts || {});
    this.series = new Map();
    this.points = 0;
  }

  // push records values ({name: number|null}) at time t (ms).
  push(t, values) {
    for (const [name, v] of Object.entries(values)) {
      let s = this.series.get(name);
      if (!s) {
        s = { color: PALETTE[this.series.size % PALETTE.length], data: [] };
        this.series.set(name, s);
        this.legendDirty = true;
      }
      s.data.push([t, v]);
    }
    const cut = t - this.opts.window * 1000;
    for (const s of this.series.values()) {
      while (s.data.length && s.data[0][0] < cut) s.data.shift();
    }
    this.points++;
    this.now = t;
    this.canvas.dataset.points = String(this.points);
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const left = 56, right = 8, top = 6, bottom = 18;
    const pw = w - left - right, ph = h - top - bottom;
    let lo = Infinity, hi = -Infinity;
    for (const s of this.series.values()) {
      for (const [, v] of s.data) {
        if (v == null || !isFinite(v)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    if (this.opts.min !== undefined) lo = Math.min(lo, this.opts.min);
    if (this.opts.max !== undefined) hi = Math.max(hi, this.opts.max);
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (lo > 0) lo = 0;
    if (hi <= lo) hi = lo + 1;
    hi = niceCeil(hi);
    this.canvas.dataset.max = String(hi);
    // The x axis spans the window, or only the history so far (at least
    // 30 s) so that a young chart fills its width.
    const t1 = this.now || Date.now();
    let first = t1;
    for (const s of this.series.values()) if (s.data.length && s.data[0][0] < first) first = s.data[0][0];
    const span = Math.min(this.opts.window, Math.max(30, (t1 - first) / 1000));
    const t0 = t1 - span * 1000;
    const x = (t) => left + ((t - t0) / (t1 - t0)) * pw;
    const y = (v) => top + ph - ((v - lo) / (hi - lo)) * ph;

    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#6b7380';
    g.strokeStyle = '#e6e9ed';
    g.lineWidth = 1;
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4, yy = Math.round(y(v)) + 0.5;
      g.beginPath(); g.moveTo(left, yy); g.lineTo(w - right, yy); g.stroke();
      g.fillText(this.opts.format(v), left - 6, yy);
    }
    g.textAlign = 'center';
    g.textBaseline = 'top';
    const step = span / 5;
    for (let i = 0; i <= 5; i++) {
      const ago = Math.round(span - i * step);
      g.fillText(ago === 0 ? 'now' : '-' + fmtAgo(ago), x(t0 + i * step * 1000), top + ph + 4);
    }
    g.lineWidth = 1.5;
    for (const s of this.series.values()) {
      g.strokeStyle = s.color;
      g.beginPath();
      let pen = false;
      for (const [t, v] of s.data) {
        if (v == null || !isFinite(v)) { pen = false; continue; }
        if (pen) g.lineTo(x(t), y(v)); else g.moveTo(x(t), y(v));
        pen = true;
      }
      g.stroke();
    }
    this.drawLegend();
  }

  drawLegend() {
    if (!this.legend) return;
    const parts = [];
    for (const [name, s] of this.series) {
      const last = s.data.length ? s.data[s.data.length - 1][1] : null;
      parts.push([name, s.color, last == null ? '–' : this.opts.format(last)]);
    }
    const key = parts.map((p) => p.join('|')).join(';');
    if (key === this.legendKey) return;
    this.legendKey = key;
    this.legend.replaceChildren(...parts.map(([name, color, val]) => {
      const span = document.createElement('span');
      const i = document.createElement('i');
      i.style.background = color;
      span.append(i, name + ' ' + val);
      return span;
    }));
  }
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtAgo(s) { return s >= 60 ? (s / 60).toFixed(s % 60 ? 1 : 0) + 'm' : s + 's'; }

function fmtNum(v) {
  if (v == null || !isFinite(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + 'G';
  if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(0) + 'k';
  if (a >= 1e3) return (v / 1e3).toFixed(1) + 'k';
  if (a >= 10 || Number.isInteger(v)) return v.toFixed(0);
  if (a >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

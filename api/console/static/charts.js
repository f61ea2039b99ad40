// Charts drawn as SVG by hand: horizontal bars and bars per day.

import { h } from './dom.js';

// hbars draws one bar per item: {label, value, cls, note}.
export function hbars(items, { width = 520, unit = '' } = {}) {
  const rowH = 26, labelW = 150, max = Math.max(1, ...items.map((i) => i.value));
  const svg = h('svg', { class: 'chart', width, viewBox: `0 0 ${width} ${items.length * rowH + 8}`, role: 'img' });
  items.forEach((it, i) => {
    const y = i * rowH + 4, w = ((width - labelW - 70) * it.value) / max;
    svg.append(
      h('text', { x: labelW - 8, y: y + 16, 'text-anchor': 'end', class: 'axis' }, it.label),
      h('rect', { x: labelW, y, width: Math.max(w, 1).toFixed(1), height: rowH - 8, class: `bar ${it.cls || ''}` }),
      h('text', { x: labelW + w + 6, y: y + 15, class: 'value', 'data-label': it.label }, it.note ?? `${it.value}${unit}`));
  });
  return svg;
}

// dayBars draws, for each day, one bar per series side by side, with a
// legend: series are {key, label, cls}.
export function dayBars(days, series, { width = 960, height = 240 } = {}) {
  const pad = { l: 36, r: 8, t: 10, b: 36 };
  const max = Math.max(1, ...days.flatMap((d) => series.map((s) => d[s.key] || 0)));
  const iw = width - pad.l - pad.r, ih = height - pad.t - pad.b;
  const slot = iw / Math.max(1, days.length), bw = Math.max(2, (slot * 0.8) / series.length);
  const svg = h('svg', { class: 'chart', width, viewBox: `0 0 ${width} ${height + 20}`, role: 'img' });
  const ticks = niceTicks(max);
  for (const t of ticks) {
    const y = pad.t + ih - (ih * t) / ticks[ticks.length - 1];
    svg.append(h('line', { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: 'gridline' }), h('text', { x: pad.l - 4, y: y + 4, 'text-anchor': 'end', class: 'axis' }, t));
  }
  const top = ticks[ticks.length - 1];
  days.forEach((d, i) => {
    const x0 = pad.l + i * slot + slot * 0.1;
    series.forEach((s, j) => {
      const v = d[s.key] || 0, bh = (ih * v) / top;
      svg.append(h('rect', { x: (x0 + j * bw).toFixed(1), y: (pad.t + ih - bh).toFixed(1), width: (bw - 1).toFixed(1), height: Math.max(bh, 0).toFixed(1), class: `bar ${s.cls}` },
        h('title', {}, `${d.date} ${s.label}: ${v}`)));
    });
    if (days.length <= 16 || i % Math.ceil(days.length / 16) === 0) {
      svg.append(h('text', { x: (x0 + slot * 0.4).toFixed(1), y: height - pad.b + 16, 'text-anchor': 'middle', class: 'axis' }, d.date.slice(5)));
    }
  });
  series.forEach((s, j) => {
    const x = pad.l + j * 130;
    svg.append(h('rect', { x, y: height + 4, width: 12, height: 12, class: `bar ${s.cls}` }), h('text', { x: x + 16, y: height + 14, class: 'axis' }, s.label));
  });
  return svg;
}

function niceTicks(max) {
  const step = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 1e5, 2e5, 5e5, 1e6].find((s) => max / s <= 5) || 1e7;
  const out = [];
  for (let v = 0; v <= max + step - 1 && out.length < 8; v += step) out.push(v);
  if (out[out.length - 1] < max) out.push(out[out.length - 1] + step);
  return out;
}

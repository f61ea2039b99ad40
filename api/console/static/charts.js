// Charts drawn as SVG by hand: horizontal bars, bars per day, the
// variants' share of each day's offers, rates with their intervals, and
// a score's trend per week with its interval band.

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

// allocationBars draws, for each day, one bar of the day's offers split
// by variant (a bandit's allocation over time), each part as tall as the
// variant's share; series are {id, cls}, days the experiment's
// allocation ({date, issued, share}).
export function allocationBars(days, series, { width = 520, height = 200 } = {}) {
  const pad = { l: 40, r: 8, t: 8, b: 24 };
  const iw = width - pad.l - pad.r, ih = height - pad.t - pad.b;
  const slot = iw / Math.max(1, days.length), bw = Math.max(3, Math.min(48, slot * 0.7));
  const svg = h('svg', { class: 'chart allocation', width, viewBox: `0 0 ${width} ${height + 20}`, role: 'img', 'aria-label': 'share of the offers per variant, per day' });
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    const y = pad.t + ih - ih * t;
    svg.append(h('line', { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: 'gridline' }), h('text', { x: pad.l - 4, y: y + 4, 'text-anchor': 'end', class: 'axis' }, `${t * 100}%`));
  }
  days.forEach((d, i) => {
    const x = pad.l + i * slot + (slot - bw) / 2;
    const total = Object.values(d.issued || {}).reduce((a, b) => a + b, 0);
    let y = pad.t + ih;
    for (const s of series) {
      const share = d.share?.[s.id] || 0, bh = ih * share;
      if (bh <= 0) continue;
      y -= bh;
      svg.append(h('rect', { x: x.toFixed(1), y: y.toFixed(1), width: bw.toFixed(1), height: bh.toFixed(1), class: `bar ${s.cls}`, 'data-variant': s.id, 'data-date': d.date },
        h('title', {}, `${d.date} ${s.id}: ${d.issued?.[s.id] || 0} of ${total} offers (${(share * 100).toFixed(1)}%)`)));
    }
    if (days.length <= 12 || i % Math.ceil(days.length / 12) === 0) {
      svg.append(h('text', { x: (x + bw / 2).toFixed(1), y: height - pad.b + 16, 'text-anchor': 'middle', class: 'axis' }, d.date.slice(5)));
    }
  });
  series.forEach((s, j) => {
    const x = pad.l + j * 64;
    svg.append(h('rect', { x, y: height + 4, width: 12, height: 12, class: `bar ${s.cls}` }), h('text', { x: x + 16, y: height + 14, class: 'axis' }, s.id));
  });
  return svg;
}

// intervals draws each rate as a dot on a line from the low to the high
// end of its 95% interval, on one scale from 0: items are {label, rate:
// {value, low, high}, cls, best}.
export function intervals(items, { width = 520 } = {}) {
  const rowH = 26, labelW = 60, right = 150;
  const max = Math.max(0.01, ...items.map((i) => i.rate.high));
  const x = (v) => labelW + ((width - labelW - right) * v) / max;
  const svg = h('svg', { class: 'chart intervals', width, viewBox: `0 0 ${width} ${items.length * rowH + 22}`, role: 'img', 'aria-label': 'rates with their 95% intervals' });
  items.forEach((it, i) => {
    const y = i * rowH + 14;
    const r = it.rate;
    svg.append(
      h('text', { x: labelW - 8, y: y + 4, 'text-anchor': 'end', class: 'axis' }, it.label),
      h('line', { x1: x(r.low).toFixed(1), x2: x(r.high).toFixed(1), y1: y, y2: y, class: `interval ${it.cls}` }),
      h('line', { x1: x(r.low).toFixed(1), x2: x(r.low).toFixed(1), y1: y - 5, y2: y + 5, class: `interval ${it.cls}` }),
      h('line', { x1: x(r.high).toFixed(1), x2: x(r.high).toFixed(1), y1: y - 5, y2: y + 5, class: `interval ${it.cls}` }),
      h('circle', { cx: x(r.value).toFixed(1), cy: y, r: 4.5, class: `bar ${it.cls}` }),
      h('text', { x: width - right + 8, y: y + 4, class: 'value', 'data-label': it.label },
        `${(r.value * 100).toFixed(1)}% (${(r.low * 100).toFixed(1)}–${(r.high * 100).toFixed(1)})${it.best ? ' best' : ''}`));
  });
  const y = items.length * rowH + 8;
  svg.append(h('line', { x1: labelW, x2: x(max), y1: y, y2: y, class: 'gridline' }),
    h('text', { x: labelW, y: y + 12, class: 'axis', 'text-anchor': 'middle' }, '0%'),
    h('text', { x: x(max), y: y + 12, class: 'axis', 'text-anchor': 'middle' }, `${(max * 100).toFixed(1)}%`));
  return svg;
}

// trendLine draws a score per week as a line through its points, over the
// band of their 95% intervals: weeks are the ISO weeks of the x axis in
// order ("2026-W48"), points {week, value, low, high, answers, enough}
// those with answers; scale is {min, max, ticks, name, fmt}. A point with
// too few answers to be a score is drawn hollow.
export function trendLine(weeks, points, scale, { width = 320, height = 150 } = {}) {
  const pad = { l: 34, r: 8, t: 8, b: 22 };
  const iw = width - pad.l - pad.r, ih = height - pad.t - pad.b;
  const x = (week) => pad.l + (weeks.length > 1 ? (iw * weeks.indexOf(week)) / (weeks.length - 1) : iw / 2);
  const y = (v) => pad.t + ih - (ih * (Math.max(scale.min, Math.min(scale.max, v)) - scale.min)) / (scale.max - scale.min);
  const svg = h('svg', { class: `chart trend ${scale.name.toLowerCase()}`, width, viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `${scale.name} per week, with 95% intervals` });
  for (const t of scale.ticks) {
    svg.append(h('line', { x1: pad.l, x2: width - pad.r, y1: y(t), y2: y(t), class: `gridline${t === scale.mark ? ' mark' : ''}` }),
      h('text', { x: pad.l - 4, y: y(t) + 4, 'text-anchor': 'end', class: 'axis' }, String(t)));
  }
  const pts = points.filter((p) => weeks.includes(p.week)).sort((a, b) => weeks.indexOf(a.week) - weeks.indexOf(b.week));
  if (pts.length > 1) {
    const upper = pts.map((p) => `${x(p.week).toFixed(1)},${y(p.high).toFixed(1)}`);
    const lower = pts.slice().reverse().map((p) => `${x(p.week).toFixed(1)},${y(p.low).toFixed(1)}`);
    svg.append(h('polygon', { class: 'band', points: [...upper, ...lower].join(' ') }),
      h('polyline', { class: 'line', points: pts.map((p) => `${x(p.week).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ') }));
  }
  for (const p of pts) {
    const px = x(p.week).toFixed(1);
    svg.append(h('line', { class: 'whisker', x1: px, x2: px, y1: y(p.low).toFixed(1), y2: y(p.high).toFixed(1) }),
      h('circle', { class: `point${p.enough ? '' : ' few'}`, cx: px, cy: y(p.value).toFixed(1), r: 3.5, 'data-week': p.week, 'data-value': scale.fmt(p.value) },
        h('title', {}, `${p.week}: ${scale.name} ${scale.fmt(p.value)} (95%: ${scale.fmt(p.low)} to ${scale.fmt(p.high)}), ${p.answers} answer${p.answers === 1 ? '' : 's'}${p.enough ? '' : ', too few for a score'}`)));
  }
  const label = (week, anchor) => h('text', { x: x(week).toFixed(1), y: height - 6, 'text-anchor': anchor, class: 'axis' }, week.slice(5));
  if (weeks.length) svg.append(label(weeks[0], 'start'));
  if (weeks.length > 2) svg.append(label(weeks[Math.floor((weeks.length - 1) / 2)], 'middle'));
  if (weeks.length > 1) svg.append(label(weeks[weeks.length - 1], 'end'));
  return svg;
}

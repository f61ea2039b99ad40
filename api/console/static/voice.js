// The customer's voice (docs/feedback.md): what customers answered when a
// rule of kind feedback asked them after a visit. A store's (or a rule's)
// report from GET /v1/stores/{id}/feedback (or /v1/rules/{id}/feedback):
// its NPS or CSAT over the last 13 weeks, a colour for it on the map, and
// its trend per week with the 95% interval.

import { h } from './dom.js';
import { trendLine, hbars } from './charts.js';

// BANDS are the colours a store's score takes: NPS below 0, 0 to 30,
// above 30; a store with CSAT answers only, by their mean of 1 to 5;
// grey for a store without enough answers for a score.
export const BANDS = [
  { band: 'red', nps: 'below 0', csat: 'below 3' },
  { band: 'amber', nps: '0 to 30', csat: '3 to 4' },
  { band: 'green', nps: 'above 30', csat: '4 and above' },
  { band: 'none', nps: 'not enough answers', csat: '' },
];

const sign = (v) => (v < 0 ? `−${Math.abs(v)}` : String(v));
export const fmtNPS = (v) => sign(Math.round(v));
export const fmtCSAT = (v) => v.toFixed(1);

// band tells a report's colour and what to write for it: the NPS when it
// has enough answers, else the CSAT's mean when it has; else grey, "not
// enough answers".
export function band(rep) {
  if (!rep) return { band: 'unknown', text: '', title: 'not loaded: zoom in' };
  const nps = rep.nps, csat = rep.csat;
  if (nps?.enough_data) {
    const b = nps.score < 0 ? 'red' : nps.score <= 30 ? 'amber' : 'green';
    return { band: b, text: `NPS ${fmtNPS(nps.score)}`, title: `NPS ${fmtNPS(nps.score)} (95%: ${fmtNPS(nps.low)} to ${fmtNPS(nps.high)}) from ${nps.answers} answers, last 13 weeks` };
  }
  if (csat?.enough_data) {
    const b = csat.mean < 3 ? 'red' : csat.mean < 4 ? 'amber' : 'green';
    return { band: b, text: `CSAT ${fmtCSAT(csat.mean)}`, title: `CSAT ${fmtCSAT(csat.mean)} of 5 (95%: ${fmtCSAT(csat.low)} to ${fmtCSAT(csat.high)}) from ${csat.answers} answers, last 13 weeks` };
  }
  const n = Math.max(nps?.answers || 0, csat?.answers || 0);
  return { band: 'none', text: 'not enough answers', title: n ? `${n} answers of the ${rep.min_answers} a score needs, last 13 weeks` : 'no answers in the last 13 weeks' };
}

// legend explains the map's colours.
export function legend() {
  return h('div', { class: 'score-legend', id: 'score-legend', role: 'note', 'aria-label': 'store colours' },
    h('strong', {}, 'Customer voice, last 13 weeks'),
    h('ul', {}, BANDS.map((b) => h('li', { 'data-band': b.band },
      h('span', { class: `swatch score-${b.band}` }), ` ${b.band === 'none' ? b.nps : `NPS ${b.nps}`}`,
      b.csat ? h('span', { class: 'muted' }, ` · CSAT ${b.csat}`) : null))),
    h('div', { class: 'muted' }, 'CSAT (mean of 1 to 5) for stores asked CSAT only; a score needs 30 answers.'));
}

// isoWeek names the ISO week of a UTC day, as the server does: 2026-W48.
export function isoWeek(d) {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  t.setUTCDate(t.getUTCDate() + 4 - (t.getUTCDay() || 7));
  const y = t.getUTCFullYear();
  const w = Math.ceil(((t - Date.UTC(y, 0, 1)) / 86400000 + 1) / 7);
  return `${y}-W${String(w).padStart(2, '0')}`;
}

// weeksOf lists the ISO weeks of a report's days, oldest first.
function weeksOf(rep) {
  const out = [];
  const to = new Date(`${rep.to}T00:00:00Z`);
  for (let d = new Date(`${rep.from}T00:00:00Z`); d <= to; d = new Date(d.getTime() + 86400000)) {
    const w = isoWeek(d);
    if (out[out.length - 1] !== w) out.push(w);
  }
  return out;
}

const SCALES = {
  nps: { name: 'NPS', min: -100, max: 100, ticks: [-100, 0, 30, 100], mark: 0, fmt: fmtNPS },
  csat: { name: 'CSAT', min: 1, max: 5, ticks: [1, 3, 4, 5], mark: 3, fmt: fmtCSAT },
};

// trend draws a report's weekly scores on one scale.
export function trend(rep, scale) {
  const sc = SCALES[scale];
  const points = (rep.weeks || []).filter((w) => w[scale]).map((w) => {
    const s = w[scale];
    return { week: w.week, value: scale === 'nps' ? s.score : s.mean, low: s.low, high: s.high, answers: s.answers, enough: s.enough_data };
  });
  return trendLine(weeksOf(rep), points, sc);
}

// summary writes a scale's score in a line: its value and interval, or
// that it has too few answers for one.
function summary(rep, scale) {
  const s = rep[scale];
  if (!s) return null;
  const name = SCALES[scale].name, fmt = SCALES[scale].fmt, v = scale === 'nps' ? s.score : s.mean;
  const b = band({ ...rep, [scale === 'nps' ? 'csat' : 'nps']: undefined });
  return h('p', { class: `score-line ${scale}`, 'data-scale': scale },
    s.enough_data
      ? [h('span', { class: `score-chip score-${b.band}` }, `${name} ${fmt(v)}`), ` 95% interval ${fmt(s.low)} to ${fmt(s.high)} · ${s.answers} answers`]
      : [h('span', { class: 'score-chip score-none' }, `Not enough answers: ${s.answers} of the ${rep.min_answers}`),
        h('span', { class: 'muted' }, ` ${name} so far ${fmt(v)} (95%: ${fmt(s.low)} to ${fmt(s.high)})`)]);
}

// report shows a store's or a rule's answers: how many were asked and
// answered, each scale's score with its interval, its distribution (for
// a rule) and its trend per week.
export function report(rep, { distribution = false } = {}) {
  const rr = rep.response_rate;
  const scales = ['nps', 'csat'].filter((s) => rep[s]);
  return [
    h('p', { class: 'muted asked' }, rep.asked || rep.answered
      ? `${rep.answered} answered of ${rep.asked} asked (${(100 * rr.value).toFixed(1)}%, 95%: ${(100 * rr.low).toFixed(1)} to ${(100 * rr.high).toFixed(1)}), ${rep.from} to ${rep.to}.`
      : `No questions asked from ${rep.from} to ${rep.to}: a rule of kind feedback asks them after a visit.`),
    scales.map((s) => [
      summary(rep, s),
      distribution ? hbars((rep[s].distribution || []).map((n, i) => ({ label: String(s === 'nps' ? i : i + 1), value: n, cls: `score-${s === 'nps' ? (i >= 9 ? 'green' : i >= 7 ? 'amber' : 'red') : (i >= 3 ? 'green' : i >= 2 ? 'amber' : 'red')}` })), { width: 420 }) : null,
      h('div', { class: 'trend-wrap', 'data-scale': s }, h('h4', {}, `${SCALES[s].name} per week`), trend(rep, s)),
    ]),
  ];
}

// Results: per rule, the funnel (over the days chosen and per day) and the
// holdout comparison: of customers offered the rule and of those held
// out, what share came back to the store within 7 days. For a rule whose
// offer has variants, the experiment: each variant's funnel with its
// rates and their 95% intervals, the verdict, the allocation per day and
// the stores (docs/experiments.md). For a rule that asks a question after
// a visit (kind feedback), its answers: how many of those asked answered,
// its NPS or CSAT with the 95% interval, their spread and their trend per
// week (docs/feedback.md).

import { api, listAll, enc } from './api.js';
import { h, fill } from './dom.js';
import { hbars, dayBars, allocationBars, intervals } from './charts.js';
import { report } from './voice.js';

const STEPS = [
  ['evaluated', 'evaluated'], ['matched', 'matched'], ['holdout', 'held out'], ['issued', 'issued'],
  ['sent', 'sent'], ['opened', 'opened'], ['redeemed', 'redeemed'],
];

// pctOf writes a share as a percentage with one decimal.
const pctOf = (x) => (100 * x).toFixed(1);

// withInterval writes a rate and its 95% interval: 8.1% (6.2–10.4).
export function withInterval(r) {
  return `${pctOf(r.value)}% (${pctOf(r.low)}–${pctOf(r.high)})`;
}

// points writes a difference of rates in percentage points with its 95%
// interval: −3.0 points (−5.2 to −0.4).
export function points(d) {
  const p = (x) => (100 * x).toFixed(1).replace(/^-/, '−');
  return `${d.value > 0 ? '+' : ''}${p(d.value)} points (${p(d.low)} to ${p(d.high)})`;
}

// experimentCards show a rule's variants compared.
function experimentCards(ex) {
  const ids = ex.variants.map((v) => v.id);
  const cls = (id) => `v${ids.indexOf(id) % 8}`;
  const short = ex.variants.filter((v) => !v.enough_data);
  const row = (v) => {
    const cells = v.enough_data
      ? [h('td', { class: 'num rate', 'data-rate': 'open' }, withInterval(v.open_rate)),
        h('td', { class: 'num rate', 'data-rate': 'redeem' }, withInterval(v.redeem_rate)),
        h('td', { class: 'num rate', 'data-rate': 'revisit' }, withInterval(v.revisit_rate)),
        h('td', { class: 'num diff', 'data-diff': 'best' }, v.id === ex.best ? h('span', { class: 'pill best' }, 'best') : v.versus_best ? points(v.versus_best) : '—'),
        h('td', { class: 'num diff', 'data-diff': 'holdout' }, v.versus_holdout ? points(v.versus_holdout) : h('span', { class: 'muted', title: `needs ${ex.min_offers} held out` }, '—'))]
      : [h('td', { colspan: 5, class: 'not-enough' }, `Not enough data yet: ${v.issued} of the ${ex.min_offers} offers it needs before it is compared`)];
    return h('tr', { 'data-variant': v.id, class: v.enough_data ? '' : 'short' },
      h('th', { scope: 'row' }, h('span', { class: `swatch bar ${cls(v.id)}` }), ` ${v.id}`, v.discount ? h('span', { class: 'muted' }, ` · ${v.discount}`) : null),
      h('td', { class: 'num' }, `${pctOf(v.share)}%`),
      ['issued', 'sent', 'opened', 'redeemed', 'revisits'].map((k) => h('td', { class: 'num', 'data-count': k }, v[k])),
      cells);
  };
  const stores = ex.stores || [];
  return [
    h('section', { class: 'card wide experiment', id: 'experiment' },
      h('h3', {}, `Experiment · ${ex.variants.length} variants · ${ex.selection}`),
      h('p', { class: 'verdict', id: 'experiment-verdict' }, ex.verdict),
      h('table', { class: 'grid', id: 'experiment-variants' },
        h('thead', {}, h('tr', {}, ['Variant', 'Share', 'Issued', 'Sent', 'Opened', 'Redeemed', 'Came back',
          'Opened of sent', 'Redeemed of issued', 'Came back of issued', 'Redeems vs best', 'Comes back vs held out'].map((x, i) => h('th', { class: i ? 'num' : '' }, x)))),
        h('tbody', {}, ex.variants.map(row))),
      h('p', { class: 'hint' }, `Rates with their 95% intervals (Wilson score); differences in percentage points with their 95% intervals (Newcombe): an interval that includes 0 shows no difference yet. A variant is compared once it has ${ex.min_offers} offers`,
        short.length ? `; ${short.map((v) => v.id).join(', ')} ${short.length === 1 ? 'has' : 'have'} fewer.` : '.', ` Held out: ${ex.holdout}.`),
      ex.variants.some((v) => v.enough_data) ? h('div', { class: 'intervals-wrap' }, h('h4', {}, 'Redeemed of issued, with 95% intervals'),
        intervals(ex.variants.filter((v) => v.enough_data).map((v) => ({ label: v.id, rate: v.redeem_rate, cls: cls(v.id), best: v.id === ex.best })))) : null),
    h('section', { class: 'card experiment', id: 'experiment-allocation' }, h('h3', {}, 'Offers per variant, per day'),
      (ex.allocation || []).length ? allocationBars(ex.allocation, ids.map((id) => ({ id, cls: cls(id) }))) : h('p', { class: 'muted' }, 'No offers in these days yet.')),
    h('section', { class: 'card wide experiment', id: 'experiment-stores' }, h('h3', {}, 'Stores'),
      stores.length ? h('table', { class: 'grid compact' },
        h('thead', {}, h('tr', {}, ['Store', 'Offers', ...ids, 'Redeemed', 'Came back', 'Held out came back', 'Uplift'].map((x, i) => h('th', { class: i ? 'num' : '' }, x)))),
        h('tbody', {}, stores.map((s) => h('tr', { 'data-store': s.store_id },
          h('th', { scope: 'row' }, s.store_id),
          h('td', { class: 'num' }, s.issued),
          ids.map((id) => h('td', { class: 'num', 'data-variant': id }, s.variants?.[id] ?? 0)),
          h('td', { class: 'num' }, s.redeemed),
          h('td', { class: 'num rate' }, withInterval(s.revisit_rate)),
          h('td', { class: 'num rate' }, s.holdout ? [withInterval(s.holdout_revisit_rate), h('span', { class: 'muted' }, ` of ${s.holdout}`)] : '—'),
          h('td', { class: 'num diff uplift' }, s.uplift ? points(s.uplift) : h('span', { class: 'muted' }, `needs ${ex.min_offers} held out`))))))
        : h('p', { class: 'muted' }, `No store has ${ex.min_offers} of the rule's offers in these days yet.`)),
  ];
}

function rate(label, n, of) {
  return h('span', { class: 'rate' }, h('strong', {}, of ? `${((100 * (n || 0)) / of).toFixed(1)} %` : '—'), ` ${label}`);
}

export function mountResults(root, ruleId) {
  const sel = h('select', { id: 'results-rule', 'aria-label': 'rule' });
  const range = h('select', { id: 'results-days', 'aria-label': 'days' }, [7, 14, 30, 90].map((n) => h('option', { value: n, selected: n === 14 }, `last ${n} days`)));
  const out = h('div', { id: 'results-charts' });
  const kinds = new Map(); // rule id → its offer's kind
  fill(root, h('div', { class: 'page' }, h('div', { class: 'row' }, h('h2', {}, 'Results'), sel, range), out));

  async function show() {
    const id = sel.value;
    if (!id) return;
    if (location.hash !== `#/results/${enc(id)}`) history.replaceState(null, '', `#/results/${enc(id)}`);
    const to = new Date(), from = new Date(to.getTime() - (Number(range.value) - 1) * 86400000);
    const days = `from=${from.toISOString().slice(0, 10)}&to=${to.toISOString().slice(0, 10)}`;
    let rep, answers = null;
    try {
      [rep, answers] = await Promise.all([api('GET', `/v1/rules/${enc(id)}/stats?${days}`),
        kinds.get(id) === 'feedback' ? api('GET', `/v1/rules/${enc(id)}/feedback?${days}`) : null]);
    } catch (err) {
      fill(out, h('p', { class: 'error' }, err.message));
      return;
    }
    const total = {};
    const skipped = {};
    for (const d of rep.days) {
      for (const [k] of STEPS) total[k] = (total[k] || 0) + (d[k] || 0);
      for (const [r, n] of Object.entries(d.skipped || {})) skipped[r] = (skipped[r] || 0) + n;
    }
    const hc = rep.holdout_comparison;
    const pct = (x) => `${(100 * x).toFixed(1)} %`;
    const uplift = hc.treated && hc.holdout ? `${((hc.treated_share - hc.holdout_share) * 100).toFixed(1)} points` : 'not measurable yet: it needs treated and held-out customers (set holdout_pct on the rule)';
    fill(out,
      total.evaluated ? null : h('p', { class: 'muted' }, 'No activity in these days yet.'),
      h('div', { class: 'cards' },
        answers ? h('section', { class: 'card wide', id: 'feedback-results' }, h('h3', {}, 'Answers'), report(answers, { distribution: true })) : null,
        rep.experiment ? experimentCards(rep.experiment) : null,
        h('section', { class: 'card' }, h('h3', {}, 'Funnel'), hbars(STEPS.map(([k, label]) => ({ label, value: total[k] || 0, cls: k }))),
          h('p', { class: 'rates' }, rate('matched of evaluated', total.matched, total.evaluated), rate('redeemed of issued', total.redeemed, total.issued),
            rate('opened of sent', total.opened, total.sent))),
        h('section', { class: 'card' }, h('h3', {}, 'Came back within 7 days'),
          hbars([
            { label: `offered (${hc.treated})`, value: Math.round(hc.treated_share * 1000) / 10, cls: 'issued', note: `${pct(hc.treated_share)} · ${hc.treated_returned} of ${hc.treated}` },
            { label: `held out (${hc.holdout})`, value: Math.round(hc.holdout_share * 1000) / 10, cls: 'holdout', note: `${pct(hc.holdout_share)} · ${hc.holdout_returned} of ${hc.holdout}` },
          ]),
          h('p', { class: 'uplift' }, 'Uplift: ', h('strong', {}, uplift))),
        h('section', { class: 'card wide' }, h('h3', {}, 'Per day'),
          dayBars(rep.days, [
            { key: 'evaluated', label: 'evaluated', cls: 'evaluated' },
            { key: 'issued', label: 'issued', cls: 'issued' },
            { key: 'opened', label: 'opened', cls: 'opened' },
            { key: 'redeemed', label: 'redeemed', cls: 'redeemed' },
          ])),
        Object.keys(skipped).length ? h('section', { class: 'card' }, h('h3', {}, 'Why it did not fire'),
          hbars(Object.entries(skipped).sort((a, b) => b[1] - a[1]).map(([label, value]) => ({ label, value, cls: 'skipped' })))) : null));
  }

  sel.addEventListener('change', show);
  range.addEventListener('change', show);
  (async () => {
    try {
      const rules = await listAll('/v1/rules', 'rules');
      for (const r of rules) kinds.set(r.id, r.offer?.kind || 'coupon');
      fill(sel, rules.map((r) => h('option', { value: r.id, selected: r.id === ruleId }, `${r.name} (${r.id})`)));
      if (!rules.length) fill(out, h('p', { class: 'muted' }, 'No rules yet.'));
    } catch (err) {
      fill(out, h('p', { class: 'error' }, err.message));
      return;
    }
    show();
  })();
}

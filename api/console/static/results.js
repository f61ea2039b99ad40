// Results: per rule, the funnel (over the days chosen and per day) and the
// holdout comparison: of customers offered the rule and of those held
// out, what share came back to the store within 7 days.

import { api, listAll, enc } from './api.js';
import { h, fill } from './dom.js';
import { hbars, dayBars } from './charts.js';

const STEPS = [
  ['evaluated', 'evaluated'], ['matched', 'matched'], ['holdout', 'held out'], ['issued', 'issued'],
  ['sent', 'sent'], ['opened', 'opened'], ['redeemed', 'redeemed'],
];

function rate(label, n, of) {
  return h('span', { class: 'rate' }, h('strong', {}, of ? `${((100 * (n || 0)) / of).toFixed(1)} %` : '—'), ` ${label}`);
}

export function mountResults(root, ruleId) {
  const sel = h('select', { id: 'results-rule', 'aria-label': 'rule' });
  const range = h('select', { id: 'results-days', 'aria-label': 'days' }, [7, 14, 30, 90].map((n) => h('option', { value: n, selected: n === 14 }, `last ${n} days`)));
  const out = h('div', { id: 'results-charts' });
  fill(root, h('div', { class: 'page' }, h('div', { class: 'row' }, h('h2', {}, 'Results'), sel, range), out));

  async function show() {
    const id = sel.value;
    if (!id) return;
    if (location.hash !== `#/results/${enc(id)}`) history.replaceState(null, '', `#/results/${enc(id)}`);
    const to = new Date(), from = new Date(to.getTime() - (Number(range.value) - 1) * 86400000);
    let rep;
    try {
      rep = await api('GET', `/v1/rules/${enc(id)}/stats?from=${from.toISOString().slice(0, 10)}&to=${to.toISOString().slice(0, 10)}`);
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
      fill(sel, rules.map((r) => h('option', { value: r.id, selected: r.id === ruleId }, `${r.name} (${r.id})`)));
      if (!rules.length) fill(out, h('p', { class: 'muted' }, 'No rules yet.'));
    } catch (err) {
      fill(out, h('p', { class: 'error' }, err.message));
      return;
    }
    show();
  })();
}

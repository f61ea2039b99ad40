// Rules: the list with status, priority, schedule and today's funnel, and
// the editor: a form for every field of the rule document and the raw
// JSON beside it, kept in sync, validated by the server (dry_run) while
// the marketer types, with each fault next to the field it names; and a
// preview of the push on a phone, in each language, for one customer.
// An offer may be an experiment: 2 to 8 variants, each with its texts in
// the offer's languages, given by weight or by a bandit
// (docs/experiments.md); or, of kind feedback, a question after a visit
// (NPS or CSAT, with a comment or not) instead of a coupon
// (docs/feedback.md).

import { api, listAll, enc, exists, ApiError } from './api.js';
import { h, fill, field, showFaults, debounce, list, fmtTime } from './dom.js';

export const today = () => new Date().toISOString().slice(0, 10);

// status says whether a rule is in force now.
export function status(r, now = new Date()) {
  if (r.enabled === false) return 'disabled';
  if (r.when?.until && new Date(r.when.until) < now) return 'ended';
  if (r.when?.from && new Date(r.when.from) > now) return 'scheduled';
  return 'live';
}

function schedule(r) {
  const w = r.when || {};
  const parts = [];
  if (w.days?.length) parts.push(w.days.join(' '));
  if (w.local_time?.length) parts.push(w.local_time.join(', '));
  if (w.from || w.until) parts.push(`${w.from ? w.from.slice(0, 10) : '…'} → ${w.until ? w.until.slice(0, 10) : '…'}`);
  if (w.store_open === false) parts.push('also when closed');
  return parts.join(' · ') || 'always (store open)';
}

function trigger(r) {
  const t = r.trigger || {};
  const where = t.stores ? [...(t.stores.ids || []), ...(t.stores.tags || []).map((x) => `#${x}`)].join(' ') : 'every store';
  return `${t.on}${t.on === 'dwell' ? ` ${t.dwell_s}s` : ''} · ${where}`;
}

export function mountRuleList(root) {
  const body = h('tbody', {}, h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'Loading…')));
  const search = h('input', { type: 'search', id: 'rule-search', placeholder: 'Search rules by name, id, tag or store', 'aria-label': 'search rules' });
  search.addEventListener('input', () => {
    const q = search.value.trim().toLowerCase();
    for (const tr of body.querySelectorAll('tr[data-search]')) tr.hidden = q !== '' && !tr.dataset.search.includes(q);
  });
  fill(root, h('div', { class: 'page' },
    h('div', { class: 'row between' }, h('h2', {}, 'Rules'), search, h('a', { href: '#/rules/new', id: 'rule-new', class: 'button primary' }, 'New rule')),
    h('table', { class: 'grid', id: 'rule-table' },
      h('thead', {}, h('tr', {}, ['Rule', 'Status', 'Priority', 'Trigger', 'Schedule', "Today's funnel", ''].map((x) => h('th', {}, x)))),
      body)));
  (async () => {
    let rules;
    try {
      rules = await listAll('/v1/rules', 'rules');
    } catch (err) {
      fill(body, h('tr', {}, h('td', { colspan: 7, class: 'error' }, err.message)));
      return;
    }
    rules.sort((a, b) => (b.priority - a.priority) || a.id.localeCompare(b.id));
    fill(body, rules.length ? rules.map((r) => {
      const funnel = h('td', { class: 'funnel muted' }, '…');
      api('GET', `/v1/rules/${enc(r.id)}/stats?from=${today()}&to=${today()}`).then((s) => {
        const d = s.days[0] || {};
        fill(funnel, ['evaluated', 'matched', 'issued', 'sent', 'redeemed'].map((k) => h('span', { class: 'step', title: k }, h('b', {}, d[k] || 0), ` ${k}`)));
        funnel.classList.remove('muted');
      }).catch(() => { funnel.textContent = '—'; });
      const words = [r.id, r.name, ...(r.tags || []), ...(r.trigger?.stores?.ids || []), ...(r.trigger?.stores?.tags || []), status(r)];
      const variants = r.offer?.variants?.length;
      return h('tr', { 'data-search': words.join(' ').toLowerCase() },
        h('td', {}, h('a', { href: `#/rules/${enc(r.id)}` }, r.name),
          variants ? h('span', { class: 'tag experiment', title: 'an experiment: see its results' }, `${variants} variants · ${r.offer.selection || 'weighted'}`) : null,
          r.offer?.kind === 'feedback' ? h('span', { class: 'tag question', title: 'asks a question after a visit: see its answers in its results' }, `question · ${(r.offer.question?.scale || '').toUpperCase()}`) : null,
          h('div', { class: 'muted' }, `${r.id} · v${r.version}`)),
        h('td', {}, h('span', { class: `pill ${status(r)}` }, status(r))),
        h('td', { class: 'num' }, r.priority),
        h('td', {}, trigger(r)),
        h('td', {}, schedule(r)),
        funnel,
        h('td', {}, h('a', { href: `#/results/${enc(r.id)}` }, 'Results')));
    }) : h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No rules yet: write the first one.')));
  })();
}

// Path helpers over the rule document.
function get(doc, path) {
  return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), doc);
}

// set writes a value at a path; undefined deletes it, and objects left
// empty on the way go too, so the document holds only what was given.
function set(doc, path, value) {
  const keys = path.split('.');
  const chain = [doc];
  let o = doc;
  for (const k of keys.slice(0, -1)) {
    if (o[k] == null || typeof o[k] !== 'object') o[k] = {};
    o = o[k];
    chain.push(o);
  }
  const last = keys[keys.length - 1];
  if (value === undefined) delete o[last]; else o[last] = value;
  for (let i = keys.length - 1; i > 0; i--) {
    if (Object.keys(chain[i]).length === 0) delete chain[i - 1][keys[i - 1]]; else break;
  }
}

const asNumber = (v) => (v === '' ? undefined : isNaN(Number(v)) ? v : Number(v));
const asList = (v) => { const l = list(v); return l.length ? l : undefined; };

// The form's fields: path, label, kind, hint.
const FIELDS = [
  ['Offer', [
    ['name', 'Name', 'text'],
    ['enabled', 'Enabled', 'bool'],
    ['priority', 'Priority', 'number', 'higher wins when several rules could fire'],
    ['tags', 'Tags', 'list', 'what the offer is about, e.g. coffee'],
  ]],
  ['Trigger', [
    ['trigger.on', 'On', 'select:enter,dwell,exit'],
    ['trigger.dwell_s', 'Dwell (s)', 'number', 'only for dwell: seconds inside before it fires'],
    ['trigger.stores.ids', 'Store ids', 'list', 'empty ids and tags: every store'],
    ['trigger.stores.tags', 'Store tags', 'list'],
  ]],
  ['Audience', [
    ['audience', 'Audience expression', 'textarea', "e.g. customer.attributes.tier == 'gold' && context.local_hour < 11"],
    ['holdout_pct', 'Holdout %', 'number', 'share of matching customers who get nothing, to measure uplift'],
  ]],
  ['Schedule', [
    ['when.from', 'From', 'text', 'RFC 3339, e.g. 2026-12-01T00:00:00Z'],
    ['when.until', 'Until', 'text'],
    ['when.days', 'Days', 'list', 'mon, tue, … (store time); empty: every day'],
    ['when.local_time', 'Local time', 'list', 'e.g. 07:00-11:00'],
    ['when.store_open', 'Only while the store is open', 'tri'],
    ['when.closing_buffer_min', 'Closing buffer (min)', 'number'],
    ['when.quiet_hours', 'Quiet hours', 'text', 'e.g. 20:00-09:00, the customer\'s time'],
  ]],
  ['Caps', [
    ['caps.per_customer_per_day', 'Per customer per day', 'number'],
    ['caps.per_customer_per_week', 'Per customer per week', 'number'],
    ['caps.per_customer_total', 'Per customer in all', 'number'],
    ['caps.per_store_per_day', 'Per store per day', 'number'],
    ['caps.total', 'Budget (coupons in all)', 'number'],
  ]],
];

// The offer's fields outside FIELDS, with their kinds.
const OFFER_FIELDS = [
  ['offer.valid_for_s', '', 'number'], ['offer.redeem_at_issuing_store', '', 'bool'], ['offer.min_trust', '', 'select:'],
  ['offer.question.scale', '', 'select:'],
  ['offer.bandit.min_per_variant', '', 'number'], ['offer.bandit.floor_pct', '', 'number'],
  ['offer.bandit.segment_by', '', 'text'], ['offer.bandit.segments', '', 'list'],
];

// langsOf lists the languages of a message (an offer's or a variant's),
// the title's first, in their order.
function langsOf(m) {
  const langs = Object.keys(m.title || {});
  for (const l of Object.keys(m.body || {})) if (!langs.includes(l)) langs.push(l);
  return langs;
}

const NEW_RULE = {
  name: 'New offer', enabled: true, priority: 0,
  trigger: { on: 'enter' },
  caps: { per_customer_per_day: 1 },
  offer: {
    title: { en: 'Hello {{.customer.first_name}}!' },
    body: { en: '{{.store.name}} is {{.distance_m}} m away. Show code {{.coupon.code}}.' },
    valid_for_s: 3600,
  },
};

// QUESTIONS are a question's texts to begin with, by scale, for a new
// rule made a question before its texts were written.
const QUESTIONS = {
  nps: { title: 'How was {{.store.name}}?', body: 'How likely are you to recommend us, from 0 to 10?' },
  csat: { title: 'How was {{.store.name}}?', body: 'How satisfied were you with your visit, from 1 to 5?' },
};

// QUESTION_WINDOW_S is the longest a question may be answered: 7 days.
const QUESTION_WINDOW_S = 604800;

function input(path, kind, value) {
  const attrs = { name: path, id: `f-${path}` };
  if (kind === 'bool') return h('input', { ...attrs, type: 'checkbox', checked: value !== false });
  if (kind === 'tri') {
    return h('select', attrs, [['', 'default (yes)'], ['true', 'yes'], ['false', 'no, any time']]
      .map(([v, l]) => h('option', { value: v, selected: String(value ?? '') === v }, l)));
  }
  if (kind.startsWith('select:')) return h('select', attrs, kind.slice(7).split(',').map((v) => h('option', { value: v, selected: value === v }, v)));
  if (kind === 'textarea') return h('textarea', { ...attrs, rows: 2 }, value ?? '');
  if (kind === 'list') return h('input', { ...attrs, value: Array.isArray(value) ? value.join(', ') : value ?? '' });
  return h('input', { ...attrs, value: value ?? '', inputmode: kind === 'number' ? 'decimal' : undefined });
}

function read(kind, el) {
  if (kind === 'bool') return el.checked;
  if (kind === 'tri') return el.value === '' ? undefined : el.value === 'true';
  if (kind === 'number') return asNumber(el.value.trim());
  if (kind === 'list') return asList(el.value);
  return el.value === '' ? undefined : el.value;
}

export function mountRuleEditor(root, ruleId) {
  const isNew = ruleId === 'new';
  const st = { id: isNew ? '' : ruleId, doc: structuredClone(NEW_RULE), version: 0, seq: 0, valid: false };
  const form = h('form', { id: 'rule-form', class: 'form rule-form', novalidate: true });
  const raw = h('textarea', { id: 'rule-raw', class: 'raw', spellcheck: 'false', rows: 30, 'aria-label': 'rule as JSON' });
  const rawFault = h('span', { class: 'fault', role: 'alert' });
  const statusEl = h('p', { class: 'status', id: 'rule-status' });
  const versionEl = h('p', { class: 'muted', id: 'rule-version' }, isNew ? 'Not saved yet.' : '');
  const preview = h('div', { class: 'phones', id: 'rule-preview' });
  const custIn = h('input', { id: 'preview-customer', value: 'c-42', 'aria-label': 'customer id' });
  const storeSel = h('select', { id: 'preview-store', 'aria-label': 'store' }, h('option', { value: '' }, 'first store the trigger selects'));
  const previewFault = h('span', { class: 'fault', role: 'alert' });
  const history = h('ol', { class: 'history', id: 'rule-history', reversed: true });
  fill(root, h('div', { class: 'page' },
    h('div', { class: 'row between' }, h('h2', {}, isNew ? 'New rule' : `Rule ${ruleId}`), versionEl,
      isNew ? null : h('a', { href: `#/results/${enc(ruleId)}` }, 'Results'), h('a', { href: '#/rules' }, '← all rules')),
    h('div', { class: 'editor' },
      h('section', {}, form),
      h('section', { class: 'aside' }, h('h3', {}, 'JSON'), h('div', { class: 'field', 'data-field': '$raw' }, raw, rawFault),
        h('h3', {}, 'Push preview'),
        h('div', { class: 'row' }, field('$customer', 'Customer', custIn), field('$store', 'At store', storeSel)),
        previewFault, preview,
        isNew ? null : h('div', {}, h('h3', {}, 'History'), history)))));

  function renderForm() {
    const sections = FIELDS.map(([title, fields]) => h('fieldset', {}, h('legend', {}, title),
      fields.map(([path, label, kind, hint]) => field(path, label, input(path, kind, get(st.doc, path)), hint))));
    fill(form,
      h('div', { class: 'field', 'data-field': '' }, h('span', { class: 'fault', role: 'alert' })),
      field('id', 'Rule id', h('input', { name: '$id', id: 'f-id', value: st.id, readonly: !isNew, placeholder: 'morning-flat-white' })),
      sections.slice(0, 1), texts(), sections.slice(1),
      h('div', { class: 'row sticky' },
        h('button', { type: 'submit', class: 'primary', id: 'rule-save' }, isNew ? 'Create rule' : 'Save new version'),
        isNew ? null : h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete'),
        statusEl));
    form.querySelector('[name="audience"]')?.after(suggest);
    suggestAttributes();
  }

  // The audience's suggestions: the attributes customers have (learned
  // from their profiles, or declared), those starting with what is typed
  // after customer.attributes.; a click writes the name in. A name the
  // server knows neither way is refused at save, with a hint.
  const suggest = h('div', { class: 'suggest', id: 'audience-suggest', 'aria-label': 'attributes customers have' });
  let attributes = [];
  api('GET', '/v1/attributes').then((r) => { attributes = r.attributes || []; suggestAttributes(); }).catch(() => { /* no suggestions */ });
  for (const type of ['input', 'keyup', 'click']) {
    form.addEventListener(type, (e) => { if (e.target.name === 'audience') suggestAttributes(); });
  }

  function suggestAttributes() {
    const ta = form.querySelector('[name="audience"]');
    if (!ta) return;
    const typed = ta.value.slice(0, ta.selectionStart ?? ta.value.length).match(/customer\.attributes\.([A-Za-z0-9_]*)$/);
    const prefix = typed ? typed[1].toLowerCase() : '';
    const shown = attributes.filter((a) => a.name.toLowerCase().startsWith(prefix)).slice(0, 24);
    fill(suggest, shown.length === 0 ? null : [
      h('span', { class: 'hint' }, typed ? 'attributes:' : 'customers have:'),
      shown.map((a) => h('button', {
        type: 'button', class: `small${a.declared ? ' declared' : ''}`, 'data-name': a.name,
        title: `${a.type}, ${a.profiles} profile${a.profiles === 1 ? '' : 's'}${a.declared ? ', declared' : ''}${a.description ? `: ${a.description}` : ''}`,
        onclick: () => insertAttribute(ta, a.name, typed),
      }, a.name)),
    ]);
  }

  // insertAttribute completes the name being typed, or writes
  // customer.attributes.<name> at the caret (["name"] for a name that is
  // not an identifier).
  function insertAttribute(ta, name, typed) {
    const at = ta.selectionStart ?? ta.value.length;
    const ident = /^[A-Za-z_][A-Za-z0-9_]*$/.test(name);
    const access = ident ? `.${name}` : `[${JSON.stringify(name)}]`;
    const start = typed ? at - typed[1].length - 1 : at;
    const text = typed ? access : `customer.attributes${access}`;
    ta.value = ta.value.slice(0, start) + text + ta.value.slice(at);
    ta.focus();
    ta.selectionStart = ta.selectionEnd = start + text.length;
    ta.dispatchEvent(new Event('input', { bubbles: true }));
  }

  // texts is the offer's messages, one row per language, and the
  // fallback language (offer.default_locale; left out, the first); or,
  // for an experiment, its variants, each in those languages.
  function texts() {
    const offer = st.doc.offer || {};
    const variants = Array.isArray(offer.variants) ? offer.variants : null;
    const langs = langsOf(variants ? variants[0] || {} : offer);
    const fallback = offer.default_locale || langs[0];
    const question = offer.kind === 'feedback';
    const q = offer.question || {};
    const newLang = h('input', { name: '$newlang', placeholder: 'de', size: 4, 'aria-label': 'new language' });
    return h('fieldset', { 'data-field': 'offer', class: question ? 'question' : '' }, h('legend', {}, question ? 'Question' : 'Message'),
      field('offer.kind', 'The customer gets', h('select', { name: 'offer.kind', id: 'f-offer.kind' },
        [['coupon', 'a coupon'], ['feedback', 'a question after the visit (feedback)']].map(([v, l]) => h('option', { value: v, selected: (offer.kind || 'coupon') === v }, l))),
      question ? 'asked only of customers who agreed (consent.feedback), at most once per store in 30 days and twice a month (the server\'s defaults); the answers make the stores\' scores' : null),
      question ? h('div', { class: 'row', 'data-field': 'offer.question', id: 'question' },
        field('offer.question.scale', 'Scale', h('select', { name: 'offer.question.scale', id: 'f-offer.question.scale' },
          [['nps', 'NPS: how likely to recommend, 0 to 10'], ['csat', 'CSAT: how satisfied, 1 to 5']].map(([v, l]) => h('option', { value: v, selected: (q.scale || 'nps') === v }, l)))),
        field('offer.question.comment', 'A comment may go with the score', h('input', { type: 'checkbox', name: 'offer.question.comment', id: 'f-offer.question.comment', checked: q.comment === true })),
        h('span', { class: 'fault', role: 'alert' })) : null,
      h('div', { 'data-field': 'offer.title' }, h('span', { class: 'fault' })),
      h('div', { 'data-field': 'offer.body' }, h('span', { class: 'fault' })),
      field('offer.default_locale', 'Fallback language (for a customer whose language is not here)',
        h('select', { name: 'offer.default_locale', id: 'f-offer.default_locale' },
          langs.map((l) => h('option', { value: l, selected: l === fallback }, l)))),
      variants ? h('div', { class: 'row langs' }, h('span', { class: 'label' }, variants.length ? 'Languages of every variant:' : ''),
        langs.map((l) => h('span', { class: 'lang-chip', 'data-lang': l }, h('strong', {}, l), l === fallback ? ' (fallback) ' : ' ',
          h('button', { type: 'button', class: 'small', 'data-action': 'remove-lang', onclick: () => { renameLang(l, null); } }, 'remove')))) : null,
      variants ? experiment(variants, langs) : langs.map((l) => h('div', { class: 'lang' },
        h('div', { class: 'row between' }, h('strong', {}, l, l === fallback ? ' (fallback)' : ''),
          h('button', { type: 'button', class: 'small', onclick: () => { renameLang(l, null); } }, 'remove')),
        field(`offer.title.${l}`, 'Title', h('input', { name: `$title.${l}`, id: `f-offer.title.${l}`, value: offer.title?.[l] ?? '' })),
        field(`offer.body.${l}`, 'Body', h('textarea', { name: `$body.${l}`, id: `f-offer.body.${l}`, rows: 2 }, offer.body?.[l] ?? '')))),
      h('div', { class: 'row' }, newLang, h('button', { type: 'button', class: 'small', id: 'lang-add', onclick: () => { if (newLang.value.trim()) renameLang(null, newLang.value.trim()); } }, 'Add language'),
        variants || question ? null : h('button', { type: 'button', class: 'small', id: 'variants-start', onclick: startExperiment, title: 'try 2 to 8 versions of the message, and see which redeems best' }, 'Make it an experiment (variants)')),
      question ? field('offer.valid_for_s', 'Answers taken for (s)', input('offer.valid_for_s', 'number', offer.valid_for_s), `at most ${QUESTION_WINDOW_S} (7 days), the default`)
        : h('div', { class: 'row' },
          field('offer.valid_for_s', 'Coupon valid for (s)', input('offer.valid_for_s', 'number', offer.valid_for_s)),
          field('offer.redeem_at_issuing_store', 'Only at the issuing store', input('offer.redeem_at_issuing_store', 'bool', offer.redeem_at_issuing_store === true))),
      field('offer.min_trust', 'Least trust in the location', input('offer.min_trust', 'select:unverified,trusted,any', offer.min_trust || 'unverified'),
        'unverified: no fix found suspicious (spoofed, teleported); trusted: only phones that passed an integrity check, for valuable offers; any: every fix'),
      h('span', { class: 'fault' }));
  }

  // experiment is the offer's variants: how they are given (selection,
  // and the bandit's settings), then each with its id, weight, discount
  // tag, validity and texts in the offer's languages; 2 to 8 of them.
  function experiment(variants, langs) {
    const offer = st.doc.offer;
    const selection = offer.selection || 'weighted';
    const b = offer.bandit || {};
    return h('fieldset', { class: 'variants', 'data-field': 'offer.variants', id: 'variants' },
      h('legend', {}, `Experiment: ${variants.length} variants`),
      h('span', { class: 'fault', role: 'alert' }),
      h('div', { class: 'row' },
        field('offer.selection', 'Selection', h('select', { name: 'offer.selection', id: 'f-offer.selection' },
          [['weighted', 'weighted: by weight, sticky per customer'], ['bandit', 'bandit: learns which redeems best']].map(([v, l]) => h('option', { value: v, selected: selection === v }, l))),
        selection === 'bandit' ? 'Thompson sampling on each variant\'s redemption rate: by weight until each has its minimum of offers, then more offers to the likely best' : 'each customer gets one variant by weight, and keeps it')),
      selection === 'bandit' ? h('div', { class: 'bandit', 'data-field': 'offer.bandit' },
        h('span', { class: 'fault', role: 'alert' }),
        h('div', { class: 'row' },
          field('offer.bandit.min_per_variant', 'Offers per variant first', input('offer.bandit.min_per_variant', 'number', b.min_per_variant), 'by weight, before it exploits (default 100)'),
          field('offer.bandit.floor_pct', 'Floor %', input('offer.bandit.floor_pct', 'number', b.floor_pct), `least share each keeps (default 5; at most ${Math.floor((100 / variants.length) * 100) / 100})`)),
        h('div', { class: 'row' },
          field('offer.bandit.segment_by', 'Learn apart by', input('offer.bandit.segment_by', 'text', b.segment_by), 'customer.attributes.<name> or store.tags; empty: one for all'),
          field('offer.bandit.segments', 'Segments', input('offer.bandit.segments', 'list', b.segments), 'the values learnt apart; others: other'))) : null,
      variants.map((v, i) => {
        const at = `offer.variants[${i}]`;
        return h('div', { class: 'variant', 'data-field': at, 'data-index': i },
          h('div', { class: 'row between' }, h('strong', {}, `Variant ${i + 1}`),
            h('button', { type: 'button', class: 'small', 'data-action': 'remove-variant', disabled: variants.length <= 2, title: variants.length <= 2 ? 'an experiment has at least 2 variants' : '', onclick: () => removeVariant(i) }, 'remove')),
          h('span', { class: 'fault', role: 'alert' }),
          h('div', { class: 'row' },
            field(`${at}.id`, 'Id', h('input', { name: `$v.${i}.id`, id: `f-${at}.id`, value: v.id ?? '', placeholder: 'a', size: 8 })),
            field(`${at}.weight`, 'Weight', h('input', { name: `$v.${i}.weight`, id: `f-${at}.weight`, value: v.weight ?? '', placeholder: '1', inputmode: 'decimal' })),
            field(`${at}.discount`, 'Discount tag', h('input', { name: `$v.${i}.discount`, id: `f-${at}.discount`, value: v.discount ?? '', placeholder: '10%' })),
            field(`${at}.valid_for_s`, 'Valid for (s)', h('input', { name: `$v.${i}.valid_for_s`, id: `f-${at}.valid_for_s`, value: v.valid_for_s ?? '', placeholder: String(offer.valid_for_s ?? 3600), inputmode: 'decimal' }))),
          h('div', { 'data-field': `${at}.title` }, h('span', { class: 'fault' })),
          h('div', { 'data-field': `${at}.body` }, h('span', { class: 'fault' })),
          langs.map((l) => h('div', { class: 'lang' },
            field(`${at}.title.${l}`, `Title (${l})`, h('input', { name: `$v.${i}.title.${l}`, id: `f-${at}.title.${l}`, value: v.title?.[l] ?? '' })),
            field(`${at}.body.${l}`, `Body (${l})`, h('textarea', { name: `$v.${i}.body.${l}`, id: `f-${at}.body.${l}`, rows: 2 }, v.body?.[l] ?? '')))));
      }),
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'small', id: 'variant-add', disabled: variants.length >= 8, title: variants.length >= 8 ? 'at most 8 variants' : '', onclick: addVariant }, 'Add variant'),
        h('button', { type: 'button', class: 'small', id: 'variants-end', onclick: () => endExperiment(), title: 'keep the first variant\'s texts as the message' }, 'Back to one message')));
  }

  // setKind makes the offer a question (feedback) or a coupon again. A
  // question has no variants (the first one's texts stay), no store to
  // redeem at, and is answered for 7 days unless told otherwise; texts
  // still the new rule's become a question's.
  function setKind(kind) {
    const o = (st.doc.offer ??= {});
    if (kind !== 'feedback') {
      delete o.kind;
      delete o.question;
      return;
    }
    if (Array.isArray(o.variants)) endExperiment(false);
    o.kind = 'feedback';
    o.question ??= { scale: 'nps' };
    delete o.redeem_at_issuing_store;
    if (o.valid_for_s === NEW_RULE.offer.valid_for_s || o.valid_for_s > QUESTION_WINDOW_S) delete o.valid_for_s;
    if (o.title?.en === NEW_RULE.offer.title.en && o.body?.en === NEW_RULE.offer.body.en) {
      o.title = { en: QUESTIONS[o.question.scale].title };
      o.body = { en: QUESTIONS[o.question.scale].body };
    }
  }

  // startExperiment turns the message into two variants, a and b, both
  // with its texts to begin with.
  function startExperiment() {
    const o = (st.doc.offer ??= {});
    const title = o.title || {}, body = o.body || {};
    o.variants = ['a', 'b'].map((id) => ({ id, title: { ...title }, body: { ...body } }));
    delete o.title;
    delete o.body;
    changed(true);
  }

  // endExperiment keeps the first variant's texts as the message.
  function endExperiment(then = true) {
    const o = st.doc.offer;
    const first = o.variants?.[0] || {};
    o.title = { ...first.title };
    o.body = { ...first.body };
    delete o.variants;
    delete o.selection;
    delete o.bandit;
    if (then) changed(true);
  }

  // addVariant adds one more (at most 8), with the last one's texts.
  function addVariant() {
    const vs = st.doc.offer.variants;
    if (vs.length >= 8) return;
    const last = vs[vs.length - 1] || {};
    const id = [...'abcdefgh'].find((c) => !vs.some((v) => v.id === c)) || `v${vs.length + 1}`;
    vs.push({ id, title: { ...last.title }, body: { ...last.body } });
    changed(true);
  }

  // removeVariant takes one out (at least 2 stay).
  function removeVariant(i) {
    const vs = st.doc.offer.variants;
    if (vs.length <= 2) return;
    vs.splice(i, 1);
    changed(true);
  }

  // renameLang adds (from null), removes (to null) a language, keeping
  // order, in the message or in every variant; a fallback removed falls
  // back to the first language left.
  function renameLang(from, to) {
    if (from && st.doc.offer?.default_locale === from) delete st.doc.offer.default_locale;
    const rename = (old = {}) => {
      const next = {};
      for (const [k, v] of Object.entries(old)) if (k !== from) next[k] = v;
      if (to) next[to] = old[from] ?? '';
      return next;
    };
    const variants = st.doc.offer?.variants;
    for (const part of ['title', 'body']) {
      if (Array.isArray(variants)) for (const v of variants) v[part] = rename(v[part]);
      else set(st.doc, `offer.${part}`, rename(st.doc.offer?.[part]));
    }
    changed(true);
  }

  form.addEventListener('input', (e) => {
    const el = e.target, name = el.name;
    if (!name || name === '$newlang') return;
    let rebuild = name === 'offer.default_locale';
    if (name === '$id') st.id = el.value.trim();
    else if (name.startsWith('$v.')) {
      // $v.<i>.<id|weight|discount|valid_for_s>, $v.<i>.<title|body>.<lang>
      const [, i, part, ...lang] = name.split('.');
      const v = st.doc.offer.variants[Number(i)];
      if (part === 'title' || part === 'body') {
        v[part] ??= {};
        v[part][lang.join('.')] = el.value;
      } else if (part === 'id') v.id = el.value.trim();
      else if (part === 'discount') { if (el.value === '') delete v.discount; else v.discount = el.value; }
      else { const n = asNumber(el.value.trim()); if (n === undefined) delete v[part]; else v[part] = n; }
    } else if (name === 'offer.kind') {
      setKind(el.value);
      rebuild = true;
    } else if (name === 'offer.question.scale') {
      const o = st.doc.offer;
      const was = o.question?.scale || 'nps';
      o.question = { ...o.question, scale: el.value };
      if (o.body?.en === QUESTIONS[was]?.body && QUESTIONS[el.value]) { o.body.en = QUESTIONS[el.value].body; rebuild = true; }
    } else if (name === 'offer.question.comment') {
      st.doc.offer.question ??= {};
      if (el.checked) st.doc.offer.question.comment = true; else delete st.doc.offer.question.comment;
    } else if (name === 'offer.selection') {
      st.doc.offer.selection = el.value;
      if (el.value !== 'bandit') delete st.doc.offer.bandit;
      rebuild = true;
    } else if (name.startsWith('$title.') || name.startsWith('$body.')) {
      const [part, lang] = [name.slice(1, name.indexOf('.')), name.slice(name.indexOf('.') + 1)];
      st.doc.offer ??= {};
      st.doc.offer[part] ??= {};
      st.doc.offer[part][lang] = el.value;
    } else {
      const kind = [...FIELDS.flatMap(([, f]) => f), ...OFFER_FIELDS].find(([p]) => p === name)?.[2];
      const v = read(kind || 'text', el);
      set(st.doc, name, v === false && name === 'offer.redeem_at_issuing_store' ? undefined : v);
    }
    changed(rebuild);
  });

  // Enter in a field does not save: a save is a new version, made on purpose.
  form.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && e.target.tagName === 'INPUT') e.preventDefault();
  });

  raw.addEventListener('input', () => {
    let doc;
    try {
      doc = JSON.parse(raw.value);
    } catch (err) {
      rawFault.textContent = `Not JSON yet: ${err.message}`;
      return;
    }
    rawFault.textContent = '';
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) { rawFault.textContent = 'A rule is a JSON object.'; return; }
    if (typeof doc.id === 'string' && isNew) st.id = doc.id;
    delete doc.id;
    st.doc = doc;
    renderForm();
    validateSoon();
  });

  // changed follows an edit of the form: the JSON, then the server's word.
  function changed(rebuild) {
    if (rebuild) renderForm();
    writeRaw();
    validateSoon();
  }

  function writeRaw() {
    if (document.activeElement !== raw) raw.value = JSON.stringify(st.doc, null, 2);
  }

  function body() {
    const { version, updated_at, id, ...doc } = st.doc;
    return doc;
  }

  const validateSoon = debounce(validate, 300);

  async function validate() {
    const seq = ++st.seq;
    let faults = [];
    if (!st.id) faults.push({ field: 'id', message: 'give the rule an id: letters, digits and . _ : @ + -' });
    try {
      await api('PUT', `/v1/rules/${enc(st.id || 'draft')}?dry_run=true`, body());
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      faults = faults.concat(err.faults());
    }
    if (seq !== st.seq) return; // a newer edit is on its way
    st.valid = faults.length === 0;
    showFaults(form, faults, { rule_id: 'id' });
    statusEl.textContent = st.valid ? 'Valid.' : `${faults.length} problem${faults.length > 1 ? 's' : ''}.`;
    statusEl.className = `status ${st.valid ? 'ok' : 'bad'}`;
    preview.classList.toggle('stale', !st.valid);
    preview.title = st.valid ? '' : 'the last valid version: fix the rule to see it as it is now';
    if (st.valid) renderPreview();
  }

  async function renderPreview() {
    const seq = st.seq;
    try {
      const p = await api('POST', `/v1/rules/${enc(st.id || 'draft')}/preview`, { customer_id: custIn.value.trim(), store_id: storeSel.value || undefined, rule: body() });
      if (seq !== st.seq) return;
      previewFault.textContent = '';
      fill(preview, p.messages.map((m) => phone(m, m.lang === p.customer_language && (!m.variant || m.variant === p.customer_variant), p)));
    } catch (err) {
      previewFault.textContent = err.message;
      fill(preview);
    }
  }
  custIn.addEventListener('input', debounce(renderPreview, 300));
  storeSel.addEventListener('change', renderPreview);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!st.id) return validate();
    if (isNew && await exists(`/v1/rules/${enc(st.id)}`)) {
      showFaults(form, [{ field: 'id', message: `a rule ${st.id} exists already: open it from the list to change it` }]);
      return;
    }
    try {
      const headers = st.version ? { 'If-Match': `"${st.version}"` } : undefined;
      const saved = await api('PUT', `/v1/rules/${enc(st.id)}`, body(), { headers });
      const { id, version, updated_at, ...doc } = saved;
      st.version = version;
      showFaults(form, []);
      if (isNew) { location.hash = `#/rules/${enc(id)}`; return; }
      st.doc = doc;
      renderForm();
      writeRaw();
      versionEl.textContent = `Version ${saved.version}, saved ${fmtTime(saved.updated_at)}.`;
      loadHistory();
      statusEl.textContent = `Saved version ${saved.version}.`;
      statusEl.className = 'status ok';
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showFaults(form, err.faults(), { rule_id: 'id' });
      statusEl.textContent = err.message;
      statusEl.className = 'status bad';
    }
  });

  // loadHistory lists the saved versions, newest first: any can be loaded
  // into the editor (then saved as the next version) or restored at once.
  async function loadHistory() {
    let vs;
    try {
      vs = (await api('GET', `/v1/rules/${enc(st.id)}/versions`)).versions || [];
    } catch (err) {
      fill(history, h('li', { class: 'error' }, err.message));
      return;
    }
    fill(history, vs.slice().reverse().map((v) => h('li', {},
      h('strong', {}, `v${v.version}`), ` · ${fmtTime(v.updated_at)} · ${v.name}`,
      v.version === st.version ? h('span', { class: 'muted' }, ' (current)') : [
        ' ', h('button', { type: 'button', class: 'small', onclick: () => loadVersion(v) }, 'Load into editor'),
        ' ', h('button', { type: 'button', class: 'small', onclick: () => restore(v.version) }, 'Restore'),
      ])));
  }

  function loadVersion(v) {
    const { id, version, updated_at, ...doc } = v;
    st.doc = doc;
    renderForm();
    writeRaw();
    validateSoon();
    statusEl.textContent = `Version ${version} loaded: save to make it the next version.`;
  }

  async function restore(version) {
    if (!confirm(`Make version ${version} of ${st.id} current again (as a new version)?`)) return;
    try {
      const r = await api('POST', `/v1/rules/${enc(st.id)}/versions/${version}/restore`);
      const { id, version: v, updated_at, ...doc } = r;
      st.version = v;
      st.doc = doc;
      renderForm();
      writeRaw();
      validateSoon();
      versionEl.textContent = `Version ${v} (restored from ${version}), saved ${fmtTime(updated_at)}.`;
      loadHistory();
    } catch (err) {
      statusEl.textContent = err.message;
      statusEl.className = 'status bad';
    }
  }

  async function remove() {
    if (!confirm(`Delete rule ${st.id}? Its versions are kept.`)) return;
    await api('DELETE', `/v1/rules/${enc(st.id)}`);
    location.hash = '#/rules';
  }

  (async () => {
    if (!isNew) {
      try {
        const r = await api('GET', `/v1/rules/${enc(ruleId)}`);
        const { id, version, updated_at, ...doc } = r; // the server's, not the marketer's to edit
        st.version = version;
        st.doc = doc;
        versionEl.textContent = `Version ${r.version}, saved ${fmtTime(r.updated_at)}.`;
        loadHistory();
      } catch (err) {
        fill(root, h('p', { class: 'error' }, err.message));
        return;
      }
    }
    renderForm();
    writeRaw();
    validate();
    try {
      const stores = await listAll('/v1/stores', 'stores', 1000);
      storeSel.append(...stores.map((s) => h('option', { value: s.id }, `${s.name} (${s.id})`)));
    } catch { /* the preview picks a store itself */ }
  })();
}

// phone draws a push as a lock screen shows it (for an offer with
// variants, one phone per variant and language).
function phone(m, theirs, p) {
  return h('figure', { class: `phone${theirs ? ' theirs' : ''}`, 'data-lang': m.lang, 'data-variant': m.variant },
    h('div', { class: 'screen' },
      h('div', { class: 'clock' }, new Date().toTimeString().slice(0, 5)),
      h('div', { class: 'notification' },
        h('div', { class: 'app' }, h('span', { class: 'icon' }, 'N'), 'NEARCAST · now'),
        h('div', { class: 'title' }, m.title),
        h('div', { class: 'body' }, m.body))),
    h('figcaption', {}, m.variant ? `variant ${m.variant} · ` : '', m.lang, theirs ? ` · ${p.customer_id} gets this one` : ''));
}

// Stores: every store on the map with its fence and the H3 cells the
// server's index files it under; search by name or tag; click the map to
// add a store, drag one to move it, drag its handle to resize it, and
// edit the rest in the form. Each store in view is coloured by what its
// customers answered after their visits (its NPS over the last 13 weeks,
// docs/feedback.md), with a legend; a selected store shows its trend.

import { api, listAll, enc, exists, ApiError } from './api.js';
import { h, fill, field, showFaults, list, debounce } from './dom.js';
import { MapView, destination, distance } from './map.js';
import { band, legend, report } from './voice.js';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

// MAX_CELL_STORES is how many stores may be in view for their H3 cells to
// be fetched and drawn; past that, zoom in.
const MAX_CELL_STORES = 80;

// MAX_SCORE_STORES is how many stores may be in view for their scores to
// be fetched (one request each, once, a few at a time); past that, zoom in.
const MAX_SCORE_STORES = 150;
const SCORE_REQUESTS_AT_ONCE = 6;

export async function loadStores() {
  return listAll('/v1/stores', 'stores');
}

// storeShapes draws stores for a map: fence, centre, name; with scores
// (a Map of store id to its feedback report), each in its score's colour.
export function storeShapes(stores, selectedId, scores) {
  const out = [];
  for (const s of stores) {
    let cls = s.id === selectedId ? 'store selected' : 'store';
    if (scores) cls += ` score-${band(scores.get(s.id)).band}`;
    if (s.polygon && s.polygon.length) out.push({ polygon: s.polygon, cls: `fence ${cls}`, drag: `store:${s.id}`, title: s.name });
    else out.push({ circle: [s.lat, s.lng], radius_m: s.radius_m || 100, cls: `fence ${cls}`, drag: `store:${s.id}`, title: s.name });
    out.push({ dot: [s.lat, s.lng], px: 3, cls: 'store-dot', drag: `store:${s.id}` });
    out.push({ label: [s.lat, s.lng], text: s.name, dy: -8, cls: 'store-label', keepLabel: s.id === selectedId });
  }
  return out;
}

export function mountStores(root) {
  // draft is the store in the form; creating says it is not saved yet.
  const state = { stores: [], cells: new Map(), scores: new Map(), draft: null, creating: false, adding: false, query: '', dirty: false };
  const search = h('input', { id: 'store-search', type: 'search', placeholder: 'Search by name or tag', 'aria-label': 'search stores' });
  const listEl = h('ul', { id: 'store-list', class: 'items' });
  const formEl = h('form', { id: 'store-form', class: 'form', novalidate: true });
  const addBtn = h('button', { id: 'store-add', type: 'button', class: 'primary' }, 'Add store');
  const hint = h('p', { class: 'hint' }, 'Drag the background to pan, scroll to zoom. Drag a store to move it; drag the handle on its edge to resize.');
  const map = new MapView({
    shapes: () => shapes(),
    onClick: (lat, lng) => clickMap(lat, lng),
    onDrag: (key, lat, lng, phase) => drag(key, lat, lng, phase),
    onView: () => { loadCellsSoon(); loadScoresSoon(); },
  });
  const count = h('p', { class: 'muted', id: 'store-count' });
  const voiceEl = h('section', { id: 'store-voice', class: 'voice' });
  const scoreNote = h('p', { class: 'hint', id: 'score-note' });
  map.el.append(legend());
  fill(root, h('div', { class: 'split' },
    h('aside', { class: 'side' }, h('div', { class: 'row' }, search, addBtn), count, listEl, voiceEl, formEl),
    h('section', { class: 'main' }, map.el, scoreNote, hint)));

  search.addEventListener('input', () => { state.query = search.value.trim().toLowerCase(); renderList(); map.draw(); });
  addBtn.addEventListener('click', () => {
    state.adding = !state.adding;
    addBtn.classList.toggle('active', state.adding);
    addBtn.textContent = state.adding ? 'Click the map…' : 'Add store';
    map.svg.classList.toggle('adding', state.adding);
  });

  function matches(s) {
    const q = state.query;
    if (!q) return true;
    const tag = q.startsWith('tag:') ? q.slice(4) : null;
    if (tag !== null) return (s.tags || []).some((t) => t.toLowerCase().includes(tag));
    return s.name.toLowerCase().includes(q) || s.id.toLowerCase().includes(q) || (s.tags || []).some((t) => t.toLowerCase().includes(q));
  }

  // visible lists the stores to draw: those the search matches, the one
  // being edited as it is in the form.
  function visible() {
    const out = state.stores.filter(matches);
    if (state.creating && state.draft) return [...out, state.draft];
    return out.map((s) => (state.draft && s.id === state.draft.id ? state.draft : s));
  }

  function shapes() {
    const sel = state.draft;
    const out = [];
    for (const s of visible()) {
      const cls = s.id === sel?.id ? 'cell selected' : 'cell';
      for (const c of state.cells.get(s.id)?.cells || []) out.push({ polygon: c.boundary, cls, title: `H3 ${c.cell} (resolution ${c.resolution}) of ${s.name}` });
    }
    out.push(...storeShapes(visible(), sel?.id, state.scores));
    if (sel && sel.lat !== undefined && !(sel.polygon && sel.polygon.length)) {
      out.push({ dot: destination(sel.lat, sel.lng, sel.radius_m || 100, 90), px: 6, cls: 'handle', drag: 'radius', title: 'drag to resize' });
    }
    return out;
  }

  function renderList() {
    const items = state.stores.filter(matches);
    count.textContent = state.query ? `${items.length} of ${state.stores.length} stores match` : `${state.stores.length} stores`;
    fill(listEl, items.length ? items.map((s) => {
      const b = band(state.scores.get(s.id));
      return h('li', {
        class: state.draft?.id === s.id ? 'selected' : '', 'data-store': s.id,
        onclick: () => { select(s.id); focus(s); },
      }, h('strong', {}, s.name), ' ', h('span', { class: 'muted' }, s.id),
      b.text ? h('span', { class: `score score-${b.band}`, 'data-band': b.band, title: b.title }, b.text) : null,
      h('div', { class: 'tags' }, (s.tags || []).map((t) => h('span', { class: 'tag' }, t))));
    }) : h('li', { class: 'muted' }, 'No store matches.'));
  }

  // renderVoice shows the selected store's answers: its score with its
  // interval and its trend per week.
  function renderVoice() {
    const d = state.draft;
    if (!d || state.creating) { fill(voiceEl); return; }
    const rep = state.scores.get(d.id);
    fill(voiceEl, h('h3', {}, 'Customer voice · last 13 weeks'),
      rep ? report(rep) : h('p', { class: 'muted' }, 'Loading…'));
  }

  // focus shows a store with the cells the index files it under.
  function focus(s) {
    const cells = state.cells.get(s.id)?.cells || [];
    const pts = cells.flatMap((c) => c.boundary);
    map.fit(pts.length ? pts : [[s.lat, s.lng]], (s.radius_m || 300) * 4);
  }

  function select(id) {
    const s = state.stores.find((x) => x.id === id);
    state.draft = s ? structuredClone(s) : null;
    state.dirty = false;
    state.creating = false;
    renderForm(false);
    renderList();
    map.draw();
    cellInfo();
    renderVoice();
    if (state.draft && !state.scores.has(id)) loadScores();
  }

  // cellInfo says what the dashed outlines are.
  function cellInfo() {
    const c = state.draft && state.cells.get(state.draft.id)?.cells;
    hint.textContent = c?.length
      ? `${state.draft.name}: the index files this fence under ${c.length} H3 cells of resolution ${c[0].resolution} (dashed), enough to catch a customer near its edge. Drag the store to move it; drag the handle on its edge to resize.`
      : `Dashed outlines: the H3 cells the server's index files each fence under (drawn when at most ${MAX_CELL_STORES} stores are in view). Drag the background to pan, scroll to zoom. Drag a store to move it; drag the handle on its edge to resize.`;
  }

  function clickMap(lat, lng) {
    if (!state.adding) return;
    state.adding = false;
    addBtn.classList.remove('active');
    addBtn.textContent = 'Add store';
    map.svg.classList.remove('adding');
    state.draft = { id: '', name: '', lat: round(lat), lng: round(lng), radius_m: 100, tags: [], timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || '' };
    state.creating = true;
    state.dirty = true;
    renderForm(true);
    renderVoice();
    map.draw();
    formEl.querySelector('[name=id]').focus();
  }

  function drag(key, lat, lng, phase) {
    if (state.adding) { // a click on a store while adding one adds it there
      if (phase === 'click' || phase === 'end') clickMap(lat, lng);
      return;
    }
    if (key.startsWith('store:')) {
      const id = key.slice(6);
      if (phase === 'start' || phase === 'click') {
        if (state.draft?.id !== id) select(id);
        if (phase === 'click') return;
        state.grab = [lat, lng, state.draft.lat, state.draft.lng, structuredClone(state.draft.polygon || null)];
        return;
      }
      const [glat, glng, slat, slng, poly] = state.grab;
      const dLat = lat - glat, dLng = lng - glng;
      state.draft.lat = round(slat + dLat);
      state.draft.lng = round(slng + dLng);
      if (poly) state.draft.polygon = poly.map(([a, b]) => [round(a + dLat), round(b + dLng)]);
    } else if (key === 'radius' && state.draft) {
      if (phase === 'start' || phase === 'click') return;
      state.draft.radius_m = Math.max(10, Math.round(distance(state.draft.lat, state.draft.lng, lat, lng)));
    }
    state.dirty = true;
    state.cells.delete(state.draft.id);
    renderForm(state.creating);
    hint.textContent = 'Moved or resized: save to keep it; the server then files it under new H3 cells.';
  }

  function renderForm(isNew) {
    const d = state.draft;
    if (!d) { fill(formEl); return; }
    const inp = (name, value, attrs = {}) => h('input', { name, value: value ?? '', ...attrs });
    const hours = d.opening_hours || {};
    fill(formEl,
      h('h3', {}, isNew ? 'New store' : `Store ${d.id}`, state.dirty ? h('span', { class: 'badge' }, 'unsaved') : null),
      field('id', 'Id', inp('id', d.id, { readonly: !isNew, required: true, placeholder: 's-berlin-mitte' })),
      field('name', 'Name', inp('name', d.name, { required: true })),
      h('div', { class: 'row' },
        field('lat', 'Latitude', inp('lat', d.lat, { type: 'number', step: 'any' })),
        field('lng', 'Longitude', inp('lng', d.lng, { type: 'number', step: 'any' }))),
      d.polygon && d.polygon.length ? null : field('radius_m', 'Radius (m)', inp('radius_m', d.radius_m, { type: 'number', min: 10, max: 50000 })),
      field('tags', 'Tags', inp('tags', (d.tags || []).join(', '), { placeholder: 'coffee, berlin' }), 'comma-separated'),
      field('timezone', 'Time zone', inp('timezone', d.timezone, { placeholder: 'Europe/Berlin' })),
      h('fieldset', { class: 'hours', 'data-field': 'opening_hours' }, h('legend', {}, 'Opening hours (empty: always open)'),
        DAYS.map((day) => field(`opening_hours.${day}`, day, inp(`hours.${day}`, (hours[day] || []).join(', '), { placeholder: '07:00-20:00' }))),
        h('span', { class: 'fault' })),
      field('polygon', 'Polygon (instead of a radius)', h('textarea', { name: 'polygon', rows: 3, placeholder: '[[52.52, 13.41], [52.53, 13.41], [52.53, 13.42]]' }, d.polygon ? JSON.stringify(d.polygon) : ''), '[lat, lng] pairs, at least 3'),
      h('div', { class: 'field', 'data-field': '' }, h('span', { class: 'fault' })),
      h('div', { class: 'row' },
        h('button', { type: 'submit', id: 'store-save', class: 'primary' }, 'Save'),
        isNew ? null : h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete'),
        h('button', { type: 'button', 'data-action': 'close', onclick: close }, 'Close')),
      h('p', { class: 'status', id: 'store-status' }));
  }

  function close() {
    state.draft = null;
    state.creating = false;
    renderForm();
    renderList();
    renderVoice();
    map.draw();
  }

  formEl.addEventListener('input', () => {
    readForm();
    state.dirty = true;
    formEl.querySelector('h3 .badge') || formEl.querySelector('h3').append(h('span', { class: 'badge' }, 'unsaved'));
    map.draw();
  });

  // readForm copies the form into the draft; a value the form cannot
  // parse is kept as typed, for the server to name.
  function readForm() {
    const d = state.draft, f = new FormData(formEl);
    const num = (v) => (v === '' ? undefined : isNaN(Number(v)) ? v : Number(v));
    d.id = f.get('id');
    d.name = f.get('name');
    d.lat = num(f.get('lat'));
    d.lng = num(f.get('lng'));
    if (f.has('radius_m')) d.radius_m = num(f.get('radius_m'));
    d.tags = list(f.get('tags'));
    d.timezone = f.get('timezone') || undefined;
    const hours = {};
    for (const day of DAYS) { const v = list(f.get(`hours.${day}`)); if (v.length) hours[day] = v; }
    d.opening_hours = Object.keys(hours).length ? hours : undefined;
    const poly = f.get('polygon').trim();
    if (!poly) delete d.polygon;
    else try { d.polygon = JSON.parse(poly); delete d.radius_m; } catch { d.polygon = poly; }
  }

  formEl.addEventListener('submit', async (e) => {
    e.preventDefault();
    readForm();
    const d = state.draft, status = formEl.querySelector('#store-status');
    const { id, updated_at, ...body } = d;
    if (d.polygon && d.polygon.length) delete body.radius_m;
    if (state.creating && id && await exists(`/v1/stores/${enc(id)}`)) {
      showFaults(formEl, [{ field: 'id', message: `a store ${id} exists already: pick it from the list to change it` }]);
      return;
    }
    try {
      const saved = await api('PUT', `/v1/stores/${enc(id || '-')}`, body);
      showFaults(formEl, []);
      const i = state.stores.findIndex((s) => s.id === saved.id);
      if (i >= 0) state.stores[i] = saved; else state.stores.push(saved);
      state.stores.sort((a, b) => a.id.localeCompare(b.id));
      state.draft = structuredClone(saved);
      state.dirty = false;
      state.creating = false;
      state.cells.delete(saved.id);
      renderForm(false);
      formEl.querySelector('#store-status').textContent = `Saved ${saved.name}.`;
      renderList();
      renderVoice();
      loadCells();
      loadScores();
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      showFaults(formEl, err.faults(), { store_id: 'id' });
      status.textContent = '';
    }
  });

  async function remove() {
    const d = state.draft;
    if (!confirm(`Delete store ${d.name} (${d.id})? Rules that name it will no longer fire there.`)) return;
    try {
      await api('DELETE', `/v1/stores/${enc(d.id)}`);
      state.stores = state.stores.filter((s) => s.id !== d.id);
      close();
    } catch (err) {
      showFaults(formEl, err.faults ? err.faults() : [{ field: '', message: String(err) }]);
    }
  }

  // loadCells fetches the H3 cells of the stores in view, when there are
  // few enough for cells to mean something at that zoom.
  async function loadCells() {
    let inView = visible().filter((s) => s.updated_at && map.near([s.lat, s.lng], s.radius_m || 0));
    if (inView.length > MAX_CELL_STORES) inView = [];
    if (state.draft?.updated_at && !state.creating) inView.push(state.draft); // the selected store's, always
    const todo = inView.filter((s) => !state.cells.has(s.id));
    await Promise.all(todo.map(async (s) => {
      state.cells.set(s.id, { cells: [] });
      try {
        state.cells.set(s.id, await api('GET', `/v1/stores/${enc(s.id)}/cells`));
      } catch {
        state.cells.delete(s.id); // not indexed yet: try again on the next load
      }
    }));
    if (todo.length) { map.draw(); cellInfo(); }
  }

  const loadCellsSoon = debounce(loadCells, 250);

  // loadScores fetches the scores of the stores in view that have none
  // yet (when there are few enough; the selected store's always), a few
  // requests at a time, each once: the map colours them as they come.
  async function loadScores() {
    let inView = state.stores.filter((s) => matches(s) && s.lat !== undefined && map.near([s.lat, s.lng], s.radius_m || 0));
    const tooMany = inView.length > MAX_SCORE_STORES;
    if (tooMany) inView = [];
    const sel = state.draft && !state.creating ? state.stores.find((s) => s.id === state.draft.id) : null;
    if (sel && !inView.includes(sel)) inView.unshift(sel);
    scoreNote.textContent = tooMany ? `More than ${MAX_SCORE_STORES} stores in view: zoom in to colour them by their customers' answers.` : '';
    const todo = inView.filter((s) => !state.scores.has(s.id) && !state.scoring?.has(s.id));
    if (!todo.length) return;
    state.scoring ??= new Set();
    for (const s of todo) state.scoring.add(s.id);
    const next = async () => {
      for (let s = todo.shift(); s; s = todo.shift()) {
        try {
          state.scores.set(s.id, await api('GET', `/v1/stores/${enc(s.id)}/feedback`));
        } catch {
          // no scores for it (deleted meanwhile, or the server busy): try again on the next load
        }
        state.scoring.delete(s.id);
        map.drawSoon();
        if (state.draft?.id === s.id) renderVoice();
      }
    };
    await Promise.all(Array.from({ length: Math.min(SCORE_REQUESTS_AT_ONCE, todo.length) }, next));
    renderList();
  }

  const loadScoresSoon = debounce(loadScores, 250);

  (async () => {
    try {
      state.stores = await loadStores();
    } catch (err) {
      fill(listEl, h('li', { class: 'error' }, err.message));
      return;
    }
    renderList();
    map.fitBusiest(state.stores.filter((s) => s.lat !== undefined).map((s) => [s.lat, s.lng]));
    await Promise.all([loadCells(), loadScores()]);
    map.draw();
  })();
}

function round(v) {
  return Math.round(v * 1e6) / 1e6;
}

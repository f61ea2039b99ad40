// Simulate: click a path on the map for one customer, and see ping by
// ping what the engine would do, explained. The walk goes to
// POST /v1/simulate in one request: the server evaluates each ping after
// the ones before it, at its time in the walk, in a sandbox copy of the
// customer's state, so presence, dwell and caps carry through the walk
// and nothing changes for the real customer.

import { api, listAll, enc } from './api.js';
import { h, fill, field } from './dom.js';
import { MapView, distance } from './map.js';
import { storeShapes, loadStores } from './stores.js';

// interpolate puts a point every stepM metres along the path, keeping its
// corners.
export function interpolate(path, stepM) {
  const out = [];
  let along = 0;
  for (let i = 0; i < path.length; i++) {
    if (i === 0) { out.push({ at: 0, p: path[0] }); continue; }
    const [a, b] = [path[i - 1], path[i]];
    const d = distance(a[0], a[1], b[0], b[1]);
    const n = Math.max(1, Math.ceil(d / stepM));
    for (let k = 1; k <= n; k++) {
      const f = k / n;
      out.push({ at: Math.round(along + d * f), p: [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f] });
    }
    along += d;
  }
  return out;
}

// MAX_PINGS bounds one walk: a few kilometres at the default spacing.
const MAX_PINGS = 400;

export function mountSimulate(root) {
  const st = { stores: [], rules: new Map(), path: [], pings: [], running: false };
  const cust = h('input', { id: 'sim-customer', value: 'c-42' });
  const device = h('select', { id: 'sim-device' }, h('option', { value: '' }, 'no device'));
  const speed = h('input', { id: 'sim-speed', type: 'number', value: 1.4, step: 0.1, min: 0 });
  const step = h('input', { id: 'sim-step', type: 'number', value: 20, min: 5, max: 500 });
  const accuracy = h('input', { id: 'sim-accuracy', type: 'number', value: 10, min: 0, max: 250 });
  const start = h('input', { id: 'sim-start', type: 'datetime-local', value: localNow() });
  const who = h('div', { class: 'who muted', id: 'sim-who' });
  const results = h('div', { id: 'sim-results' });
  const runBtn = h('button', { type: 'button', id: 'sim-run', class: 'primary' }, 'Run walk');
  const map = new MapView({ shapes, onClick: (lat, lng) => { st.path.push([lat, lng]); st.pings = []; map.draw(); pathInfo(); } });
  const info = h('span', { class: 'muted', id: 'sim-path-info' }, 'Click the map to draw a walk.');
  fill(root, h('div', { class: 'split' },
    h('aside', { class: 'side' },
      h('h2', {}, 'Simulate a walk'),
      h('p', { class: 'hint' }, 'The walk is simulated on the server in a copy of the customer\'s profile, caps and presence: each ping remembers the ones before it (enter, stay, leave, caps reached), at its time in the walk, explained. Nothing real changes; coupons in a simulation exist nowhere.'),
      field('$customer', 'Customer', cust), who, field('$device', 'Device', device),
      h('div', { class: 'row' }, field('$speed', 'Speed (m/s)', speed), field('$step', 'Ping every (m)', step), field('$accuracy', 'Accuracy (m)', accuracy)),
      field('$start', 'Walk starts at (your time)', start),
      h('div', { class: 'row' }, runBtn,
        h('button', { type: 'button', onclick: () => { st.path.pop(); st.pings = []; map.draw(); pathInfo(); } }, 'Undo point'),
        h('button', { type: 'button', id: 'sim-clear', onclick: () => { st.path = []; st.pings = []; fill(results); map.draw(); pathInfo(); } }, 'Clear')),
      info),
    h('section', { class: 'main' }, map.el, results)));

  function shapes() {
    const out = storeShapes(st.stores);
    if (st.path.length > 1) out.push({ line: st.path, cls: 'walk' });
    st.path.forEach((p, i) => out.push({ dot: p, px: 4, cls: 'vertex', title: `point ${i + 1}` }));
    for (const x of st.pings) out.push({ dot: x.p, px: x.offers ? 7 : x.events ? 5 : 3, cls: `ping ${x.offers ? 'offer' : x.events ? 'event' : ''}`, title: `ping ${x.n}` });
    const hl = st.pings.find((x) => x.n === st.highlight);
    if (hl) out.push({ dot: hl.p, px: 11, cls: 'ping-highlight' });
    return out;
  }

  function pathInfo() {
    const pts = interpolate(st.path, Number(step.value) || 20);
    const len = pts.length ? pts[pts.length - 1].at : 0;
    info.textContent = st.path.length ? `${st.path.length} points, ${len} m, ${pts.length} pings` : 'Click the map to draw a walk.';
  }

  async function loadCustomer() {
    const id = cust.value.trim();
    fill(device, h('option', { value: '' }, 'no device'));
    if (!id) { who.textContent = ''; return; }
    try {
      const c = await api('GET', `/v1/customers/${enc(id)}`);
      const consent = [c.consent?.location ? null : 'no location consent: pings are ignored', c.consent?.push ? null : 'no push consent: no offer'].filter(Boolean);
      fill(who, h('strong', {}, [c.first_name, c.last_name].filter(Boolean).join(' ') || c.id), ` · ${c.locale || 'no locale'} · ${c.timezone || 'UTC'}`,
        c.segments?.length ? ` · ${c.segments.join(', ')}` : '',
        consent.map((x) => h('div', { class: 'error' }, x)));
      const ds = await api('GET', `/v1/customers/${enc(id)}/devices`);
      for (const d of ds.devices || []) device.append(h('option', { value: d.device_id }, `${d.device_id} (${d.platform})`));
      if (ds.devices?.length) device.value = ds.devices[0].device_id;
    } catch (err) {
      fill(who, h('span', { class: 'error' }, err.status === 404 ? `No customer ${id}.` : err.message));
    }
  }
  cust.addEventListener('change', loadCustomer);

  runBtn.addEventListener('click', async () => {
    if (st.running || !st.path.length) return;
    st.running = true;
    runBtn.disabled = true;
    st.pings = [];
    const tbody = h('tbody');
    const summary = h('p', { id: 'sim-summary', class: 'summary' }, 'Walking…');
    const quietRows = h('input', { type: 'checkbox', id: 'sim-only-events' });
    quietRows.addEventListener('change', () => tbody.classList.toggle('only-events', quietRows.checked));
    fill(results, h('div', { class: 'row between' }, summary, h('label', {}, quietRows, ' only pings that caused something')), h('table', { class: 'grid sim' },
      h('thead', {}, h('tr', {}, ['#', 'm', 'Time', 'Events', 'Offer', 'Decisions'].map((x) => h('th', {}, x)))), tbody));
    const pts = interpolate(st.path, Number(step.value) || 20);
    if (pts.length > MAX_PINGS) {
      summary.textContent = `${pts.length} pings is more than ${MAX_PINGS}: draw a shorter walk, or ping less often.`;
      summary.classList.add('error');
      st.running = false;
      runBtn.disabled = false;
      return;
    }
    const t0 = start.value ? new Date(start.value).getTime() : Date.now();
    const mps = Math.max(Number(speed.value) || 0, 0.1);
    const walk = { customer_id: cust.value.trim(), pings: pts.map((x) => ({
      lat: round(x.p[0]), lng: round(x.p[1]), accuracy_m: Number(accuracy.value), speed_mps: Number(speed.value),
      ts: new Date(t0 + Math.round((x.at / mps) * 1000)).toISOString(),
    })) };
    if (device.value) walk.device_id = device.value;
    try {
      const res = await api('POST', '/v1/simulate', walk);
      for (const [i, r] of (res.steps || []).entries()) {
        const x = pts[i];
        st.pings.push({ n: i + 1, p: x.p, events: (r.events || []).length > 0, offers: (r.offers || []).length > 0 });
        tbody.append(row(i + 1, x.at, r));
      }
    } catch (err) {
      tbody.append(h('tr', { class: 'error' }, h('td', { colspan: 6 }, `${err.field ? `${err.field}: ` : ''}${err.message}`)));
    }
    const n = st.pings.length, withEvents = st.pings.filter((x) => x.events).length, offers = st.pings.filter((x) => x.offers).length;
    summary.textContent = `${n} pings: ${withEvents} with an event, ${offers} with an offer.`;
    map.draw();
    st.running = false;
    runBtn.disabled = false;
  });

  function storeName(id) {
    return st.stores.find((s) => s.id === id)?.name || id;
  }

  function row(n, at, res) {
    const events = res.events || [], offers = res.offers || [], explain = res.explain || [];
    const cls = [offers.length ? 'has-offer' : '', events.length ? 'has-event' : ''].join(' ');
    return h('tr', { class: cls, title: 'show on the map', onclick: () => { st.highlight = n; map.draw(); } },
      h('td', { class: 'num' }, n),
      h('td', { class: 'num' }, at),
      h('td', { class: 'num' }, new Date(res.ts).toLocaleTimeString()),
      h('td', {}, events.length ? events.map((e) => h('div', { class: `event ${e.type}` }, `${e.type} ${storeName(e.store_id)} · ${e.distance_m} m`,
        e.dwell_s ? ` · ${e.dwell_s}s` : '', e.visit_s ? ` · visit ${e.visit_s}s` : '')) : h('span', { class: 'muted' }, '—')),
      h('td', {}, offers.map((o) => h('div', { class: 'offer' }, h('strong', {}, o.title), h('div', {}, o.body),
        h('div', { class: 'muted' }, `${st.rules.get(o.rule_id) || o.rule_id} · code ${o.coupon_code}`)))),
      h('td', {}, explain.map((x) => h('div', { class: `explain ${x.result === 'sent' ? 'sent' : 'not'}` },
        h('span', { class: 'result' }, x.result), ` ${st.rules.get(x.rule_id) || x.rule_id} @ ${storeName(x.store_id)}`))));
  }

  (async () => {
    loadCustomer();
    try {
      st.stores = await loadStores();
      for (const r of await listAll('/v1/rules', 'rules')) st.rules.set(r.id, r.name);
    } catch (err) {
      fill(results, h('p', { class: 'error' }, err.message));
    }
    map.fitBusiest(st.stores.map((s) => [s.lat, s.lng]));
  })();
}

// localNow is the time now as a datetime-local input takes it.
function localNow() {
  const d = new Date();
  d.setSeconds(0, 0);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function round(v) {
  return Math.round(v * 1e7) / 1e7;
}

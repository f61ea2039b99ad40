// Simulate: click a path on the map for one customer, and see ping by
// ping what the engine would do, explained. The walk goes to
// POST /v1/simulate in one request: the server evaluates each ping after
// the ones before it, at its time in the walk, in a sandbox copy of the
// customer's state, so presence, dwell and caps carry through the walk
// and nothing changes for the real customer.
//
// Each answer tells the phone what to watch (monitor: regions around the
// nearest stores, a wake circle) and when to ping next (next_ping); the
// server says which pings of the walk a phone following those answers
// would have sent (phone_sends). The map draws what the phone watches at
// the step selected (or the last): the answer of the last ping it sent.

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

// WAKES says why a phone sends a ping (phone_wake).
const WAKES = {
  first: 'first ping', unpaced: 'not paced', region: 'crossed a region', wake: 'left the wake circle',
  distance: 'moved next_ping', time: 'next_ping time',
};

// metres writes a distance for people.
function metres(m) {
  return m >= 10000 ? `${Math.round(m / 1000)} km` : m >= 1000 ? `${(m / 1000).toFixed(1)} km` : `${m} m`;
}

export function mountSimulate(root) {
  const st = { stores: [], rules: new Map(), path: [], pings: [], running: false, highlight: null };
  const cust = h('input', { id: 'sim-customer', value: 'c-42' });
  const device = h('select', { id: 'sim-device' }, h('option', { value: '' }, 'no device'));
  const speed = h('input', { id: 'sim-speed', type: 'number', value: 1.4, step: 0.1, min: 0 });
  const step = h('input', { id: 'sim-step', type: 'number', value: 20, min: 5, max: 500 });
  const accuracy = h('input', { id: 'sim-accuracy', type: 'number', value: 10, min: 0, max: 250 });
  const start = h('input', { id: 'sim-start', type: 'datetime-local', value: localNow() });
  const who = h('div', { class: 'who muted', id: 'sim-who' });
  const results = h('div', { id: 'sim-results' });
  const runBtn = h('button', { type: 'button', id: 'sim-run', class: 'primary' }, 'Run walk');
  const map = new MapView({ shapes, onClick: (lat, lng) => { st.path.push([lat, lng]); st.pings = []; map.draw(); pathInfo(); showMonitor(); } });
  const monitorInfo = h('p', { class: 'hint monitor-info', id: 'sim-monitor' });
  const info = h('span', { class: 'muted', id: 'sim-path-info' }, 'Click the map to draw a walk.');
  fill(root, h('div', { class: 'split' },
    h('aside', { class: 'side' },
      h('h2', {}, 'Simulate a walk'),
      h('p', { class: 'hint' }, 'The walk is simulated on the server in a copy of the customer\'s profile, caps and presence: each ping remembers the ones before it (enter, stay, leave, caps reached), at its time in the walk, explained. Nothing real changes; coupons in a simulation exist nowhere.'),
      field('$customer', 'Customer', cust), who, field('$device', 'Device', device),
      h('div', { class: 'row' }, field('$speed', 'Speed (m/s)', speed), field('$step', 'Ping every (m)', step), field('$accuracy', 'Accuracy (m)', accuracy)),
      field('$start', 'Walk starts at (your time)', start),
      h('div', { class: 'row' }, runBtn,
        h('button', { type: 'button', onclick: () => { st.path.pop(); st.pings = []; map.draw(); pathInfo(); showMonitor(); } }, 'Undo point'),
        h('button', { type: 'button', id: 'sim-clear', onclick: () => { st.path = []; st.pings = []; fill(results); map.draw(); pathInfo(); showMonitor(); } }, 'Clear')),
      info),
    h('section', { class: 'main' }, map.el, monitorInfo, results)));

  function shapes() {
    const out = storeShapes(st.stores);
    const shown = shownPing(), src = shown && following(shown.n);
    const m = src?.monitor;
    for (const r of m?.regions || []) {
      out.push({ circle: [r.lat, r.lng], radius_m: r.radius_m, cls: 'monitor-region', overlay: true, title: `watched: ${storeName(r.store_id)}, ${metres(r.radius_m)}` });
    }
    if (m?.wake) out.push({ circle: [m.wake.lat, m.wake.lng], radius_m: m.wake.radius_m, cls: 'monitor-wake', overlay: true, title: `wake circle, ${metres(m.wake.radius_m)}` });
    if (src?.next) out.push({ circle: src.p, radius_m: src.next.distance_m, cls: 'next-ping', overlay: true, title: `next ping after ${metres(src.next.distance_m)}` });
    if (st.path.length > 1) out.push({ line: st.path, cls: 'walk' });
    st.path.forEach((p, i) => out.push({ dot: p, px: 4, cls: 'vertex', title: `point ${i + 1}` }));
    for (const x of st.pings) {
      out.push({ dot: x.p, px: x.offers ? 7 : x.events ? 5 : x.sends ? 3.5 : 2.5, cls: `ping ${x.offers ? 'offer' : x.events ? 'event' : ''} ${x.sends ? 'sent' : 'skipped'}`,
        title: `ping ${x.n}${x.sends ? `: sent, ${WAKES[x.wake] || x.wake}` : ': a phone would not send it'}` });
    }
    if (src && src !== shown) out.push({ dot: src.p, px: 9, cls: 'ping-source', title: `ping ${src.n}: the answer the phone follows` });
    const hl = st.pings.find((x) => x.n === st.highlight);
    if (hl) out.push({ dot: hl.p, px: 11, cls: 'ping-highlight' });
    return out;
  }

  // shownPing is the step whose watch the map draws: the one selected, else the last.
  function shownPing() {
    return st.pings.find((x) => x.n === st.highlight) || st.pings[st.pings.length - 1];
  }

  // following is the step whose answer a phone follows at step n: the
  // last one it sent up to n.
  function following(n) {
    let src;
    for (const x of st.pings) if (x.n <= n && x.sends) src = x;
    return src;
  }

  // showMonitor says under the map what the map draws of the phone's watch.
  function showMonitor() {
    const shown = shownPing(), src = shown && following(shown.n);
    if (!shown || !src) { fill(monitorInfo); return; }
    const m = src.monitor, np = src.next;
    const watch = m ? `watches ${m.regions.length} region${m.regions.length === 1 ? '' : 's'} (thin circles) and ${m.wake ? `a wake circle of ${metres(m.wake.radius_m)} (dashed)` : 'no wake circle'}`
      : 'watches nothing';
    const next = np ? `; it pings again after ${metres(np.distance_m)} (dotted)${np.after_s ? ` or ${np.after_s} s` : ''}` : '; it sends every fix';
    fill(monitorInfo, h('strong', {}, `Ping ${shown.n}: `),
      shown.sends ? `sent (${WAKES[shown.wake] || shown.wake}). ` : `a phone would not send it; it follows the answer to ping ${src.n}. `,
      `The phone ${watch}${next}.`);
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
        consent.map((x) => h('div', { class: 'error' }, x)),
        c.consent?.feedback ? null : h('div', { class: 'muted', id: 'sim-no-feedback' }, 'no feedback consent: not asked questions after visits'));
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
    st.highlight = null;
    const tbody = h('tbody');
    const summary = h('p', { id: 'sim-summary', class: 'summary' }, 'Walking…');
    const quietRows = h('input', { type: 'checkbox', id: 'sim-only-events' });
    quietRows.addEventListener('change', () => tbody.classList.toggle('only-events', quietRows.checked));
    const sentRows = h('input', { type: 'checkbox', id: 'sim-only-sent' });
    sentRows.addEventListener('change', () => tbody.classList.toggle('only-sent', sentRows.checked));
    fill(results, h('div', { class: 'row between' }, summary, h('span', {},
      h('label', {}, quietRows, ' only pings that caused something'), ' ', h('label', {}, sentRows, ' only pings a phone sends'))), h('table', { class: 'grid sim' },
      h('thead', {}, h('tr', {}, ['#', 'm', 'Time', 'Phone', 'Events', 'Offer', 'Decisions'].map((x) => h('th', {}, x)))), tbody));
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
    let phone = null;
    try {
      const res = await api('POST', '/v1/simulate', walk);
      phone = res.phone || null;
      for (const [i, r] of (res.steps || []).entries()) {
        const x = pts[i];
        st.pings.push({ n: i + 1, p: x.p, events: (r.events || []).length > 0, offers: (r.offers || []).length > 0,
          sends: r.phone_sends !== false, wake: r.phone_wake || '', monitor: r.monitor || null, next: r.next_ping || null });
        tbody.append(row(i + 1, x.at, r));
      }
    } catch (err) {
      tbody.append(h('tr', { class: 'error' }, h('td', { colspan: 7 }, `${err.field ? `${err.field}: ` : ''}${err.message}`)));
    }
    const n = st.pings.length, withEvents = st.pings.filter((x) => x.events).length, offers = st.pings.filter((x) => x.offers).length;
    const late = st.pings.filter((x) => x.events && !x.sends).length;
    fill(summary, `${n} pings: ${withEvents} with an event, ${offers} with an offer. `,
      phone ? h('span', { id: 'sim-phone' }, `A phone would have sent ${phone.sends} of ${phone.steps} pings.`) : null,
      late ? h('span', { class: 'late' }, ` ${late} ping${late === 1 ? '' : 's'} it would not send caused an event, which it would tell at its next ping.`) : null);
    map.draw();
    showMonitor();
    st.running = false;
    runBtn.disabled = false;
  });

  function storeName(id) {
    return st.stores.find((s) => s.id === id)?.name || id;
  }

  function row(n, at, res) {
    const events = res.events || [], offers = res.offers || [], explain = res.explain || [];
    const sends = res.phone_sends !== false;
    const cls = [offers.length ? 'has-offer' : '', events.length ? 'has-event' : '', sends ? 'phone-sent' : 'phone-skipped',
      !sends && events.length ? 'late' : ''].join(' ');
    const tr = h('tr', { class: cls, title: sends ? 'show on the map' : 'a phone would not send this ping; show on the map', onclick: () => {
      st.highlight = n;
      for (const x of tr.parentNode.querySelectorAll('tr.selected')) x.classList.remove('selected');
      tr.classList.add('selected');
      map.draw();
      showMonitor();
    } },
      h('td', { class: 'num' }, n),
      h('td', { class: 'num' }, at),
      h('td', { class: 'num' }, new Date(res.ts).toLocaleTimeString()),
      h('td', { class: 'phone' }, sends ? h('span', { class: 'sent' }, 'sent', h('div', { class: 'muted' }, WAKES[res.phone_wake] || res.phone_wake || ''))
        : h('span', { class: 'skipped' }, 'asleep')),
      h('td', {}, events.length ? events.map((e) => h('div', { class: `event ${e.type}` }, `${e.type} ${storeName(e.store_id)} · ${e.distance_m} m`,
        e.dwell_s ? ` · ${e.dwell_s}s` : '', e.visit_s ? ` · visit ${e.visit_s}s` : '')) : h('span', { class: 'muted' }, '—')),
      h('td', {}, offers.map((o) => h('div', { class: `offer${o.kind === 'feedback' ? ' question' : ''}` }, h('strong', {}, o.title), h('div', {}, o.body),
        h('div', { class: 'muted' }, `${st.rules.get(o.rule_id) || o.rule_id} · ${o.kind === 'feedback' ? `question ${o.coupon_code}` : `code ${o.coupon_code}`}`))),
        res.answer ? h('div', { class: 'muted answer' }, `answered ${res.answer.score}: ${res.answer.result}`) : null),
      h('td', {}, explain.map((x) => h('div', { class: `explain ${x.result === 'sent' ? 'sent' : 'not'}` },
        h('span', { class: 'result' }, x.result), ` ${st.rules.get(x.rule_id) || x.rule_id} @ ${storeName(x.store_id)}`))));
    return tr;
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

// Webhooks: every subscription with how its delivery goes (the events
// not delivered yet and the age of the oldest, the failures and last
// error this replica saw, the dead letters), a test event sent with a
// click, and a subscription's dead letters, replayed or dropped one by
// one or all at once. #/webhooks, #/webhooks/<id> (its dead letters open).

import { api, enc } from './api.js';
import { h, fill, fmtTime } from './dom.js';

// age says how long ago, in words: 12 s, 5 min, 2.5 h, 3 d.
export function age(s) {
  if (!s) return '—';
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

const REFRESH_MS = 5000;

export function mountWebhooks(root, openId) {
  const body = h('tbody', {}, h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'Loading…')));
  const status = h('p', { class: 'status', id: 'webhook-status', role: 'status' });
  const dead = h('section', { id: 'dead-letters', class: 'dead' });
  const table = h('table', { class: 'grid', id: 'webhook-table' },
    h('thead', {}, h('tr', {}, ['Subscription', 'Status', 'Not delivered', 'Oldest waiting', 'Failures (this replica)', 'Dead letters', ''].map((x) => h('th', {}, x)))),
    body);
  fill(root, h('div', { class: 'page' },
    h('div', { class: 'row between' }, h('h2', {}, 'Webhooks'),
      h('span', { class: 'hint' }, 'Signed events to your other systems. Subscriptions are written with PUT /v1/webhooks/{id}.'),
      h('button', { type: 'button', id: 'webhook-refresh', onclick: () => load() }, 'Refresh')),
    table, status, dead));

  const say = (text, bad = false) => {
    status.textContent = text;
    status.classList.toggle('bad', bad);
    status.classList.toggle('ok', !bad);
  };

  let timer;
  async function load() {
    clearTimeout(timer);
    if (!document.body.contains(table)) return; // another view took over
    let subs;
    try {
      subs = (await api('GET', '/v1/webhooks')).webhooks;
    } catch (err) {
      fill(body, h('tr', {}, h('td', { colspan: 7, class: 'error' }, err.message)));
      return;
    }
    fill(body, subs.length ? subs.map(row) : h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No subscriptions yet.')));
    timer = setTimeout(load, REFRESH_MS);
  }

  function row(s) {
    const hl = s.health || {};
    const rep = hl.replica || {};
    const failures = (rep.retried || 0) + (rep.dead || 0);
    return h('tr', { 'data-id': s.id },
      h('td', {}, h('strong', {}, s.id), h('div', { class: 'muted url' }, s.url),
        h('div', {}, s.events.map((e) => h('span', { class: 'tag' }, e)),
          (s.store_ids || []).map((x) => h('span', { class: 'tag' }, `store ${x}`)),
          (s.store_tags || []).map((x) => h('span', { class: 'tag' }, `#${x}`)),
          (s.rule_ids || []).map((x) => h('span', { class: 'tag' }, `rule ${x}`)))),
      h('td', {}, h('span', { class: `pill ${s.enabled ? 'live' : 'disabled'}` }, s.enabled ? 'enabled' : 'paused')),
      h('td', { class: 'num lag' }, `${hl.lag || 0}${hl.lag_at_least ? '+' : ''}`,
        hl.pending ? h('div', { class: 'muted' }, `${hl.pending} being sent`) : null),
      h('td', { class: 'num oldest' }, age(hl.oldest_age_s)),
      h('td', { class: 'failures' },
        h('span', { class: 'delivered' }, `${rep.delivered || 0} delivered`), ' · ',
        h('span', { class: failures ? 'error' : '' }, `${failures} failed`),
        rep.last_error ? h('div', { class: 'last-error error' }, rep.last_status ? `${rep.last_status}: ${rep.last_error}` : rep.last_error) : null),
      h('td', { class: 'num dead-count' }, hl.dead_letters || 0),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'small', 'data-action': 'test', 'data-id': s.id, disabled: !s.enabled,
          title: s.enabled ? 'queue a webhook.test event for this subscription alone' : 'a paused subscription receives nothing', onclick: (e) => sendTest(s.id, e.currentTarget) }, 'Send test event'),
        ' ',
        h('button', { type: 'button', class: 'small', 'data-action': 'dead', 'data-id': s.id, onclick: () => openDead(s.id) }, 'Dead letters')));
  }

  async function sendTest(id, btn) {
    btn.disabled = true;
    try {
      const r = await api('POST', `/v1/webhooks/${enc(id)}/test`);
      say(`Test event ${r.event_id} queued for ${id}: its receiver gets it signed in a moment.`);
      setTimeout(load, 1000);
    } catch (err) {
      say(err.message, true);
    } finally {
      btn.disabled = false;
    }
  }

  // openDead shows a subscription's dead letters, newest first.
  async function openDead(id, limit = 100) {
    if (location.hash !== `#/webhooks/${enc(id)}`) history.replaceState(null, '', `#/webhooks/${enc(id)}`);
    let page;
    try {
      page = await api('GET', `/v1/webhooks/${enc(id)}/dead?limit=${limit}`);
    } catch (err) {
      fill(dead, h('p', { class: 'error' }, err.message));
      return;
    }
    const letters = page.dead_letters;
    const act = async (what, ids) => {
      try {
        if (what === 'replay') {
          const r = await api('POST', `/v1/webhooks/${enc(id)}/dead/replay`, ids ? { event_ids: ids } : {});
          say(`Replayed ${r.replayed} to ${id}.`);
        } else {
          const q = (ids || []).map((x) => `event_id=${enc(x)}`).join('&');
          const r = await api('DELETE', `/v1/webhooks/${enc(id)}/dead${q ? `?${q}` : ''}`);
          say(`Dropped ${r.dropped} of ${id}'s dead letters.`);
        }
      } catch (err) {
        say(err.message, true);
      }
      openDead(id, limit);
      load();
    };
    // Dropping all takes a second click, within 4 s.
    const dropAll = h('button', { type: 'button', class: 'small danger', id: 'dead-drop-all', disabled: !letters.length });
    dropAll.textContent = 'Drop all';
    dropAll.addEventListener('click', () => {
      if (dropAll.dataset.armed) { act('drop'); return; }
      dropAll.dataset.armed = '1';
      dropAll.textContent = `Click again to drop all ${page.total}`;
      setTimeout(() => { delete dropAll.dataset.armed; dropAll.textContent = 'Drop all'; }, 4000);
    });
    fill(dead,
      h('div', { class: 'row between' },
        h('h3', {}, `Dead letters of ${id} `, h('span', { class: 'muted', id: 'dead-total' }, `(${page.total})`)),
        h('span', {},
          h('button', { type: 'button', class: 'small', id: 'dead-replay-all', disabled: !letters.length, onclick: () => act('replay') }, 'Replay all'), ' ', dropAll, ' ',
          h('button', { type: 'button', class: 'small', onclick: () => { fill(dead); history.replaceState(null, '', '#/webhooks'); } }, 'Close'))),
      letters.length
        ? h('table', { class: 'grid', id: 'dead-table' },
          h('thead', {}, h('tr', {}, ['Event', 'Customer', 'Store · rule', 'Given up', 'Tries', 'Last error', ''].map((x) => h('th', {}, x)))),
          h('tbody', {}, letters.map((d) => h('tr', { 'data-event': d.event.id },
            h('td', {}, h('strong', {}, d.event.type), h('div', { class: 'muted' }, d.event.id), h('div', { class: 'muted' }, fmtTime(d.event.at))),
            h('td', {}, d.event.customer_id || '—'),
            h('td', {}, [d.event.store_id, d.event.rule_id].filter(Boolean).join(' · ') || '—'),
            h('td', {}, fmtTime(d.dead_at)),
            h('td', { class: 'num' }, d.attempts),
            h('td', { class: 'error' }, d.last_status ? `${d.last_status}: ${d.last_error}` : d.last_error),
            h('td', { class: 'actions' },
              h('button', { type: 'button', class: 'small', 'data-action': 'replay', onclick: () => act('replay', [d.event.id]) }, 'Replay'), ' ',
              h('button', { type: 'button', class: 'small danger', 'data-action': 'drop', onclick: () => act('drop', [d.event.id]) }, 'Drop'))))))
        : h('p', { class: 'muted' }, 'No dead letters: every event was delivered, or is still being tried.'),
      page.total > letters.length
        ? h('button', { type: 'button', class: 'small', id: 'dead-more', onclick: () => openDead(id, Math.min(limit + 100, 1000)) }, `Show more (${letters.length} of ${page.total})`)
        : null);
  }

  load();
  if (openId) openDead(openId);
}

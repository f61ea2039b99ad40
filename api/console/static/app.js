// The console's shell: sign-in with an admin key (kept for this tab in
// sessionStorage), then the views by the hash in the address:
// #/stores, #/rules, #/rules/<id>, #/simulate, #/results/<id>,
// #/webhooks, #/webhooks/<id>.

import { api, session } from './api.js';
import { h, fill } from './dom.js';
import { mountStores } from './stores.js';
import { mountRuleList, mountRuleEditor } from './rules.js';
import { mountSimulate } from './sim.js';
import { mountResults } from './results.js';
import { mountWebhooks } from './webhooks.js';

const VIEWS = [['stores', 'Stores'], ['rules', 'Rules'], ['simulate', 'Simulate'], ['results', 'Results'], ['webhooks', 'Webhooks']];

const body = document.body;

function signInScreen(message = '') {
  const key = h('input', { id: 'signin-key', type: 'password', autocomplete: 'current-password', required: true, placeholder: 'admin key', 'aria-label': 'admin key' });
  const err = h('p', { id: 'signin-error', class: 'error', role: 'alert' }, message);
  const form = h('form', { id: 'signin', class: 'signin' },
    h('h1', {}, 'Nearcast'), h('p', { class: 'muted' }, 'Sign in with an admin key.'),
    key, h('button', { type: 'submit', id: 'signin-submit', class: 'primary' }, 'Sign in'), err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    const k = key.value.trim();
    try {
      await api('GET', '/v1/rules?limit=1', undefined, { key: k });
    } catch (x) {
      err.textContent = x.status === 403 ? `${x.message} (this is an app key)` : x.message;
      return;
    }
    session.signIn(k);
    shell();
  });
  fill(body, form);
  key.focus();
}

function shell() {
  const nav = h('nav', {}, VIEWS.map(([id, label]) => h('a', { href: `#/${id}`, 'data-view': id }, label)));
  const main = h('main', { id: 'view' });
  fill(body, h('header', { class: 'top' }, h('strong', { class: 'brand' }, 'Nearcast'), nav,
    h('button', { type: 'button', id: 'signout', onclick: () => { session.signOut(); signInScreen(); } }, 'Sign out')), main);
  route();
}

function route() {
  const main = document.getElementById('view');
  if (!main) return;
  const [view = 'stores', arg] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
  if (view === 'rules' && arg) mountRuleEditor(main, arg);
  else if (view === 'rules') mountRuleList(main);
  else if (view === 'simulate') mountSimulate(main);
  else if (view === 'results') mountResults(main, arg);
  else if (view === 'webhooks') mountWebhooks(main, arg);
  else mountStores(main);
}

window.addEventListener('hashchange', route);
window.addEventListener('nearcast:signed-out', (e) => { session.signOut(); signInScreen(e.detail); });

if (session.key()) shell(); else signInScreen();

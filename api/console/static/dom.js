// Small DOM helpers. Everything is built with createElement: the
// Content-Security-Policy allows no inline script or style.

// h makes an element: h('div', {class: 'x', onclick: f}, 'text', child...).
export function h(tag, attrs = {}, ...children) {
  const svg = ['svg', 'g', 'path', 'circle', 'line', 'polyline', 'polygon', 'rect', 'text', 'title'].includes(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && !svg) el.value = v;
    else if (k === 'checked' && !svg) el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// clear empties an element and fills it again.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

// field is a labelled input whose faults show right under it: its
// wrapper carries data-field, the JSON path the server names.
export function field(path, label, input, hint) {
  return h('label', { class: 'field', 'data-field': path },
    h('span', { class: 'label' }, label), input,
    hint ? h('span', { class: 'hint' }, hint) : null,
    h('span', { class: 'fault', role: 'alert' }));
}

// showFaults puts each fault next to the field its path names: the exact
// path, else its nearest parent on the form (trigger.stores.ids[2] goes to
// trigger.stores.ids), else into the form's general fault box.
export function showFaults(root, faults, aliases = {}) {
  for (const el of root.querySelectorAll('.fault')) el.textContent = '';
  for (const el of root.querySelectorAll('.field.bad')) el.classList.remove('bad');
  for (const f of faults) {
    let path = aliases[f.field] ?? f.field;
    let target = null;
    while (path && !(target = fieldEl(root, path))) path = parent(path);
    if (!target) target = root.querySelector('[data-field=""]');
    if (!target) continue;
    const box = target.querySelector(':scope > .fault') || target.querySelector('.fault');
    const where = path === f.field || !f.field ? '' : `${within(f.field.slice(path.length))}: `;
    box.textContent = (box.textContent ? `${box.textContent} · ` : '') + where + f.message;
    target.classList.add('bad');
  }
}

// within names the part of a path below a form field: [2] is item 3.
function within(rest) {
  return rest.replace(/^\./, '').replace(/^\[(\d+)\]/, (_, i) => `item ${Number(i) + 1}`);
}

function fieldEl(root, path) {
  for (const el of root.querySelectorAll('[data-field]')) if (el.dataset.field === path) return el;
  return null;
}

function parent(path) {
  const m = path.match(/^(.*)(\[\d+\]|\.[^.[\]]+)$/);
  return m ? m[1] : '';
}

export function fmtTime(s) {
  if (!s || s.startsWith('0001')) return '';
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString();
}

export function list(s) {
  return s.split(',').map((x) => x.trim()).filter(Boolean);
}

// The console's one way to the server: every data call carries the admin
// key the marketer signed in with, and every error arrives in the
// contract's shape, {"error": {code, message, field, details}}.

const KEY = 'nearcast.admin_key';

export const session = {
  key: () => sessionStorage.getItem(KEY) || '',
  signIn: (k) => sessionStorage.setItem(KEY, k),
  signOut: () => sessionStorage.removeItem(KEY),
};

// ApiError is an error answer of the API.
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `the server answered ${status}`);
    this.status = status;
    this.code = e.code || 'internal';
    this.field = e.field || '';
    this.details = e.details || [];
  }

  // faults lists every problem with its field path ('' for none).
  faults() {
    if (this.details.length) return this.details.map((d) => ({ field: d.field || '', message: d.message }));
    return [{ field: this.field, message: this.message }];
  }
}

// api calls the API and answers the decoded JSON (null for 204). A 401
// signs the console out: the key is gone or wrong.
// opts: key (another key than the session's), headers.
export async function api(method, path, body, opts = {}) {
  const key = opts.key ?? session.key();
  const headers = { Authorization: `Bearer ${key}`, ...opts.headers };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, { error: { code: 'unavailable', message: `the server cannot be reached (${err.message})` } });
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data);
    if (res.status === 401 && key === session.key()) window.dispatchEvent(new CustomEvent('nearcast:signed-out', { detail: err.message }));
    throw err;
  }
  return data;
}

// listAll follows next_cursor through a paged list.
export async function listAll(path, field, max = 5000) {
  const out = [];
  let cursor = '';
  do {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api('GET', `${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    out.push(...(page[field] || []));
    cursor = page.next_cursor || '';
  } while (cursor && out.length < max);
  return out;
}

// exists tells whether a document is there (404: no).
export async function exists(path) {
  try {
    await api('GET', path);
    return true;
  } catch (err) {
    if (err.status === 404) return false;
    throw err;
  }
}

export const enc = encodeURIComponent;

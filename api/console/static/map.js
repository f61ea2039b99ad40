// A map without tiles: SVG in Web Mercator, drawn from the shapes its
// owner hands it (stores' circles and polygons, H3 cells, paths), with a
// graticule and a scale bar for bearings. Circles are geodesic: their
// radius is metres on the ground, not pixels. Drag the background to pan,
// wheel to zoom; shapes that carry a drag key can be dragged.

import { h } from './dom.js';

const R = 6371007.18; // metres, as the server's geo package
const TILE = 256;
const rad = Math.PI / 180;

// destination is the point d metres from (lat, lng) on bearing brg (degrees).
export function destination(lat, lng, d, brg) {
  const δ = d / R, θ = brg * rad, φ1 = lat * rad, λ1 = lng * rad;
  const φ2 = Math.asin(Math.sin(φ1) * Math.cos(δ) + Math.cos(φ1) * Math.sin(δ) * Math.cos(θ));
  const λ2 = λ1 + Math.atan2(Math.sin(θ) * Math.sin(δ) * Math.cos(φ1), Math.cos(δ) - Math.sin(φ1) * Math.sin(φ2));
  return [φ2 / rad, ((λ2 / rad + 540) % 360) - 180];
}

// distance is the haversine distance in metres.
export function distance(lat1, lng1, lat2, lng2) {
  const s1 = Math.sin(((lat2 - lat1) * rad) / 2), s2 = Math.sin(((lng2 - lng1) * rad) / 2);
  const a = s1 * s1 + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * s2 * s2;
  return 2 * R * Math.asin(Math.sqrt(Math.min(1, a)));
}

function world(lat, lng, zoom) {
  const W = TILE * 2 ** zoom;
  const s = Math.sin(Math.max(-85.05, Math.min(85.05, lat)) * rad);
  return [((lng + 180) / 360) * W, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * W];
}

function unworld(x, y, zoom) {
  const W = TILE * 2 ** zoom;
  const lng = (x / W) * 360 - 180;
  const n = Math.PI - (2 * Math.PI * y) / W;
  return [Math.atan(Math.sinh(n)) / rad, lng];
}

export class MapView {
  // opts: onClick(lat, lng), onDrag(key, lat, lng, phase) with phase
  // 'start' | 'move' | 'end', shapes() → list of shapes.
  constructor(opts) {
    this.opts = opts;
    this.center = [52.52, 13.405];
    this.zoom = 13;
    this.svg = h('svg', { class: 'map', tabindex: '0', 'aria-label': 'map' });
    this.el = h('div', { class: 'map-wrap' }, this.svg,
      h('div', { class: 'map-zoom' },
        h('button', { type: 'button', title: 'zoom in', onclick: () => this.zoomBy(1) }, '+'),
        h('button', { type: 'button', title: 'zoom out', onclick: () => this.zoomBy(-1) }, '−')));
    this.svg.addEventListener('pointerdown', (e) => this.down(e));
    this.svg.addEventListener('pointermove', (e) => this.move(e));
    this.svg.addEventListener('pointerup', (e) => this.up(e));
    this.svg.addEventListener('wheel', (e) => this.wheel(e), { passive: false });
    this.svg.addEventListener('keydown', (e) => this.key(e));
    const seen = new ResizeObserver(() => {
      if (this.svg.isConnected) this.draw(); else seen.disconnect(); // the view was left
    });
    seen.observe(this.svg);
  }

  size() {
    const r = this.svg.getBoundingClientRect();
    return [r.width || 800, r.height || 500];
  }

  // screen maps a point to pixels in the SVG.
  screen(lat, lng) {
    const [w, hgt] = this.size();
    const [cx, cy] = world(this.center[0], this.center[1], this.zoom);
    const [x, y] = world(lat, lng, this.zoom);
    return [x - cx + w / 2, y - cy + hgt / 2];
  }

  latLng(sx, sy) {
    const [w, hgt] = this.size();
    const [cx, cy] = world(this.center[0], this.center[1], this.zoom);
    return unworld(sx + cx - w / 2, sy + cy - hgt / 2, this.zoom);
  }

  eventLatLng(e) {
    const r = this.svg.getBoundingClientRect();
    return this.latLng(e.clientX - r.left, e.clientY - r.top);
  }

  // fit shows every point, with a margin; one point is shown at street level.
  fit(points, minSpanM = 600) {
    if (!points.length) return this.draw();
    let [s, w, n, e] = [90, 180, -90, -180];
    for (const [lat, lng] of points) {
      s = Math.min(s, lat); n = Math.max(n, lat); w = Math.min(w, lng); e = Math.max(e, lng);
    }
    this.center = [(s + n) / 2, (w + e) / 2];
    const [pw, ph] = this.size();
    const span = Math.max(distance(s, w, n, e), minSpanM);
    const mPerPx = span / (0.8 * Math.min(pw, ph));
    const z = Math.log2((Math.cos(this.center[0] * rad) * 2 * Math.PI * R) / (mPerPx * TILE));
    this.zoom = Math.max(2, Math.min(20, z));
    this.draw();
    this.opts.onView?.();
  }

  // fitBusiest shows the busiest area: the points within radiusM of the
  // point with the most such neighbours (a chain's home city, not the
  // whole country).
  fitBusiest(points, radiusM = 15000) {
    let best = [];
    for (const p of points.slice(0, 2000)) {
      const near = points.filter((q) => Math.abs(q[0] - p[0]) < radiusM / 111000 && distance(p[0], p[1], q[0], q[1]) <= radiusM);
      if (near.length > best.length) best = near;
    }
    this.fit(best);
  }

  zoomBy(dz, sx, sy) {
    const [w, hgt] = this.size();
    sx ??= w / 2; sy ??= hgt / 2;
    const before = this.latLng(sx, sy);
    this.zoom = Math.max(2, Math.min(21, this.zoom + dz));
    const after = this.latLng(sx, sy);
    this.center = [this.center[0] + before[0] - after[0], this.center[1] + before[1] - after[1]];
    this.draw();
    this.opts.onView?.();
  }

  wheel(e) {
    e.preventDefault();
    const r = this.svg.getBoundingClientRect();
    this.zoomBy(-Math.sign(e.deltaY) * 0.5, e.clientX - r.left, e.clientY - r.top);
  }

  // key pans with the arrow keys and zooms with + and -.
  key(e) {
    const pan = { ArrowLeft: [-80, 0], ArrowRight: [80, 0], ArrowUp: [0, -80], ArrowDown: [0, 80] }[e.key];
    if (pan) {
      const [x, y] = world(...this.center, this.zoom);
      this.center = unworld(x + pan[0], y + pan[1], this.zoom);
      this.draw();
      this.opts.onView?.();
    } else if (e.key === '+' || e.key === '=') {
      this.zoomBy(1);
    } else if (e.key === '-') {
      this.zoomBy(-1);
    } else {
      return;
    }
    e.preventDefault();
  }

  down(e) {
    if (e.button !== 0) return;
    const key = this.opts.onDrag ? e.target.closest('[data-drag]')?.dataset.drag : undefined;
    this.gesture = { x: e.clientX, y: e.clientY, key, moved: false, center: [...this.center], start: world(...this.center, this.zoom) };
    this.svg.setPointerCapture(e.pointerId);
    if (key) this.opts.onDrag?.(key, ...this.eventLatLng(e), 'start');
  }

  move(e) {
    const g = this.gesture;
    if (!g) return;
    const dx = e.clientX - g.x, dy = e.clientY - g.y;
    if (!g.moved && Math.hypot(dx, dy) < 4) return;
    g.moved = true;
    if (g.key) {
      this.opts.onDrag?.(g.key, ...this.eventLatLng(e), 'move');
    } else {
      this.center = unworld(g.start[0] - dx, g.start[1] - dy, this.zoom);
      this.svg.classList.add('panning');
    }
    this.draw();
  }

  up(e) {
    const g = this.gesture;
    this.gesture = null;
    this.svg.classList.remove('panning');
    if (!g) return;
    if (g.key) {
      this.opts.onDrag?.(g.key, ...this.eventLatLng(e), g.moved ? 'end' : 'click');
    } else if (!g.moved) {
      this.opts.onClick?.(...this.eventLatLng(e));
    } else {
      this.opts.onView?.();
    }
    this.draw();
  }

  // drawSoon draws at most every 150 ms, for changes that come in a stream.
  drawSoon() {
    if (this.pending) return;
    this.pending = setTimeout(() => { this.pending = null; this.draw(); }, 150);
  }

  draw() {
    const [w, hgt] = this.size();
    this.svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
    const nodes = [this.graticule(w, hgt)];
    const shapes = this.opts.shapes();
    // Names only where they can be read: a crowd of stores gets none,
    // but the selected one.
    const crowded = shapes.filter((s) => s.circle && !s.overlay && this.near(s.circle, s.radius_m)).length > 80;
    for (const s of shapes) if (!(crowded && s.label && !s.keepLabel)) nodes.push(this.shape(s));
    nodes.push(this.scaleBar(hgt));
    this.svg.replaceChildren(...nodes.filter(Boolean));
  }

  path(points, close) {
    return points.map(([lat, lng], i) => {
      const [x, y] = this.screen(lat, lng);
      return `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
    }).join('') + (close ? 'Z' : '');
  }

  // shape draws one of: {circle: [lat, lng], radius_m}, {polygon: [[lat, lng]...]},
  // {line: [[lat, lng]...]}, {dot: [lat, lng], px}, {label: [lat, lng], text};
  // each may have cls, drag (a key) and title; overlay marks a circle
  // drawn over the stores (what a phone watches), which does not count
  // towards crowding their names out.
  shape(s) {
    const pts = s.polygon || s.line;
    const anchor = s.circle || s.dot || s.label || pts[0];
    const reach = s.radius_m || (pts ? Math.max(...pts.map((p) => distance(anchor[0], anchor[1], p[0], p[1]))) : 0);
    if (!this.near(anchor, reach)) return null; // off screen
    const attrs = { class: s.cls || '', 'data-drag': s.drag };
    let el;
    if (s.circle && this.pxPerM(s.circle[0]) * s.radius_m < 2) {
      const [x, y] = this.screen(...s.circle); // too small to be a ring
      el = h('circle', { ...attrs, cx: x.toFixed(1), cy: y.toFixed(1), r: 2 });
    } else if (s.circle) {
      const ring = [];
      for (let b = 0; b < 360; b += 5) ring.push(destination(s.circle[0], s.circle[1], s.radius_m, b));
      el = h('path', { ...attrs, d: this.path(ring, true) });
    } else if (s.polygon) {
      el = h('path', { ...attrs, d: this.path(s.polygon, true) });
    } else if (s.line) {
      el = h('path', { ...attrs, d: this.path(s.line, false), fill: 'none' });
    } else if (s.dot) {
      const [x, y] = this.screen(...s.dot);
      el = h('circle', { ...attrs, cx: x.toFixed(1), cy: y.toFixed(1), r: s.px || 5 });
    } else if (s.label) {
      const [x, y] = this.screen(...s.label);
      el = h('text', { ...attrs, x: x.toFixed(1), y: (y + (s.dy || 0)).toFixed(1), 'text-anchor': 'middle' }, s.text);
    }
    if (el && s.title) el.append(h('title', {}, s.title));
    return el;
  }

  pxPerM(lat) {
    return (TILE * 2 ** this.zoom) / (Math.cos(lat * rad) * 2 * Math.PI * R);
  }

  // near tells whether a point, or anything within reachM of it, may be on
  // screen: a catalog of thousands of stores draws only what is in view.
  near([lat, lng], reachM) {
    const [w, hgt] = this.size();
    const [x, y] = this.screen(lat, lng);
    const m = reachM * this.pxPerM(lat) + 100;
    return x > -m && y > -m && x < w + m && y < hgt + m;
  }

  // graticule draws lines of latitude and longitude at a round step.
  graticule(w, hgt) {
    const [n, west] = this.latLng(0, 0), [s, east] = this.latLng(w, hgt);
    const span = Math.max(east - west, 1e-6);
    const step = [10, 5, 1, 0.5, 0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001].find((x) => span / x >= 4) || 0.0001;
    const g = h('g', { class: 'graticule' });
    for (let lng = Math.ceil(west / step) * step; lng < east; lng += step) {
      const [x] = this.screen(n, lng);
      g.append(h('line', { x1: x, y1: 0, x2: x, y2: hgt }), h('text', { x: x + 3, y: hgt - 4 }, lng.toFixed(4)));
    }
    for (let lat = Math.ceil(s / step) * step; lat < n; lat += step) {
      const [, y] = this.screen(lat, west);
      g.append(h('line', { x1: 0, y1: y, x2: w, y2: y }), h('text', { x: 3, y: y - 3 }, lat.toFixed(4)));
    }
    return g;
  }

  scaleBar(hgt) {
    const [lat] = this.center;
    const mPerPx = (Math.cos(lat * rad) * 2 * Math.PI * R) / (TILE * 2 ** this.zoom);
    const target = mPerPx * 120;
    const nice = [1, 2, 5].flatMap((m) => [1, 10, 100, 1000, 10000, 100000].map((p) => m * p)).sort((a, b) => a - b)
      .filter((v) => v <= target).pop() || 1;
    const px = nice / mPerPx;
    const label = nice >= 1000 ? `${nice / 1000} km` : `${nice} m`;
    return h('g', { class: 'scale' },
      h('path', { d: `M16,${hgt - 28}v6h${px.toFixed(1)}v-6` }),
      h('text', { x: 16, y: hgt - 32 }, label));
  }
}

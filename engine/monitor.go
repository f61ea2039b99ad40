package engine

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// A phone cannot ping every few seconds: its operating system watches a
// few circles for the app (iOS at most 20, Android 100) and wakes it on a
// crossing. Every answer to a ping of a customer with location consent
// tells the device which circles to watch (Monitor) and when a ping is
// next worth sending (NextPing), from the in-memory index alone.

// Regions a device of each platform is given to watch at most, beside
// the wake region: iOS allows an app 20 regions, Android 100 geofences
// (given past 19 only where stores are few: monitorMoreM); a browser
// watches none. A device not registered (or a ping without a device id)
// is given iOS's number, which every platform can watch.
var monitorRegions = map[string]int{"ios": 19, "android": 99, "web": 0}

const (
	// MonitorMinRadiusM is the smallest region a phone's OS watches
	// reliably (about 100 m on iOS and Android): a smaller fence is
	// watched as a circle of this radius around its centre.
	MonitorMinRadiusM = 100
	// WakeRegionID and RegionIDPrefix name the regions of a monitor block,
	// so that an app can tell them from its own.
	WakeRegionID   = "nearcast:wake"
	RegionIDPrefix = "nearcast:"
	// minNextPingM is the least distance next_ping asks for: below it a
	// fix's own error decides.
	minNextPingM = 10
	// monitorMoreM: a platform that watches more than iOS's 19 regions
	// gets more where the wake circle of 19 reaches this far (fewer
	// stores around: more of them widen the circle, cheaply).
	monitorMoreM = 1000
)

// Monitor is what a device should have its OS watch.
type Monitor struct {
	// ID names the block (the catalog's version, the regions' number and
	// the wake circle), for the app to send back as the ping's monitor_id;
	// "" when there is no wake circle.
	ID string `json:"id,omitempty"`
	// Unchanged: the ping's monitor_id still holds (the fix lies inside
	// its wake circle, the catalog is the same): keep watching what it
	// says. Regions and Wake are then left out.
	Unchanged bool `json:"unchanged,omitempty"`
	// Regions are the stores nearest the device, each as a circle (a
	// polygon's enclosing circle), nearest first. The engine's blocks
	// leave them to fences and table (see RegionList).
	Regions []Region `json:"regions"`
	// Wake is a circle around the device that reaches no store left out
	// of Regions: on leaving it the app pings and gets a new block. Null
	// when it would be smaller than an OS watches reliably (among many
	// stores): then the app follows NextPing with its own location updates.
	Wake *Region `json:"wake"`
	// fences are the regions' places in table (shared with watchCache:
	// never changed), which holds each store as a region and encoded, once
	// per snapshot: the answer's largest part is copied, not built and
	// encoded per ping.
	fences []int32
	table  []fenceRegion
}

// RegionList is the block's regions: Regions, or those its fences name.
func (m *Monitor) RegionList() []Region {
	if m.Regions != nil || m.table == nil {
		return m.Regions
	}
	out := make([]Region, len(m.fences))
	for i, f := range m.fences {
		out[i] = m.table[f].region()
	}
	return out
}

// MarshalJSON writes the block as encoding/json would, with the regions
// encoded once (TestMonitorJSON compares the two).
func (m *Monitor) MarshalJSON() ([]byte, error) {
	return m.appendJSON(make([]byte, 0, 90*len(m.fences)+160)), nil
}

// appendJSON writes what MarshalJSON returns, so that a Result's encoder
// (encode.go) writes the block into its own buffer. An unchanged block is
// its id alone; regions not encoded beforehand are encoded here, as []
// even when nil, as they always were.
func (m *Monitor) appendJSON(b []byte) []byte {
	if m.Unchanged {
		b = append(b, `{"id":`...)
		b = appendJSONString(b, m.ID)
		return append(b, `,"unchanged":true}`...)
	}
	b = append(b, '{')
	if m.ID != "" {
		b = append(b, `"id":`...)
		b = appendJSONString(b, m.ID)
		b = append(b, ',')
	}
	b = append(b, `"regions":`...)
	if m.Regions == nil && m.table != nil {
		b = append(b, '[')
		for i, f := range m.fences {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, m.table[f].json...)
		}
		b = append(b, ']')
	} else {
		b = appendRegions(b, m.Regions)
	}
	b = append(b, `,"wake":`...)
	if m.Wake == nil {
		b = append(b, "null"...)
	} else {
		b = m.Wake.appendJSON(b)
	}
	return append(b, '}')
}

func appendRegions(b []byte, rs []Region) []byte {
	b = append(b, '[')
	for i := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = rs[i].appendJSON(b)
	}
	return append(b, ']')
}

func (r *Region) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, r.ID)
	if r.StoreID != "" {
		b = append(b, `,"store_id":`...)
		b = appendJSONString(b, r.StoreID)
	}
	b = append(b, `,"lat":`...)
	b = appendJSONFloat(b, r.Lat)
	b = append(b, `,"lng":`...)
	b = appendJSONFloat(b, r.Lng)
	b = append(b, `,"radius_m":`...)
	b = strconv.AppendInt(b, int64(r.RadiusM), 10)
	return append(b, '}')
}

// appendJSONFloat writes f as encoding/json does (shortest form, an
// exponent only for very small or large numbers).
func appendJSONFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		q, _ := json.Marshal(f)
		return append(b, q...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

// Region is a circle for the OS to watch.
type Region struct {
	// ID is "nearcast:" and the store's id, or "nearcast:wake".
	ID      string  `json:"id"`
	StoreID string  `json:"store_id,omitempty"`
	Lat     float64 `json:"lat"`
	Lng     float64 `json:"lng"`
	RadiusM int     `json:"radius_m"`
}

// NextPing says when the next ping is worth sending: once the device has
// moved DistanceM from this fix, or AfterS seconds from now when given
// (an open visit's next dwell threshold, or keeping it open), whichever
// comes first.
type NextPing struct {
	DistanceM int  `json:"distance_m"`
	AfterS    *int `json:"after_s"`
}

// pacing fills in the monitor block and the next ping for a ping that
// moved presence: platform as registered, the fences near the fix, and
// the observe step's open visits.
func (e *Engine) pacing(snap *rules.Snapshot, p Ping, hits []geo.Hit, obs observation, res *Result) {
	k, known := monitorRegions[obs.platform]
	if !known {
		k = monitorRegions["ios"]
	}
	var buf [100]geo.Region
	if k == 0 {
		// A browser watches nothing: its pacing needs the way to the
		// nearest fence beyond those near the fix (which nextPing reads
		// from the hits), true to size.
		_, wakeM := snap.Index.Watch(p.Lat, p.Lng, len(hits), 0, buf[:0])
		res.NextPing = e.nextPing(snap, hits, p.AccuracyM, wakeM, nil, obs)
		return
	}
	if left, ok := stillWatching(snap.Version, k, p); ok {
		// Most pings of a phone that watches its block: no search, no
		// block, only what is left of its wake circle.
		res.Monitor = &Monitor{ID: p.MonitorID, Unchanged: true}
		res.NextPing = e.nextPing(snap, hits, p.AccuracyM, left, nil, obs)
		return
	}
	w, table, at := e.watch(snap, p.Lat, p.Lng, k, buf[:0])
	wakeM := w.wakeAt(p.Lat, p.Lng)
	m := &Monitor{fences: at, table: table}
	if wakeM >= MonitorMinRadiusM {
		m.Wake = &Region{ID: WakeRegionID, Lat: p.Lat, Lng: p.Lng, RadiusM: int(wakeM)}
		m.ID = monitorID(snap.Version, k, p.Lat, p.Lng, int(wakeM))
	}
	res.Monitor = m
	res.NextPing = e.nextPing(snap, hits, p.AccuracyM, wakeM, w.fences, obs)
}

// monitorID names a block by what its validity rests on: the catalog's
// version, the number of regions asked, and the wake circle (centre to
// the metre, radius in metres, rounded down).
func monitorID(version int64, k int, lat, lng float64, wakeM int) string {
	b := strconv.AppendInt(nil, version, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(k), 10)
	b = append(b, ':')
	b = strconv.AppendFloat(b, lat, 'f', 5, 64)
	b = append(b, ':')
	b = strconv.AppendFloat(b, lng, 'f', 5, 64)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(wakeM), 10)
	return string(b)
}

// stillWatching tells whether the block a ping names still holds for its
// fix: the same catalog and number of regions, and the fix, with its
// accuracy, inside the wake circle, whose centre the id rounds to the
// metre (so a metre less of radius); it answers the radius left. An id
// the app made up misleads its own phone only.
func stillWatching(version int64, k int, p Ping) (float64, bool) {
	if p.MonitorID == "" {
		return 0, false
	}
	var f [5]string
	rest, ok := p.MonitorID, true
	for i := range f {
		if f[i], rest, ok = strings.Cut(rest, ":"); ok != (i < len(f)-1) {
			return 0, false
		}
	}
	v, err1 := strconv.ParseInt(f[0], 10, 64)
	n, err2 := strconv.Atoi(f[1])
	lat, err3 := strconv.ParseFloat(f[2], 64)
	lng, err4 := strconv.ParseFloat(f[3], 64)
	r, err5 := strconv.ParseFloat(f[4], 64)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil || v != version || n != k || geo.ValidPoint(lat, lng) != nil {
		return 0, false
	}
	left := r - 1 - geo.DistanceM(lat, lng, p.Lat, p.Lng) - p.AccuracyM
	return left, left > 0
}

// watching is what a point watches: the stores of the catalog snapshot
// it watches as regions, nearest first, and the wake circle measured at
// (lat, lng).
type watching struct {
	fences   []int32
	lat, lng float64
	wakeM    float64
}

// wakeAt is the wake circle's radius for a fix at (lat, lng): less by how
// far the fix is from the point it was measured at, so that it still
// reaches no circle left out.
func (w *watching) wakeAt(lat, lng float64) float64 {
	if w.lat == lat && w.lng == lng {
		return w.wakeM
	}
	return math.Max(0, w.wakeM-geo.DistanceM(w.lat, w.lng, lat, lng))
}

// watchCache keeps, per res-10 cell and number of regions, what was
// watched near the last fix there, for the catalog snapshot in force: a
// phone's next fix, or a neighbour's, mostly falls in the same cell, and
// a search of a dense city costs tens of microseconds. Bounded: it starts
// afresh past watchCacheMax cells or watchArenaMax stores watched, and
// with each new snapshot.
//
// Nothing in cells or arena points anywhere, so the garbage collector
// does not read them: with the regions, their strings and JSON in each
// cell, a cache of 100,000 cells held some 200 MB, and every collection
// of the server read it, a stall of tens of milliseconds.
type watchCache struct {
	mu    sync.Mutex
	snap  *rules.Snapshot // whose cells and table these are
	cells map[watchKey]watchEntry
	arena []int32 // the fences of every cell, one after the other
	// fences keeps each store of the snapshot as the region it is watched
	// as, encoded, made the first time a search finds it (under mu, before
	// any cell names the store): a search that misses the cells then copies
	// its regions rather than building and encoding them afresh. Values,
	// not pointers: one object for the collector, and each store's JSON.
	fences []fenceRegion
}

// fenceRegion is a store as the region it is watched as, encoded; json
// is nil until the store is first watched.
type fenceRegion struct {
	json     []byte
	storeID  string
	lat, lng float64
	radiusM  int
}

// region is the fenceRegion as a block's Region.
func (fr *fenceRegion) region() Region {
	return Region{ID: RegionIDPrefix + fr.storeID, StoreID: fr.storeID, Lat: fr.lat, Lng: fr.lng, RadiusM: fr.radiusM}
}

type watchKey struct {
	cell uint64
	k    int
}

// watchEntry is a cell's watching, its fences in the arena.
type watchEntry struct {
	at, n    uint32
	lat, lng float64
	wakeM    float64
}

const (
	watchCacheMax = 100_000
	watchArenaMax = 4 << 20 // 16 MB
)

// watch answers what a fix at (lat, lng) should watch, k regions at most
// (iOS's number first; more only where they widen the wake circle much:
// among many stores, the 20th nearest within monitorMoreM, more regions
// would only crowd the answer), with the table of regions its block reads
// and each region's place in it. The cache follows the engine's current
// snapshot: a ping still on another (while a new catalog takes over) is
// searched without it, with a table of its own, so that the cache never
// goes back and forth between snapshots and its cells never name regions
// of another's. (Snapshots are told apart by identity, not version: a
// catalog restored or failed over may count its versions again.)
func (e *Engine) watch(snap *rules.Snapshot, lat, lng float64, k int, buf []geo.Region) (watching, []fenceRegion, []int32) {
	key := watchKey{geo.WatchCell(lat, lng), k}
	c := &e.watched
	current := snap
	if e.snaps != nil {
		current = e.snaps.Current()
	}
	c.mu.Lock()
	switch {
	case snap != c.snap && snap != current:
		c.mu.Unlock()
		fences, wakeM := watchSearch(snap, lat, lng, k, buf)
		w := watching{fences: make([]int32, len(fences)), lat: lat, lng: lng, wakeM: wakeM}
		table, at := make([]fenceRegion, len(fences)), make([]int32, len(fences))
		for i, r := range fences {
			w.fences[i], at[i] = r.Fence, int32(i)
			table[i] = newFenceRegion(snap, r)
		}
		return w, table, at
	case snap != c.snap:
		c.snap, c.fences = snap, make([]fenceRegion, len(snap.Stores))
		c.cells, c.arena = map[watchKey]watchEntry{}, nil
	case len(c.cells) >= watchCacheMax || len(c.arena) >= watchArenaMax:
		c.cells, c.arena = map[watchKey]watchEntry{}, nil
	}
	hit, ok := c.cells[key]
	regions := c.fences
	var w watching
	if ok {
		w = watching{fences: c.arena[hit.at : hit.at+hit.n : hit.at+hit.n], lat: hit.lat, lng: hit.lng, wakeM: hit.wakeM}
	}
	c.mu.Unlock()
	if ok {
		return w, regions, w.fences
	}
	fences, wakeM := watchSearch(snap, lat, lng, k, buf)
	w = watching{fences: make([]int32, len(fences)), lat: lat, lng: lng, wakeM: wakeM}
	for i, r := range fences {
		w.fences[i] = r.Fence
	}
	// regions is snap's table, the cache's while it follows snap: each
	// store's entry is written once, under mu, before any answer names it,
	// and a newer snapshot's cache gets a table of its own.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap == snap {
		regions = c.fences // the cache may have left snap and come back, with a new table
	}
	for _, r := range fences {
		if fr := &regions[r.Fence]; fr.json == nil {
			*fr = newFenceRegion(snap, r)
		}
	}
	if c.snap == snap {
		c.cells[key] = watchEntry{at: uint32(len(c.arena)), n: uint32(len(w.fences)), lat: lat, lng: lng, wakeM: wakeM}
		c.arena = append(c.arena, w.fences...)
	}
	return w, regions, w.fences
}

// watchSearch is the search watch keeps the answers of.
func watchSearch(snap *rules.Snapshot, lat, lng float64, k int, buf []geo.Region) ([]geo.Region, float64) {
	fences, wakeM := snap.Index.Watch(lat, lng, min(k, monitorRegions["ios"]), MonitorMinRadiusM, buf)
	if k > monitorRegions["ios"] && len(fences) == monitorRegions["ios"] && wakeM >= monitorMoreM {
		fences, wakeM = snap.Index.Watch(lat, lng, k, MonitorMinRadiusM, buf[:0])
	}
	return fences, wakeM
}

// newFenceRegion is a store as the region a search found it as, encoded.
func newFenceRegion(snap *rules.Snapshot, r geo.Region) fenceRegion {
	fr := fenceRegion{storeID: snap.Stores[r.Fence].ID, lat: r.Lat, lng: r.Lng, radiusM: int(math.Ceil(r.RadiusM))}
	reg := fr.region()
	fr.json = reg.appendJSON(nil)
	return fr
}

// nextPing: the distance the device may move before a fence near it
// could be entered or left (or, far from them, the wake circle left);
// with a visit open, the time to its next dwell threshold, or to half the
// visit timeout, so that a customer who stays is not taken to have left;
// and, while a fix leaves a store undecided (inside but too unsure to
// enter, or outside by less than twice its accuracy: its 95% circle), a
// fresh fix soon. A
// circle the OS watches as it is (a circle fence of 100 m or more among
// the regions) wakes the phone on entering by itself, once the phone is
// clearly outside it.
func (e *Engine) nextPing(snap *rules.Snapshot, hits []geo.Hit, accuracyM, wakeM float64, watched []int32, obs observation) *NextPing {
	d, undecided := wakeM, false
	for _, h := range hits {
		st := snap.Stores[h.Fence]
		circle := st.Polygon == nil
		margin := geo.ExitMarginM(h.SizeM)
		switch {
		case slices.Contains(obs.open, st.ID):
			// A visit open here: what matters is leaving, beyond the edge by
			// the exit margin. A circle's edge is DistanceM from its centre;
			// a polygon's is at least its margin away.
			left := margin - h.OutsideM
			if h.Inside && circle {
				left += h.SizeM - h.DistanceM
			}
			d = math.Min(d, left)
		case h.Inside || h.OutsideM <= 2*accuracyM: // within the fix's 95% circle
			undecided = true
			d = math.Min(d, h.OutsideM)
		case !(circle && h.SizeM >= MonitorMinRadiusM && slices.Contains(watched, h.Fence)):
			d = math.Min(d, h.OutsideM)
		}
	}
	np := &NextPing{DistanceM: max(minNextPingM, int(d))}
	var wait time.Duration
	if len(obs.open) > 0 {
		wait = e.cfg.VisitTimeout / 2
		if obs.nextDwell >= 0 && obs.nextDwell < wait {
			wait = obs.nextDwell
		}
	}
	if undecided && (wait == 0 || wait > undecidedRefix) {
		wait = undecidedRefix
	}
	if wait > 0 {
		s := max(1, int(math.Ceil(wait.Seconds())))
		np.AfterS = &s
	}
	return np
}

// undecidedRefix is how soon a phone whose fix leaves a store undecided
// should take a fresh one.
const undecidedRefix = 30 * time.Second

package engine

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// observeScript moves the customer's presence to the fix atomically and
// says which stores were entered, left and dwelt in. Only one of two
// concurrent pings can see a store as entered. A revoked token is refused
// first; then the call is counted against the customer's and the device's
// limits (every call counts, whoever it names); beyond that, nothing is
// read or kept for a customer without location consent (or without a
// profile).
//
// Presence per store is "entered_ms:last_seen_ms:dwell_done_s"; "#fix"
// is the last call (lua/lib/presence.lua): the newest fix (kept only to
// judge the next: its time, speed and trust), the minute its call was
// counted in and the customer's calls in that minute, when the key's TTL
// was set, and the device it came from with its platform as registered,
// so that a run of pings from one device writes its "#seen:<device>" in
// the devices hash and reads the device once, not every time;
// "#d:<device>" is each device's calls in that minute ('#' is in no id,
// so no store's field can be taken for them). Most pings read and write
// two fields. The key lives the visit timeout and up to a minute more
// past the newest fix: its TTL is set at most once a minute of the
// server's clock, not at every fix. ("#ts", "#dev" and "#os", which older
// versions kept beside "#fix", go at the next write.)
//
// KEYS: presence, profile, visits, caps, rate, tokens, devices,
// the journal of events out (events.go)
// ARGV: ts_ms, visit_timeout_ms, dry ("1"), device_id, speed_mps (-1: unknown),
// max_enter_speed_mps, lat, lng, n, now_ms (the server's clock), calls a
// minute per customer and per device (0: no limit), the generation of the
// customer token the ping came with (0: none), the signals the server
// found in the request (comma-separated: lua/lib/trust.lua), the fix's
// accuracy (0: not given), the event types journaled (Events.Wanted: ""
// none), then per store: id, kind ("s": surely
// inside, may enter; "h": may still be inside, keeps a visit), n_thresholds,
// dwell thresholds in seconds (ascending)…
// A step with no event (no store entered, left or dwelt in, none too
// fast to enter: most pings) answers one line,
// "platform trust signals next_dwell_ms open" (signals and open comma-
// separated; a reply of one string costs Redis less than a list).
// Otherwise it returns {"ok", the device's platform ("" unknown), the fix's trust,
// its signals (comma-separated), ms to the nearest
// dwell threshold of an open visit not passed yet (-1: none), n_open,
// the stores with a visit open after the fix…, n_entered, ids…, n_exited, (id, visit_ms)…, n_dwell,
// (id, dwell_s)…, n_too_fast, ids not entered for speed…}, followed,
// when a store was entered, left or dwelt in, by {profile doc,
// visits in all, previous visit's start (ms), n_stores, (id, visits,
// previous visit's start)…, offers received, redemptions, the last one's
// time, n_tags, (tag, redemptions)…, n_returns, (rule, funnel field,
// day)…: visits that are returns after an offer, which the engine counts
// in the rule's funnel (a key of the rule's, which in Redis Cluster lives
// elsewhere), and for a customer who ever answered a question: their last
// NPS score (-1: none), when they last answered (ms), n, (store, their
// last score there)… for the stores of the fix}, or {"no_consent"}, or
// {"stale"} (a fix older than the last one seen), {"rate_limited",
// ms until the next minute}, or {"revoked"} (the customer token was).
var observeScript = script("observe", "rate", "trust", "journal", "presence")

// visitEnv is the customer's visit history as audiences and templates see
// it, for one store.
func visitEnv(o observation, storeID string, ts time.Time) *rules.VisitEnv {
	days := func(ms int64) int {
		if ms == 0 {
			return -1
		}
		return int(ts.Sub(time.UnixMilli(ms)) / (24 * time.Hour))
	}
	sv := o.stores[storeID]
	v := &rules.VisitEnv{
		StoreVisits: sv.count, Visits: o.visits, FirstAtStore: sv.count == 1,
		DaysSinceStore: days(sv.previousMs), DaysSinceAny: days(o.previousMs), OffersReceived: o.offers,
		Redeemed: o.redeemed, DaysSinceRedeemed: days(o.redeemedLastMs),
		LastFeedback: -1, DaysSinceFeedback: days(o.feedbackMs),
	}
	if s, ok := o.feedback[storeID]; ok {
		v.LastFeedback = s
	}
	return v
}

type exit struct {
	id    string
	visit time.Duration
}

type dwell struct {
	id     string
	dwellS int
}

type observation struct {
	entered []string
	exited  []exit
	dwelt   []dwell
	tooFast []string // stores the customer would have entered but for speed
	doc     string
	// The customer's visit history: in all, and at each store with an event.
	visits     int
	previousMs int64
	stores     map[string]storeVisits
	offers     int
	// Redemptions: how many, the last one's time, and per rule tag.
	redeemed       int
	redeemedLastMs int64
	affinity       map[string]int
	// returns are funnel counts the visit causes: returns after an offer.
	returns []funnelCount
	// What the customer answered when asked (feedback.go): their last NPS
	// score (-1: none), when they last answered (0: never), and their last
	// score at each store of the fix that has one.
	lastNPS    int
	feedbackMs int64
	feedback   map[string]int
	// For the app's pacing: the device's platform as registered ("":
	// unknown), the stores with a visit open after the fix, and the time
	// to the next dwell threshold of one of them (-1: none).
	platform  string
	open      []string
	nextDwell time.Duration
	// How far the fix is trusted (TrustSuspicious, TrustUnverified,
	// TrustTrusted) and the signals behind it (lua/lib/trust.lua).
	trust   string
	signals []string
}

type storeVisits struct {
	count      int
	previousMs int64
}

// parseQuiet reads the answer of a step that changed nothing but the
// last fix: one line, "platform trust signals next_dwell_ms open", the
// signals and the stores with a visit open separated by commas.
func parseQuiet(line string) observation {
	var f [5]string
	for i := range 4 {
		f[i], line, _ = strings.Cut(line, " ")
	}
	f[4] = line
	var o observation
	o.readPacing(f[0], f[1], f[2], f[3])
	if f[4] != "" {
		o.open = strings.Split(f[4], ",")
	}
	return o
}

// readPacing reads what every answer of the step begins with.
func (o *observation) readPacing(platform, trust, signals, nextDwellMs string) {
	o.platform, o.trust = platform, trust
	if signals != "" {
		o.signals = strings.Split(signals, ",")
	}
	ms, _ := strconv.ParseInt(nextDwellMs, 10, 64)
	o.nextDwell = time.Duration(ms) * time.Millisecond
	if ms < 0 {
		o.nextDwell = -1
	}
}

func parseObserve(raw []string) observation {
	var o observation
	o.readPacing(raw[1], raw[2], raw[3], raw[4])
	n, _ := strconv.Atoi(raw[5])
	o.open = raw[6 : 6+n]
	i := 6 + n
	n, _ = strconv.Atoi(raw[i])
	i++
	o.entered = append(o.entered, raw[i:i+n]...)
	slices.Sort(o.entered)
	i += n
	n, _ = strconv.Atoi(raw[i])
	i++
	for j := 0; j < n; j++ {
		ms, _ := strconv.ParseInt(raw[i+1], 10, 64)
		o.exited = append(o.exited, exit{id: raw[i], visit: time.Duration(ms) * time.Millisecond})
		i += 2
	}
	slices.SortFunc(o.exited, func(a, b exit) int { return cmp.Compare(a.id, b.id) })
	n, _ = strconv.Atoi(raw[i])
	i++
	for j := 0; j < n; j++ {
		t, _ := strconv.Atoi(raw[i+1])
		o.dwelt = append(o.dwelt, dwell{id: raw[i], dwellS: t})
		i += 2
	}
	n, _ = strconv.Atoi(raw[i])
	i++
	o.tooFast = append(o.tooFast, raw[i:i+n]...)
	i += n
	if i >= len(raw) {
		return o // nothing happened: no profile, no history
	}
	o.doc = raw[i]
	i++
	o.visits, _ = strconv.Atoi(raw[i])
	o.previousMs, _ = strconv.ParseInt(raw[i+1], 10, 64)
	n, _ = strconv.Atoi(raw[i+2])
	i += 3
	o.stores = make(map[string]storeVisits, n)
	for j := 0; j < n; j++ {
		c, _ := strconv.Atoi(raw[i+1])
		prev, _ := strconv.ParseInt(raw[i+2], 10, 64)
		o.stores[raw[i]] = storeVisits{count: c, previousMs: prev}
		i += 3
	}
	o.offers, _ = strconv.Atoi(raw[i])
	o.redeemed, _ = strconv.Atoi(raw[i+1])
	o.redeemedLastMs, _ = strconv.ParseInt(raw[i+2], 10, 64)
	o.affinity, i = counts(raw, i+3)
	n, _ = strconv.Atoi(raw[i])
	i++
	for j := 0; j < n; j++ {
		o.returns = append(o.returns, funnelCount{rule: raw[i], field: raw[i+1], day: raw[i+2]})
		i += 3
	}
	o.lastNPS = -1
	if i+2 < len(raw) { // a customer who answered a question once
		o.lastNPS, _ = strconv.Atoi(raw[i])
		o.feedbackMs, _ = strconv.ParseInt(raw[i+1], 10, 64)
		o.feedback, _ = counts(raw, i+2)
	}
	return o
}

// counts reads n, then n (name, number) pairs, from raw[i]: the map and
// where what follows begins.
func counts(raw []string, i int) (map[string]int, int) {
	n, _ := strconv.Atoi(raw[i])
	i++
	m := make(map[string]int, n)
	for j := 0; j < n; j++ {
		m[raw[i]], _ = strconv.Atoi(raw[i+1])
		i += 2
	}
	return m, i
}

// observe runs the observe step for a ping: presence at the stores near
// it, the customer's visits and call limits, all in the customer's slot.
// skipped says why the step changed nothing ("": it ran): ReasonConsent
// (no consent, or no profile) or ReasonStale (a fix older than the last);
// a revoked token or a call over its limit is an error.
func (e *Engine) observe(ctx context.Context, snap *rules.Snapshot, p Ping, ts, now time.Time, hits []geo.Hit, opt Options) (obs observation, skipped string, err error) {
	oc := observeCalls.Get().(*observeCall)
	defer oc.release()
	keys := oc.customerKeys(p.CustomerID)
	a := e.observeArgs(oc, snap, p, ts, now, hits, opt, evalHead(keys))
	args := a[evalHead(keys):]
	cmd := evalCmdIn(ctx, observeScript, keys, a)
	if s := opt.spec; s != nil {
		e.batch.do(ctx, cmd, s.zadd) // the speculative intent, to its own slot at once
	} else {
		e.batch.do(ctx, cmd)
	}
	cmd = orEval(ctx, e.rdb, cmd, observeScript, keys, args...)
	if line, ok := cmd.Val().(string); ok && cmd.Err() == nil {
		return parseQuiet(line), "", nil
	}
	raw, err := cmd.StringSlice()
	if err != nil {
		return obs, "", rules.RedisErr("presence", err)
	}
	switch raw[0] {
	case "ok":
		obs = parseObserve(raw)
		if !opt.DryRun && len(obs.entered)+len(obs.dwelt)+len(obs.exited) > 0 && e.cfg.Events.Wanted() != "" {
			e.cfg.Events.Kick(p.CustomerID)
		}
		return obs, "", nil
	case "revoked", "rate_limited":
		return obs, raw[0], admitted(raw)
	case "stale":
		return obs, ReasonStale, nil
	default:
		return obs, ReasonConsent, nil
	}
}

// observeArgs are the observe step's arguments for a ping: the fix, the
// settings, and each fence near it that the fix holds, with its kind
// ("s": surely inside, "h": near enough to hold a visit) and its dwell
// thresholds.
//
// A number or a string put in an interface is copied to the heap; the
// step's values go instead as pointers, which go-redis writes as what
// they point to (a float as strconv's shortest 'f' form, as the step
// reads it): into one observeVals, into the snapshot (store ids, dwell
// thresholds: never changed). A ping's arguments cost a few allocations,
// not one each.
//
// The arguments come after head empty words (evalCmdIn's), in the
// pooled call's words, grown to the size the command needs.
func (e *Engine) observeArgs(oc *observeCall, snap *rules.Snapshot, p Ping, ts, now time.Time, hits []geo.Hit, opt Options, head int) []any {
	v := &oc.vals
	*v = observeVals{ts: ts.UnixMilli(), timeout: e.cfg.VisitTimeout.Milliseconds(), device: p.DeviceID, speed: -1,
		maxSpeed: e.cfg.MaxEnterSpeedMps, lat: p.Lat, lng: p.Lng, now: now.UnixMilli(), tokenGen: p.TokenGen,
		signals: strings.Join(p.Signals, ","), acc: p.AccuracyM, wanted: e.cfg.Events.Wanted()}
	if p.SpeedMps != nil {
		v.speed = *p.SpeedMps
	}
	words := head + 16
	for _, h := range hits {
		if h.Held(p.AccuracyM) {
			v.held++
			words += 3 + len(snap.DwellThresholds(h.Fence))
		}
	}
	v.limC, v.limD = e.limits(opt.limitScale)
	if cap(oc.words) < words {
		oc.words = make([]any, 0, words)
	}
	args := oc.words[:head]
	args = append(args, &v.ts, &v.timeout, luaBool(opt.DryRun), &v.device, &v.speed, &v.maxSpeed, &v.lat, &v.lng,
		&v.held, &v.now, &v.limC, &v.limD, &v.tokenGen, &v.signals, &v.acc, &v.wanted)
	for _, h := range hits {
		if !h.Held(p.AccuracyM) {
			continue
		}
		kind := &fenceHeld
		if e.surelyInside(h, p) {
			kind = &fenceSure
		}
		th := snap.DwellThresholds(h.Fence)
		args = append(args, &snap.Stores[h.Fence].ID, kind, len(th))
		for i := range th {
			args = append(args, &th[i])
		}
	}
	return args
}

// surelyInside tells a fence the fix is surely inside, and may enter:
// inside it, with an accuracy no worse than the fence's size (or the
// configured least).
func (e *Engine) surelyInside(h geo.Hit, p Ping) bool {
	return h.Inside && p.AccuracyM <= math.Max(e.cfg.EnterAccuracyM, h.SizeM)
}

// The kinds of a fence held, as the values observeArgs points to: a
// string put in an interface is copied to the heap (an int under 256, as
// a count of dwell thresholds, is not).
var fenceHeld, fenceSure = "h", "s"

// observeCall is one ping's observe command, pooled: the values its
// arguments point to, its keys and its words. It is given back once the
// ping's step has its answer (observe), when nothing holds the command
// any more: the batcher answers a caller only once its pipeline is done
// with it, and orEval runs the script whole in the caller's goroutine.
type observeCall struct {
	vals  observeVals
	kbuf  []byte
	keys  [len(observeParts)]string
	words []any
}

// observeParts are the observe step's keys, in the script's order.
var observeParts = [...]string{partPresence, partProfile, partVisits, partCaps, partRate, partTokens, partDevices, partEvents}

var observeCalls = sync.Pool{New: func() any { return new(observeCall) }}

// customerKeys are the step's keys for a customer, strings into the
// call's own buffer: valid until release.
func (oc *observeCall) customerKeys(id string) []string {
	n := 0
	for _, part := range observeParts {
		n += len(custKeyOpen) + len(id) + len(custKeyClose) + len(part)
	}
	if cap(oc.kbuf) < n {
		oc.kbuf = make([]byte, 0, n+n/2)
	}
	b := oc.kbuf[:0]
	for i, part := range observeParts {
		at := len(b)
		b = append(append(append(append(b, custKeyOpen...), id...), custKeyClose...), part...)
		oc.keys[i] = unsafe.String(&b[at], len(b)-at)
	}
	oc.kbuf = b
	return oc.keys[:]
}

// release gives the call back to the pool, forgetting what it pointed to
// (one near very many stores is let go: it would keep its words).
func (oc *observeCall) release() {
	clear(oc.words[:cap(oc.words)])
	oc.words = oc.words[:0]
	oc.vals = observeVals{}
	clear(oc.keys[:])
	if cap(oc.words) <= 256 && cap(oc.kbuf) <= 2048 { // 2048: room for ids of 128
		observeCalls.Put(oc)
	}
}

// observeVals are the values observeArgs points to.
type observeVals struct {
	ts, timeout, now, tokenGen int64
	held, limC, limD           int
	speed, maxSpeed, lat, lng  float64
	acc                        float64
	device, signals, wanted    string
}

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/nearcast/nearcast/api"
)

// geoKey is the bench's own copy of the store points, for the GEOSEARCH
// baseline; it is removed when the bench ends.
const geoKey = "bench:geosearch:stores"

// baselineRadiusM is the radius of the baseline's GEOSEARCH: the
// contract's default geofence.
const baselineRadiusM = 100

// target sends one ping and says what it caused.
type target interface {
	send(w *worker, p ping) (outcome, error)
}

// outcome is what one ping caused.
type outcome struct {
	status int
	near   bool // geosearch: a store within the radius
	events []event
	offers []offer
}

type event struct {
	Type    string `json:"type"`
	StoreID string `json:"store_id"`
}

type offer struct {
	CouponCode string `json:"coupon_code"`
	RuleID     string `json:"rule_id"`
	StoreID    string `json:"store_id"`
}

// worker is one connection's loop: its own customers, its own tallies.
type worker struct {
	shards  []*movers // the customers this worker pings, one shard after another
	next    int
	buf     []byte
	lat     []time.Duration
	errors  map[string]int64
	events  map[string]int64
	near    int64
	offers  []issued
	resp    *fasthttp.Response
	req     *fasthttp.Request
	answer  answer
	lastOff map[int]time.Time // per customer, the bench's time of their last offer
	dups    int64
	lag     []time.Duration // at a fixed rate: how late each ping went out, from its time
	late    []time.Duration // of it, how late the pacer handed it out
}

type answer struct {
	Events []event `json:"events"`
	Offers []offer `json:"offers"`
}

// issued is an offer the bench saw in a ping's answer.
type issued struct {
	customer int
	offer
}

// phaseSpec says how to drive one phase.
type phaseSpec struct {
	name     string
	target   target
	workers  int
	duration time.Duration
	rate     float64 // pings per second; 0: as fast as answers come
	seed     uint64  // of the arrivals at a fixed rate
	gap      time.Duration
}

// drive runs one phase and tallies it.
// drive runs one phase on the city's customers, split into shards: a
// shard is one worker's at a time, so that one customer's pings never
// overlap, and the customers walk on from one phase to the next.
func drive(ctx context.Context, shards []*movers, spec phaseSpec) *Phase {
	ws := make([]*worker, min(spec.workers, len(shards)))
	for i := range ws {
		ws[i] = &worker{errors: map[string]int64{}, events: map[string]int64{}, lastOff: map[int]time.Time{}}
	}
	for i, sh := range shards {
		ws[i%len(ws)].shards = append(ws[i%len(ws)].shards, sh)
	}
	secs := int(spec.duration/time.Second) + 2
	perSec := make([]atomic.Int64, secs)
	start := time.Now()
	end := start.Add(spec.duration)
	// Open loop, at a fixed rate: the pings come as from many phones
	// that know nothing of each other (arrivals), a pacer hands out each
	// one at its time, and a ping's latency counts from that time, so that
	// neither a slow answer nor a late pacer can hide the pings that
	// should have gone out meanwhile.
	var slots chan slot
	if spec.rate > 0 {
		slots = make(chan slot, 1<<16)
		go pace(ctx, newArrivals(start, end, spec.rate, spec.seed), slots)
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				at := time.Now()
				if slots != nil {
					s, ok := <-slots
					if !ok {
						return
					}
					at = s.at
					w.lag = append(w.lag, time.Since(at))
					w.late = append(w.late, s.out.Sub(at))
				} else if !at.Before(end) {
					return
				}
				p := w.shards[w.next%len(w.shards)].nextPing()
				w.next++
				out, err := spec.target.send(w, p)
				done := time.Now()
				w.lat = append(w.lat, done.Sub(at))
				if s := int(done.Sub(start) / time.Second); s < secs {
					perSec[s].Add(1)
				}
				w.tally(p, out, err, spec.gap, done)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if elapsed > spec.duration {
		elapsed = spec.duration // the last answers came in after the end; count the phase's length
	}

	ph := &Phase{Name: spec.name, RateTarget: spec.rate, DurationS: elapsed.Seconds(), Errors: map[string]int64{}, Events: map[string]int64{}}
	var lat, lag, late []time.Duration
	codes := map[string]struct{}{}
	for _, w := range ws {
		lat = append(lat, w.lat...)
		lag = append(lag, w.lag...)
		late = append(late, w.late...)
		for k, v := range w.errors {
			ph.Errors[k] += v
			ph.ErrorCount += v
		}
		for k, v := range w.events {
			ph.Events[k] += v
		}
		ph.near += w.near
		ph.DuplicateOffers += w.dups
		for _, o := range w.offers {
			if _, seen := codes[o.CouponCode]; seen {
				ph.DuplicateOffers++
			}
			codes[o.CouponCode] = struct{}{}
			ph.issued = append(ph.issued, o)
		}
	}
	ph.Offers = int64(len(ph.issued))
	ph.Requests = int64(len(lat))
	ph.Throughput = float64(ph.Requests) / ph.DurationS
	if ph.Requests > 0 {
		ph.NearStorePct = 100 * float64(ph.near) / float64(ph.Requests)
	}
	ph.Latency, ph.Histogram = summarize(lat)
	if len(lag) > 0 {
		l, _ := summarize(lag)
		p, _ := summarize(late)
		ph.Lag, ph.PacerLate = &l, &p
	}
	full := int(spec.duration / time.Second)
	for i := 0; i < full && i < secs; i++ {
		ph.PerSecond = append(ph.PerSecond, perSec[i].Load())
	}
	return ph
}

func (w *worker) tally(p ping, out outcome, err error, gap time.Duration, now time.Time) {
	switch {
	case err != nil:
		w.errors["transport"]++
		return
	case out.status != 200:
		w.errors[strconv.Itoa(out.status)]++
		return
	}
	if out.near {
		w.near++
	}
	for _, e := range out.events {
		w.events[e.Type]++
	}
	// One offer at a time: a customer offered twice within the server's
	// least gap between offers (or twice in one ping) got a duplicate.
	for _, o := range out.offers {
		if last, ok := w.lastOff[p.customer]; ok && now.Sub(last) < gap {
			w.dups++
		}
		w.lastOff[p.customer] = now
		w.offers = append(w.offers, issued{customer: p.customer, offer: o})
	}
}

// arrivals is the times of a fixed rate's pings: a Poisson process, the
// gaps between pings drawn from an exponential distribution of mean
// 1/rate, as when many phones, each on its own, make up the rate. (Evenly
// spaced pings would be kinder than any crowd; released in bursts, as a
// coarse ticker does, harsher.) The same seed gives the same times.
type arrivals struct {
	next, end time.Time
	mean      float64 // ns
	rng       *rand.Rand
}

func newArrivals(start, end time.Time, rate float64, seed uint64) *arrivals {
	a := &arrivals{next: start, end: end, mean: float64(time.Second) / rate, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
	a.step()
	return a
}

func (a *arrivals) step() { a.next = a.next.Add(time.Duration(a.rng.ExpFloat64() * a.mean)) }

// at is the next ping's time; false once the phase is over.
func (a *arrivals) at() (time.Time, bool) {
	t := a.next
	if !t.Before(a.end) {
		return time.Time{}, false
	}
	a.step()
	return t, true
}

// slot is one ping of a fixed rate: its time, and when the pacer handed
// it out.
type slot struct{ at, out time.Time }

// pace hands out each arrival on slots at its time, never before, and
// closes slots after the last. It sleeps till each time that has not
// come, on a timer; one whose time has passed goes at once. Go's timers
// are late: p50 some 0.1 ms under the bench's load, p99 1-2 ms, and a
// millisecond whenever the bench is idle (the runtime then waits in
// epoll_wait, whose timeout is whole milliseconds). Each slot says when
// it went, so the report gives the pacer's own lateness, which the
// latency includes.
func pace(ctx context.Context, arr *arrivals, slots chan<- slot) {
	defer close(slots)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		at, ok := arr.at()
		if !ok {
			return
		}
		if d := time.Until(at); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		select {
		case slots <- slot{at, time.Now()}:
		case <-ctx.Done():
			return
		}
	}
}

// summarize gives a phase's latency percentiles and histogram.
func summarize(lat []time.Duration) (Latency, []Bucket) {
	if len(lat) == 0 {
		return Latency{}, nil
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	q := func(f float64) float64 { return ms(lat[min(len(lat)-1, int(f*float64(len(lat))))]) }
	l := Latency{P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: ms(lat[len(lat)-1])}
	// Buckets in steps of a quarter decade, from 10 µs.
	var hist []Bucket
	edge := 0.01
	i := 0
	for i < len(lat) {
		n := int64(0)
		for i < len(lat) && ms(lat[i]) <= edge {
			n++
			i++
		}
		hist = append(hist, Bucket{UpToMs: edge, Count: n})
		edge *= 1.7782794100389228 // 10^(1/4)
	}
	return l, hist
}

// nearcast sends pings over HTTP, as apps do: the app key and the
// customer's token, which an app gets once at login and keeps.
type nearcast struct {
	client *fasthttp.HostClient
	url    string
	auth   string
	// minter signs the customers' tokens (nil: pings go without); each
	// customer's is signed at its first ping and kept.
	minter *api.CustomerTokens
	tokens []atomic.Pointer[string]
	// monitors is each customer's monitor block id, sent back with their
	// next ping as an app does (docs/app-integration.md).
	monitors []atomic.Pointer[string]
}

func newNearcast(base, key, tokenSecret string, customers, conns int) (*nearcast, error) {
	var u fasthttp.URI
	if err := u.Parse(nil, []byte(base)); err != nil {
		return nil, fmt.Errorf("server url %q: %w", base, err)
	}
	n := &nearcast{
		client: &fasthttp.HostClient{Addr: string(u.Host()), MaxConns: conns, MaxConnWaitTimeout: 10 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second},
		url: base + "/v1/pings", auth: "Bearer " + key,
		monitors: make([]atomic.Pointer[string], customers),
	}
	if tokenSecret != "" {
		m, err := api.NewCustomerTokens([][]byte{[]byte(tokenSecret)}, nil)
		if err != nil {
			return nil, fmt.Errorf("token secret: %w", err)
		}
		n.minter, n.tokens = m, make([]atomic.Pointer[string], customers)
	}
	return n, nil
}

// token is the customer's token, signed at their first ping; no
// customer's tokens were ever revoked, so their generation is 1.
func (n *nearcast) token(customer int) (string, error) {
	if t := n.tokens[customer].Load(); t != nil {
		return *t, nil
	}
	t, _, err := n.minter.Mint(CustomerID(customer), 1, api.DefaultTokenTTL)
	if err != nil {
		return "", err
	}
	n.tokens[customer].Store(&t)
	return t, nil
}

var (
	noEvents = []byte(`"events":[]`)
	noOffers = []byte(`"offers":[]`)
)

func (n *nearcast) send(w *worker, p ping) (outcome, error) {
	if w.req == nil {
		w.req, w.resp = fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	}
	req, resp := w.req, w.resp
	req.Reset()
	req.SetRequestURI(n.url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set(fasthttp.HeaderAuthorization, n.auth)
	if n.minter != nil {
		t, err := n.token(p.customer)
		if err != nil {
			return outcome{}, err
		}
		req.Header.Set(api.HeaderCustomerToken, t)
	}
	if id := n.monitors[p.customer].Load(); id != nil {
		p.monitorID = *id
	}
	w.buf = p.appendJSON(w.buf[:0])
	req.SetBodyRaw(w.buf)
	if err := n.client.DoTimeout(req, resp, 10*time.Second); err != nil {
		return outcome{}, err
	}
	out := outcome{status: resp.StatusCode()}
	body := resp.Body()
	n.keepMonitor(p.customer, body)
	if out.status != 200 || bytes.Contains(body, noEvents) && bytes.Contains(body, noOffers) {
		return out, nil
	}
	w.answer = answer{}
	if err := json.Unmarshal(body, &w.answer); err != nil {
		return outcome{}, fmt.Errorf("answer: %w", err)
	}
	out.events, out.offers = w.answer.Events, w.answer.Offers
	return out, nil
}

var monitorIDAt = []byte(`"monitor":{"id":"`)

// keepMonitor keeps the monitor block id an answer names (the same one
// when it is unchanged), or forgets it when the answer names none.
func (n *nearcast) keepMonitor(customer int, body []byte) {
	i := bytes.Index(body, monitorIDAt)
	if i < 0 {
		n.monitors[customer].Store(nil)
		return
	}
	rest := body[i+len(monitorIDAt):]
	if j := bytes.IndexByte(rest, '"'); j >= 0 {
		if cur := n.monitors[customer].Load(); cur == nil || *cur != string(rest[:j]) {
			id := string(rest[:j])
			n.monitors[customer].Store(&id)
		}
	}
}

// healthz is the HTTP floor: a round trip to the same server that does
// no work (GET /healthz), on the same connections.
type healthz struct{ n *nearcast }

func (h healthz) send(w *worker, _ ping) (outcome, error) {
	if w.req == nil {
		w.req, w.resp = fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	}
	w.req.Reset()
	w.req.SetRequestURI(strings.TrimSuffix(h.n.url, "/v1/pings") + "/healthz")
	if err := h.n.client.DoTimeout(w.req, w.resp, 10*time.Second); err != nil {
		return outcome{}, err
	}
	return outcome{status: w.resp.StatusCode()}, nil
}

// geosearch is the baseline: the same pings as bare GEOSEARCH queries on
// the same stores, straight to Redis.
type geosearch struct {
	rdb *redis.Client
}

func (g geosearch) send(_ *worker, p ping) (outcome, error) {
	ids, err := g.rdb.GeoSearch(context.Background(), geoKey, &redis.GeoSearchQuery{
		Longitude: p.lng, Latitude: p.lat, Radius: baselineRadiusM, RadiusUnit: "m", Sort: "ASC", Count: 16,
	}).Result()
	if err != nil {
		return outcome{}, err
	}
	return outcome{status: 200, near: len(ids) > 0}, nil
}

// loadGeo writes the store points for the baseline.
func loadGeo(ctx context.Context, rdb *redis.Client, city *City) error {
	const batch = 1000
	for start := 0; start < len(city.Stores); start += batch {
		var locs []*redis.GeoLocation
		for _, s := range city.Stores[start:min(start+batch, len(city.Stores))] {
			locs = append(locs, &redis.GeoLocation{Name: s.ID, Latitude: *s.Lat, Longitude: *s.Lng})
		}
		if err := rdb.GeoAdd(ctx, geoKey, locs...).Err(); err != nil {
			return fmt.Errorf("baseline stores: %w", err)
		}
	}
	return nil
}

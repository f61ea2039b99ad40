package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Config tunes a Deliverer. Zero fields take DefaultConfig's values.
type Config struct {
	// MaxAge is how long an event is tried, from when it was emitted;
	// past it the event goes to the subscription's dead letters.
	MaxAge time.Duration
	// BackoffBase and BackoffMax bound the wait between tries: doubling
	// from the base, each drawn from the upper half of its span (jitter).
	BackoffBase, BackoffMax time.Duration
	// RetryAfterMax caps a receiver's Retry-After (429, 503).
	RetryAfterMax time.Duration
	// Timeout bounds one request, answer included.
	Timeout time.Duration
	// Poll is how often an idle worker looks for new events and the
	// deliverer for changed subscriptions.
	Poll time.Duration
	// Buffer bounds the events one subscription holds in memory per shard
	// (read, not yet delivered); a subscription at its bound reads no
	// more until some are delivered, so one failing customer can hold
	// back the others of that subscription only once Buffer of its events
	// wait behind it.
	Buffer int
	// DeadMax bounds each subscription's dead letters (the oldest go).
	DeadMax int64
	// LeaseTTL is how long a shard stays with a process that stopped
	// without letting it go (a crash) before another takes it over.
	LeaseTTL time.Duration
	// Client posts the requests; nil: one with Timeout that follows no
	// redirect and dials no address of a private or special network
	// (blockedIP) once the receiver's host name is resolved, so that a
	// subscription cannot reach into the networks Nearcast runs in (cloud
	// metadata, Redis, internal services): but for a URL naming the
	// loopback host (development) its loopback addresses, and the
	// addresses of AllowNets. A proxy of the environment (HTTPS_PROXY),
	// which the operator sets, is dialed whatever its address.
	Client *http.Client
	// AllowNets are networks the default Client dials however private:
	// the operator's allow-list (NEARCAST_WEBHOOK_ALLOW_NETS), for
	// receivers inside the company's network.
	AllowNets []*net.IPNet
	// StoreTags answers a store's tags, for subscriptions that filter by
	// tag (nil: tags match nothing).
	StoreTags func(storeID string) []string
}

// DefaultConfig is 24 hours of tries backing off from 1 s to 10 min, 10 s
// a request, 1,000 events held per subscription and shard, 10,000 dead
// letters per subscription.
func DefaultConfig() Config {
	return Config{MaxAge: 24 * time.Hour, BackoffBase: time.Second, BackoffMax: 10 * time.Minute,
		RetryAfterMax: time.Hour, Timeout: 10 * time.Second, Poll: 250 * time.Millisecond,
		Buffer: 1000, DeadMax: 10000, LeaseTTL: 15 * time.Second}
}

func (c Config) withDefaults() Config {
	def := DefaultConfig()
	setD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	setD(&c.MaxAge, def.MaxAge)
	setD(&c.BackoffBase, def.BackoffBase)
	setD(&c.BackoffMax, def.BackoffMax)
	setD(&c.RetryAfterMax, def.RetryAfterMax)
	setD(&c.Timeout, def.Timeout)
	setD(&c.Poll, def.Poll)
	setD(&c.LeaseTTL, def.LeaseTTL)
	if c.Buffer <= 0 {
		c.Buffer = def.Buffer
	}
	if c.DeadMax <= 0 {
		c.DeadMax = def.DeadMax
	}
	if c.Client == nil {
		guard := newDialGuard(c.AllowNets, c.Timeout)
		c.Client = &http.Client{
			Timeout:       c.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, DialContext: guard.DialContext,
				MaxIdleConnsPerHost: Shards, IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: c.Timeout,
				TLSHandshakeTimeout: c.Timeout, ForceAttemptHTTP2: true},
		}
	}
	return c
}

// lookupIPAddr resolves a receiver's host name; tests put a resolver of
// their own in its place before they make a Deliverer.
var lookupIPAddr = net.DefaultResolver.LookupIPAddr

// ErrRefusedAddress is the error of a request to a receiver whose
// address lies in a private or special network (Config.Client).
var ErrRefusedAddress = errors.New("webhook: refused to dial a private or special address")

// dialGuard dials receivers, refusing the addresses a webhook may not
// reach: it resolves the host itself, checks every address, and dials
// those allowed with a net.Dialer whose Control checks, once more, the
// address the socket is about to connect to.
type dialGuard struct {
	allow   []*net.IPNet
	proxies map[string]bool // hosts of the environment's proxies
	lookup  func(ctx context.Context, host string) ([]net.IPAddr, error)
	timeout time.Duration
}

func newDialGuard(allow []*net.IPNet, timeout time.Duration) *dialGuard {
	g := &dialGuard{allow: allow, proxies: map[string]bool{}, lookup: lookupIPAddr, timeout: timeout}
	for _, name := range []string{"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"} {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		if !strings.Contains(v, "://") {
			v = "http://" + v
		}
		if u, err := url.Parse(v); err == nil && u.Hostname() != "" {
			g.proxies[u.Hostname()] = true
		}
	}
	return g
}

// check answers why ip may not be dialed for host (nil: it may).
func (g *dialGuard) check(host string, ip net.IP) error {
	switch {
	case ip == nil:
		return fmt.Errorf("%w: %s is not an IP address", ErrRefusedAddress, host)
	case ip.IsLoopback() && loopbackHost(host):
		return nil // the URL names the loopback host: development
	case inNets(ip, g.allow):
		return nil
	}
	if why := blockedIP(ip); why != "" {
		return fmt.Errorf("%w: %s resolves to %s, %s (NEARCAST_WEBHOOK_ALLOW_NETS allows a network)", ErrRefusedAddress, host, ip, why)
	}
	return nil
}

// loopbackHost tells whether a URL's host names the loopback host.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DialContext is http.Transport's DialContext.
func (g *dialGuard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: g.timeout, KeepAlive: 30 * time.Second}
	if g.proxies[host] {
		return d.DialContext(ctx, network, addr)
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		addrs, err := g.lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	d.Control = func(_, address string, _ syscall.RawConn) error {
		h, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		return g.check(host, net.ParseIP(h))
	}
	var last error
	for _, ip := range ips {
		if err := g.check(host, ip); err != nil {
			if last == nil {
				last = err
			}
			continue
		}
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		last = err
	}
	if last == nil {
		last = fmt.Errorf("webhook: no address for %s", host)
	}
	return nil, last
}

// Deliverer posts the events of the streams to the subscriptions. Run one
// per process: each shard is delivered by one process at a time, the
// holder of its lease, and within it by one worker per subscription (a
// goroutine with its own consumer group, its own memory bound and one
// request in flight), so a slow or dead receiver holds up only its own
// subscription.
type Deliverer struct {
	rdb   redis.UniversalClient
	live  *Live
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	owner string

	mu    sync.Mutex
	stats map[string]*subStats
}

// NewDeliverer returns a deliverer of the subscriptions live keeps; run
// live.Run beside it.
func NewDeliverer(rdb redis.UniversalClient, live *Live, cfg Config, log *slog.Logger) *Deliverer {
	b := make([]byte, 8)
	rand.Read(b)
	return &Deliverer{rdb: rdb, live: live, cfg: cfg.withDefaults(), log: log, now: time.Now,
		owner: hex.EncodeToString(b), stats: map[string]*subStats{}}
}

// Run delivers until ctx ends, then lets go of its shards. Requests in
// flight are abandoned, their events not acknowledged: the next holder
// of the shard sends them again (at least once).
func (d *Deliverer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for n := 0; n < Shards; n++ {
		wg.Go(func() { d.runShard(ctx, n) })
	}
	wg.Wait()
	return nil
}

// renewScript extends a lease its holder still has. KEYS: lease. ARGV:
// owner, ttl ms. Answers 1 when held.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
`)

// releaseScript lets a lease go if held. KEYS: lease. ARGV: owner.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func (d *Deliverer) hold(ctx context.Context, n int) bool {
	ok, err := renewScript.Run(ctx, d.rdb, []string{leaseKey(n)}, d.owner, d.cfg.LeaseTTL.Milliseconds()).Int()
	if err != nil && ctx.Err() == nil {
		d.log.Warn("webhook: cannot renew a shard's lease", "shard", n, "err", err)
	}
	return err == nil && ok == 1
}

// runShard delivers shard n while this process holds its lease.
func (d *Deliverer) runShard(ctx context.Context, n int) {
	for ctx.Err() == nil {
		if !d.hold(ctx, n) {
			sleep(ctx, min(d.cfg.LeaseTTL/3, time.Second))
			continue
		}
		d.deliverShard(ctx, n)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	releaseScript.Run(rctx, d.rdb, []string{leaseKey(n)}, d.owner)
}

// deliverShard runs a worker per enabled subscription on shard n, as the
// subscriptions change, until the lease is lost or ctx ends.
func (d *Deliverer) deliverShard(ctx context.Context, n int) {
	type running struct {
		w      *worker
		cancel context.CancelFunc
		done   chan struct{}
	}
	workers := map[string]*running{}
	stop := func(id string) {
		r := workers[id]
		r.cancel()
		<-r.done
		delete(workers, id)
	}
	defer func() {
		for id := range workers {
			stop(id)
		}
	}()
	renewed := time.Now()
	tick := time.NewTicker(d.cfg.Poll)
	defer tick.Stop()
	for {
		if time.Since(renewed) > d.cfg.LeaseTTL/3 {
			if !d.hold(ctx, n) {
				d.log.Warn("webhook: lost a shard's lease", "shard", n)
				return
			}
			renewed = time.Now()
		}
		var subs map[string]*Subscription
		if snap := d.live.Current(); snap != nil {
			subs = snap.Subs
		}
		for id := range workers {
			if s := subs[id]; s == nil || !s.Enabled {
				stop(id)
			}
		}
		for id, s := range subs {
			if !s.Enabled {
				continue
			}
			if r := workers[id]; r != nil {
				r.w.sub.Store(s)
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			w := d.newWorker(n, s)
			r := &running{w: w, cancel: cancel, done: make(chan struct{})}
			workers[id] = r
			go func() { defer close(r.done); w.run(wctx) }()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Health is what a subscription's delivery looks like from this process
// (the shards it holds): counters since it started, and gauges now.
type Health struct {
	Delivered int64 `json:"delivered"`
	Retried   int64 `json:"retried"` // failed tries that were tried again
	Dead      int64 `json:"dead"`
	Skipped   int64 `json:"skipped"` // erased before delivery, or gone from the stream
	// Lag is the events of the subscription this process holds in memory,
	// read and not delivered yet (Store.Health has the whole lag).
	Lag int64 `json:"lag"`
	// OldestAge is the age of the oldest of them.
	OldestAge  time.Duration `json:"-"`
	LastError  string        `json:"last_error,omitempty"`
	LastStatus int           `json:"last_status,omitempty"`
}

// subStats are one subscription's counters and gauges, over shards.
type subStats struct {
	delivered, retried, dead, skipped atomic.Int64
	held, oldest                      [Shards]atomic.Int64 // oldest: unix ms, 0 none
	mu                                sync.Mutex
	lastErr                           string
	lastStatus                        int
}

func (d *Deliverer) statsOf(id string) *subStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats[id]
	if s == nil {
		s = &subStats{}
		d.stats[id] = s
	}
	return s
}

// Health answers every subscription's health, by id.
func (d *Deliverer) Health() map[string]Health {
	d.mu.Lock()
	ids := make(map[string]*subStats, len(d.stats))
	for id, s := range d.stats {
		ids[id] = s
	}
	d.mu.Unlock()
	now := d.now()
	out := make(map[string]Health, len(ids))
	for id, s := range ids {
		h := Health{Delivered: s.delivered.Load(), Retried: s.retried.Load(), Dead: s.dead.Load(), Skipped: s.skipped.Load()}
		for n := 0; n < Shards; n++ {
			h.Lag += s.held[n].Load()
			if ms := s.oldest[n].Load(); ms > 0 {
				h.OldestAge = max(h.OldestAge, now.Sub(time.UnixMilli(ms)))
			}
		}
		s.mu.Lock()
		h.LastError, h.LastStatus = s.lastErr, s.lastStatus
		s.mu.Unlock()
		out[id] = h
	}
	return out
}

var (
	descDeliveries = prometheus.NewDesc("nearcast_webhook_deliveries_total",
		"Webhook tries by result: delivered, retried (failed, tried again), dead (given up after the maximum age), skipped (erased or trimmed before delivery).",
		[]string{"subscription", "result"}, nil)
	descLag = prometheus.NewDesc("nearcast_webhook_lag",
		"Events of a subscription not delivered yet: not read, or read and not acknowledged (from Redis: the same on every replica).", []string{"subscription"}, nil)
	descOldest = prometheus.NewDesc("nearcast_webhook_oldest_age_seconds",
		"Age of a subscription's oldest event not delivered yet (0: none).", []string{"subscription"}, nil)
)

// Describe is half of prometheus.Collector: register the deliverer with
// a prometheus.Registerer to export Health.
func (d *Deliverer) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDeliveries
	ch <- descLag
	ch <- descOldest
}

// Collect is the other half of prometheus.Collector.
// The counters are this process's; the lag and the oldest age are read
// from Redis (Store.HealthOf), the same on every replica, for the
// subscriptions in force.
func (d *Deliverer) Collect(ch chan<- prometheus.Metric) {
	for id, h := range d.Health() {
		for result, v := range map[string]int64{"delivered": h.Delivered, "retried": h.Retried, "dead": h.Dead, "skipped": h.Skipped} {
			ch <- prometheus.MustNewConstMetric(descDeliveries, prometheus.CounterValue, float64(v), id, result)
		}
	}
	snap := d.live.Current()
	if snap == nil || len(snap.Subs) == 0 {
		return
	}
	ids := make([]string, 0, len(snap.Subs))
	for id := range snap.Subs {
		ids = append(ids, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	hs, err := d.live.Store().HealthOf(ctx, ids...)
	if err != nil {
		d.log.Warn("webhook: health not read for the metrics", "err", err)
		return
	}
	now := d.now()
	for id, h := range hs {
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(h.Lag+h.Pending), id)
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, h.OldestAge(now).Seconds(), id)
	}
}

// worker delivers one subscription's events of one shard, one request at
// a time, each customer's in order.
type worker struct {
	d      *Deliverer
	shard  int
	key    string
	group  string
	sub    atomic.Pointer[Subscription]
	stats  *subStats
	queues map[string]*custQueue // by customer id
	held   int
	cursor string // "0"-based cursor while re-reading the entries left pending, then ">"
	// erased is when customers were erased, as their customer.erased
	// entries said (forget).
	erased map[string]time.Time
	// skip gathers, while take runs, the held entries an erasure drops.
	skip []string
}

// custQueue is one customer's events waiting, oldest first; the head is
// tried at due.
type custQueue struct {
	items []*held
	due   time.Time
}

type held struct {
	entry  string
	ev     Event
	body   []byte
	tries  int
	status int
	err    string
}

func (d *Deliverer) newWorker(n int, s *Subscription) *worker {
	w := &worker{d: d, shard: n, key: StreamKey(n), group: groupOf(s.ID), stats: d.statsOf(s.ID),
		queues: map[string]*custQueue{}, cursor: "0"}
	w.sub.Store(s)
	return w
}

func (w *worker) run(ctx context.Context) {
	defer func() {
		w.stats.held[w.shard].Store(0)
		w.stats.oldest[w.shard].Store(0)
	}()
	for ctx.Err() == nil {
		// Only for a subscription that still exists: one deleted since
		// this process last looked must not get its groups back, for a
		// subscription made again under its id would then start from them.
		exists, err := w.d.rdb.HExists(ctx, keySubs, w.sub.Load().ID).Result()
		if err == nil && !exists {
			return
		}
		if err == nil {
			err = ensureGroup(ctx, w.d.rdb, w.shard, w.sub.Load().ID)
		}
		if err != nil {
			w.d.log.Warn("webhook: cannot create consumer group", "subscription", w.sub.Load().ID, "err", err)
			sleep(ctx, w.d.cfg.Poll)
			continue
		}
		break
	}
	for ctx.Err() == nil {
		read := w.fill(ctx)
		tried, next := w.deliverDue(ctx)
		w.gauges(ctx)
		if read == 0 && tried == 0 {
			wait := w.d.cfg.Poll
			if !next.IsZero() {
				wait = min(wait, max(time.Until(next), time.Millisecond))
			}
			sleep(ctx, wait)
		}
	}
}

// fill reads what the buffer has room for: first the entries this group
// left pending (a previous holder's, or this process's before a stop),
// then new ones.
func (w *worker) fill(ctx context.Context) int {
	room := w.d.cfg.Buffer - w.held
	if room <= 0 {
		return 0
	}
	streams, err := w.d.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: w.group, Consumer: consumerName, Streams: []string{w.key, w.cursor},
		Count: int64(min(room, 100)), Block: -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	if err != nil {
		if ctx.Err() == nil {
			if strings.Contains(err.Error(), "NOGROUP") {
				// The stream went, or the subscription was deleted (its
				// groups with it): a group comes back only for the former.
				if ok, _ := w.d.rdb.HExists(ctx, keySubs, w.sub.Load().ID).Result(); ok {
					ensureGroup(ctx, w.d.rdb, w.shard, w.sub.Load().ID)
				}
			} else {
				w.d.log.Warn("webhook: cannot read events", "shard", w.shard, "subscription", w.sub.Load().ID, "err", err)
			}
		}
		return 0
	}
	var msgs []redis.XMessage
	for _, s := range streams {
		msgs = append(msgs, s.Messages...)
	}
	if w.cursor != ">" {
		if len(msgs) == 0 {
			w.cursor = ">"
		} else {
			w.cursor = msgs[len(msgs)-1].ID
		}
	}
	sub := w.sub.Load()
	var skip []string
	for _, m := range msgs {
		if !w.take(m, sub) {
			skip = append(skip, m.ID)
		}
	}
	skip = append(skip, w.skip...)
	w.skip = w.skip[:0]
	w.ack(ctx, skip...)
	return len(msgs)
}

// take holds a stream entry for delivery, or answers false for one to
// acknowledge unsent: gone (erased, trimmed), another subscription's,
// malformed, decided before its customer's erasure, or not wanted.
func (w *worker) take(m redis.XMessage, sub *Subscription) bool {
	if len(m.Values) == 0 { // deleted (erased) or trimmed since it was read
		w.stats.skipped.Add(1)
		return false
	}
	if only, _ := m.Values["only"].(string); only != "" && only != sub.ID {
		return false
	}
	doc, _ := m.Values["event"].(string)
	var ev Event
	if err := json.Unmarshal([]byte(doc), &ev); err != nil {
		w.d.log.Warn("webhook: malformed event skipped", "entry", m.ID, "err", err)
		return false
	}
	if ev.Type == TypeCustomerErased {
		w.forget(ev.CustomerID, ev.At)
	} else if at, ok := w.erased[ev.CustomerID]; ok && !ev.At.After(at) {
		// A fact decided before the customer's erasure, relayed after
		// it (the relay had read the journal as the erasure ran): it
		// goes unsent, as what was in the stream did.
		w.stats.skipped.Add(1)
		return false
	}
	if !sub.Wants(&ev, w.d.cfg.StoreTags) {
		return false
	}
	q := w.queues[ev.CustomerID]
	if q == nil {
		q = &custQueue{due: time.Time{}}
		w.queues[ev.CustomerID] = q
	}
	if ev.Type == TypeCustomerErased && len(q.items) > 0 {
		// What waits of an erased customer goes unsent.
		for _, h := range q.items {
			w.skip = append(w.skip, h.entry)
		}
		w.stats.skipped.Add(int64(len(q.items)))
		w.held -= len(q.items)
		q.items, q.due = nil, time.Time{}
	}
	q.items = append(q.items, &held{entry: m.ID, ev: ev, body: []byte(doc)})
	w.held++
	return true
}

// erasedMemory is how long a worker remembers an erasure, to skip the
// customer's facts decided before it and relayed after: far longer than
// a relay takes.
const erasedMemory = 10 * time.Minute

// forget remembers that a customer was erased at at.
func (w *worker) forget(customerID string, at time.Time) {
	if w.erased == nil {
		w.erased = map[string]time.Time{}
	}
	now := w.d.now()
	if len(w.erased) >= 1000 {
		for id, t := range w.erased {
			if now.Sub(t) > erasedMemory {
				delete(w.erased, id)
			}
		}
	}
	w.erased[customerID] = at
}

func (w *worker) ack(ctx context.Context, ids ...string) {
	if len(ids) == 0 {
		return
	}
	if err := w.d.rdb.XAck(context.WithoutCancel(ctx), w.key, w.group, ids...).Err(); err != nil {
		// Still pending: sent again by the next holder of the shard.
		w.d.log.Warn("webhook: cannot acknowledge events", "subscription", w.sub.Load().ID, "err", err)
	}
}

// deliverDue tries the head of every customer whose turn it is, and
// answers how many it tried and when the next turn comes.
func (w *worker) deliverDue(ctx context.Context) (tried int, next time.Time) {
	for cust, q := range w.queues {
		if ctx.Err() != nil {
			return tried, next
		}
		if len(q.items) == 0 {
			delete(w.queues, cust)
			continue
		}
		if now := w.d.now(); q.due.After(now) {
			if next.IsZero() || q.due.Before(next) {
				next = q.due
			}
			continue
		}
		tried++
		w.try(ctx, q)
		if len(q.items) == 0 {
			delete(w.queues, cust)
		}
	}
	return tried, next
}

// try posts a customer's first event, and settles it: delivered, tried
// again later, or dead past MaxAge.
func (w *worker) try(ctx context.Context, q *custQueue) {
	h := q.items[0]
	sub := w.sub.Load()
	status, retryAfter, err := w.post(ctx, sub, h)
	if ctx.Err() != nil {
		return // stopping: left pending, sent again by the next holder
	}
	if err == nil {
		w.ack(ctx, h.entry)
		w.stats.delivered.Add(1)
		w.pop(q)
		return
	}
	h.tries++
	h.status, h.err = status, err.Error()
	w.stats.mu.Lock()
	w.stats.lastErr, w.stats.lastStatus = h.err, status
	w.stats.mu.Unlock()
	delay := w.backoff(h.tries, retryAfter)
	now := w.d.now()
	if now.Add(delay).Sub(entryTime(h.entry)) > w.d.cfg.MaxAge && w.deadLetter(ctx, sub, h) {
		w.pop(q)
		return
	}
	w.stats.retried.Add(1)
	q.due = now.Add(delay)
	w.d.log.Debug("webhook: delivery failed, will retry", "subscription", sub.ID, "event", h.ev.ID, "try", h.tries, "in", delay, "err", err)
}

func (w *worker) pop(q *custQueue) {
	q.items[0] = nil
	q.items = q.items[1:]
	q.due = time.Time{}
	w.held--
}

// backoff is the wait before try number tries+1: doubling from
// BackoffBase to BackoffMax, drawn from the upper half of that (jitter),
// and never sooner than the receiver's Retry-After (up to RetryAfterMax).
func (w *worker) backoff(tries int, retryAfter time.Duration) time.Duration {
	cfg := w.d.cfg
	d := cfg.BackoffBase << min(tries-1, 20)
	if d > cfg.BackoffMax || d <= 0 {
		d = cfg.BackoffMax
	}
	d = d/2 + mrand.N(d/2+1)
	if retryAfter > d {
		d = min(retryAfter, cfg.RetryAfterMax)
	}
	return d
}

// post sends one event; a nil error means the receiver took it (2xx).
func (w *worker) post(ctx context.Context, sub *Subscription, h *held) (status int, retryAfter time.Duration, err error) {
	now := w.d.now()
	sig, err := Sign(sub.Secret, h.ev.ID, now, h.body)
	if err != nil {
		return 0, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.URL, bytes.NewReader(h.body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Nearcast-Webhooks/1")
	req.Header.Set(HeaderID, h.ev.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := w.d.cfg.Client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, 0, nil
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return resp.StatusCode, retryAfter, fmt.Errorf("receiver answered %s", resp.Status)
}

// parseRetryAfter reads Retry-After: seconds, or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// deadLetter records an event given up on, then acknowledges it; a stop
// between the two records it twice, never loses it.
func (w *worker) deadLetter(ctx context.Context, sub *Subscription, h *held) bool {
	ctx = context.WithoutCancel(ctx)
	doc, _ := json.Marshal(DeadLetter{Event: h.ev, Entry: h.entry, Attempts: h.tries, LastStatus: h.status,
		LastError: h.err, DeadAt: w.d.now().UTC().Truncate(time.Millisecond)})
	_, err := w.d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, deadKey(sub.ID), doc)
		p.LTrim(ctx, deadKey(sub.ID), 0, w.d.cfg.DeadMax-1)
		return nil
	})
	if err != nil {
		w.d.log.Warn("webhook: cannot record a dead letter, will try the event again", "subscription", sub.ID, "err", err)
		return false
	}
	w.ack(ctx, h.entry)
	w.stats.dead.Add(1)
	w.d.log.Warn("webhook: event given up", "subscription", sub.ID, "event", h.ev.ID, "tries", h.tries, "err", h.err)
	return true
}

// gauges publishes what the worker holds and, when it is at its bound
// (and so reads no more), what its group has not read yet, once a second.
func (w *worker) gauges(ctx context.Context) {
	w.stats.held[w.shard].Store(int64(w.held))
	oldest := int64(0)
	for _, q := range w.queues {
		if len(q.items) > 0 {
			if ms := entryTime(q.items[0].entry).UnixMilli(); oldest == 0 || ms < oldest {
				oldest = ms
			}
		}
	}
	w.stats.oldest[w.shard].Store(oldest)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

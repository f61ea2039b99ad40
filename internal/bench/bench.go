// Package bench is Nearcast's load bench (`nearcast-bench`): it loads a
// city of stores, rules and customers into Redis, drives pings over HTTP
// from simulated customers who walk, stand, cycle and drive, runs the same
// pings as bare Redis GEOSEARCH queries for comparison, and reports
// throughput, latency, events, offers, pushes and duplicates as text, JSON
// and an SVG chart. Then it compares, on hours of simulated walks, phones
// that poll every 15 s with phones that follow the answers' monitor and
// next_ping (phones.go), through an engine in this process on a clock of
// the walks' own. It knows no Redis key names of the engine: it loads
// through packages rules and engine, and pings through the HTTP API (the
// phones through package engine).
package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/fcmtest"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// Phase names.
const (
	PhaseBaseline = "geosearch"
	PhaseHTTP     = "http-floor"
	PhasePeak     = "nearcast-peak"
	PhaseAt80     = "nearcast-80%"
	PhaseRate     = "nearcast-rate"
)

// Server is a Nearcast server the bench started.
type Server struct {
	URL string
	// PID is its process, for its CPU time (this process's when it runs
	// in-process).
	PID  int
	Stop func() error
}

// StartFunc runs a Nearcast server with the given settings (the
// contract's environment variables).
type StartFunc func(ctx context.Context, env map[string]string) (*Server, error)

// Config is a bench run.
type Config struct {
	Stores, Rules, Customers int
	// Active is how many customers are out and about at once.
	Active int
	// ErrandPct is the share of their paths that lead into a store.
	ErrandPct int
	// Concurrency is how many pings are in flight at once.
	Concurrency int
	// Duration is each phase's length.
	Duration time.Duration
	// WarmUp is how long Nearcast is driven, uncounted, before its phases.
	WarmUp time.Duration
	// Rate, when above 0, runs Nearcast at this fixed rate only; else at
	// full speed, then at 80% of the peak it reached.
	Rate float64
	// Baseline lists the reference phases, comma-separated: geosearch
	// (the same pings as bare GEOSEARCH queries), http (GET /healthz on
	// the same server: what an HTTP round trip alone costs here), or none.
	Baseline string
	// RedisURL is the Redis to load; empty starts a redis-server.
	RedisURL string
	// Flush empties a given Redis first; without it a Redis holding keys
	// is refused.
	Flush bool
	// ServerURL is a running Nearcast on RedisURL; empty starts one.
	ServerURL string
	// AppKey authenticates pings to a given server.
	AppKey string
	// TokenSecret signs the customers' tokens that go with their pings to
	// a given server (its NEARCAST_TOKEN_SECRETS' first); empty sends none
	// (a server with NEARCAST_APP_AUTH=key). A server the bench starts
	// gets a new one.
	TokenSecret string
	// Out is the folder for report.json, report.txt and report.svg.
	Out  string
	Seed uint64
	// Phones is how many phones walk PhoneHours each in each area of the
	// city (DefaultPhoneAreas: its centre and its outskirts), once
	// polling every 15 s and once as monitored (Monitor and NextPing), in
	// the phones phase (phones.go); 0 skips it.
	Phones     int
	PhoneHours float64
	// NoVariants runs the city without its experiments (City.DropVariants).
	NoVariants bool
	// Webhook subscribes a receiver to every event type before the
	// phases: "live" answers 200 at once, "dead" takes connections and
	// never answers; "" none. Live against none is what events out cost
	// the pings; dead against live, what a dead receiver costs them
	// (nothing, if delivery is as isolated as it should be).
	Webhook string
	// Start starts a server when ServerURL is empty.
	Start StartFunc
	Log   io.Writer
}

// DefaultConfig is `nearcast-bench` without flags.
func DefaultConfig() Config {
	return Config{Stores: 20000, Rules: 1000, Customers: 1000000, Active: 20000, ErrandPct: 10, Concurrency: 32,
		Duration: 20 * time.Second, WarmUp: 5 * time.Second, Baseline: "geosearch,http", Out: "bench-out", Seed: 1, AppKey: "bench-app",
		Phones: DefaultPhonesConfig().Phones, PhoneHours: DefaultPhonesConfig().Walk.Hours()}
}

// RedisSettings are those of the redis-server the bench starts: the
// setting the operations guide recommends, so that a customer's hashes
// (a profile of some 250 bytes, a device with a 163-character FCM token)
// stay in Redis's compact encoding.
var RedisSettings = []string{"--hash-max-listpack-value", "1024"}

// minOfferGap is the least gap between two offers to one customer that
// the bench gives a server it starts (the server's default).
const minOfferGap = 5 * time.Minute

// Run runs the bench and writes its report: Redis, the city, the
// server, the phases, then the tally across them.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, rep: newReport(cfg)}
	defer r.close()
	if err := r.openRedis(ctx); err != nil {
		return nil, err
	}
	if err := r.loadCity(ctx); err != nil {
		return nil, err
	}
	if cfg.Webhook != "" {
		if err := r.subscribe(ctx, cfg.Webhook == "dead"); err != nil {
			return nil, err
		}
	}
	if err := r.startServer(ctx); err != nil {
		return nil, err
	}
	if err := r.runPhases(ctx); err != nil {
		return nil, err
	}
	r.tally(ctx)
	if err := r.runPhones(ctx); err != nil {
		return nil, err
	}
	r.rep.judge()
	return r.rep, r.rep.write(r.cfg.Out)
}

// runner is one run of the bench, phase by phase.
type runner struct {
	cfg Config
	rep *Report
	// closers undo what the run started, the last first.
	closers []func()

	redisURL string
	rdb      *redis.Client
	city     *City
	// memCatalog is Redis's memory with the catalog loaded, before the
	// customers.
	memCatalog int64

	nc        *nearcast
	serverPID int
	// fcm is the FCM double of a server the bench started; nil with
	// ServerURL.
	fcm *fcmtest.Server

	shards []*movers
	// warm is the warm-up, not counted among the phases.
	warm *Phase
}

func newReport(cfg Config) *Report {
	return &Report{StartedAt: time.Now().UTC().Truncate(time.Second),
		Machine: Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH},
		Settings: Settings{Seed: cfg.Seed, Active: cfg.Active, ErrandPct: cfg.ErrandPct, Concurrency: cfg.Concurrency, DurationS: cfg.Duration.Seconds(), WarmUpS: cfg.WarmUp.Seconds(),
			Rate: cfg.Rate, Baseline: cfg.Baseline, ServerURL: cfg.ServerURL, MinOfferGap: minOfferGap.String()}}
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Log, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// onClose has f run when the run ends, before what was started earlier
// is undone.
func (r *runner) onClose(f func()) { r.closers = append(r.closers, f) }

func (r *runner) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// openRedis connects to the Redis given, or to a redis-server of the
// bench's own, which must hold no keys unless Flush empties it.
func (r *runner) openRedis(ctx context.Context) error {
	cfg := &r.cfg
	r.redisURL = cfg.RedisURL
	if r.redisURL == "" {
		srv, err := redistest.Start(RedisSettings...)
		if err != nil {
			return err
		}
		r.onClose(srv.Stop)
		r.redisURL = "redis://" + srv.Addr
		r.logf("started redis-server on %s", srv.Addr)
	}
	opt, err := redis.ParseURL(r.redisURL)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	opt.PoolSize = cfg.Concurrency + 8
	rdb := redis.NewClient(opt)
	r.rdb = rdb
	r.onClose(func() { rdb.Close() })
	n, err := rdb.DBSize(ctx).Result()
	if err != nil {
		return fmt.Errorf("redis at %s: %w", r.redisURL, err)
	}
	if n > 0 && !cfg.Flush {
		return fmt.Errorf("redis at %s holds %d keys: the bench loads a city of its own; give --flush to empty it first", r.redisURL, n)
	}
	if cfg.Flush {
		if err := rdb.FlushDB(ctx).Err(); err != nil {
			return err
		}
	}
	info := redisInfo(ctx, rdb)
	r.rep.Machine.Redis = info["redis_version"]
	if v, err := rdb.ConfigGet(ctx, "hash-max-listpack-value").Result(); err == nil {
		r.rep.Memory.RedisListpackValue, _ = strconv.Atoi(v["hash-max-listpack-value"])
	}
	return nil
}

// loadCity loads the city's catalog, then its customers, and measures
// the time and the Redis memory each takes.
func (r *runner) loadCity(ctx context.Context) error {
	cfg, rep := &r.cfg, r.rep
	city := NewCity(cfg.Seed, cfg.Stores, cfg.Rules, cfg.Customers)
	if cfg.NoVariants {
		city.DropVariants()
	}
	r.city = city
	t0 := time.Now()
	if err := loadCatalog(ctx, r.rdb, city); err != nil {
		return err
	}
	rep.Load.CatalogS = time.Since(t0).Seconds()
	rep.City = CityStats{Stores: len(city.Stores), Rules: len(city.Rules), Customers: cfg.Customers}
	for _, r := range city.Rules {
		if len(r.Offer.Variants) > 0 {
			rep.City.VariantRules++
			if r.Offer.Selection == rules.SelectBandit {
				rep.City.BanditRules++
			}
		}
	}
	for _, s := range city.Stores {
		if len(s.Polygon) > 0 {
			rep.City.PolygonStores++
		} else {
			rep.City.CircleStores++
		}
	}
	var err error
	if rep.Memory.IndexBytesPerCircle, err = city.CircleIndexBytes(); err != nil {
		return err
	}
	r.logf("loaded %d stores and %d rules in %.1f s", len(city.Stores), len(city.Rules), rep.Load.CatalogS)
	r.memCatalog = infoInt(redisInfo(ctx, r.rdb), "used_memory")
	t0 = time.Now()
	if err := loadCustomers(ctx, r.rdb, city, func(done int) { r.logf("customers: %d of %d", done, cfg.Customers) }); err != nil {
		return err
	}
	rep.Load.CustomersS = time.Since(t0).Seconds()
	rep.Load.CustomersPerS = float64(cfg.Customers) / rep.Load.CustomersS
	memCustomers := infoInt(redisInfo(ctx, r.rdb), "used_memory")
	rep.Memory.RedisBytesPerCustomer = float64(memCustomers-r.memCatalog) / float64(cfg.Customers)
	r.logf("loaded %d customers with their phones in %.1f s: %.0f B of Redis each", cfg.Customers, rep.Load.CustomersS, rep.Memory.RedisBytesPerCustomer)
	return nil
}

// subscribe saves a subscription to every event type whose receiver on
// 127.0.0.1 answers 200 at once, or (dead) accepts connections and never
// answers, until the run ends.
func (r *runner) subscribe(ctx context.Context, dead bool) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var held []net.Conn
	var mu sync.Mutex
	if dead {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				held = append(held, c) // never read, never answered
				mu.Unlock()
			}
		}()
	} else {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			io.Copy(io.Discard, req.Body)
			w.WriteHeader(http.StatusOK)
		})}
		go srv.Serve(ln)
	}
	r.onClose(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	sub := &webhook.Subscription{ID: "bench-receiver", URL: "http://" + ln.Addr().String() + "/hook", Events: webhook.EventTypes, Enabled: true}
	if _, err := webhook.NewStore(r.rdb).Put(ctx, sub, 0); err != nil {
		return fmt.Errorf("subscribe the receiver: %w", err)
	}
	r.rep.Settings.Webhook = r.cfg.Webhook
	r.logf("subscribed a %s receiver to every event type", r.cfg.Webhook)
	return nil
}

// startServer starts the server, sending its pushes through
// firebase-admin-go to an FCM double in this process, unless ServerURL
// names one, and waits until it is ready.
func (r *runner) startServer(ctx context.Context) error {
	cfg := &r.cfg
	base, tokenSecret := cfg.ServerURL, cfg.TokenSecret
	if base == "" {
		tokenSecret = randomHex(32)
		r.fcm = fcmtest.Start()
		r.onClose(r.fcm.Close)
		srv, err := cfg.Start(ctx, serverEnv(cfg, r.redisURL, tokenSecret, r.fcm.URL()))
		if err != nil {
			return fmt.Errorf("start nearcast: %w", err)
		}
		r.onClose(func() {
			if err := srv.Stop(); err != nil {
				r.logf("nearcast stopped with: %v", err)
			}
		})
		base, r.serverPID = srv.URL, srv.PID
		r.logf("started nearcast at %s", base)
	}
	if err := waitReady(ctx, base); err != nil {
		return err
	}
	nc, err := newNearcast(base, cfg.AppKey, tokenSecret, cfg.Customers, cfg.Concurrency*2)
	if err != nil {
		return err
	}
	r.nc = nc
	return nil
}

// serverEnv is the settings of a server the bench starts.
func serverEnv(cfg *Config, redisURL, tokenSecret, fcmURL string) map[string]string {
	return map[string]string{
		"NEARCAST_ADDR": "127.0.0.1:0", "NEARCAST_REDIS_URL": redisURL, "NEARCAST_DEMO": "0",
		"NEARCAST_APP_KEYS": cfg.AppKey, "NEARCAST_ADMIN_KEYS": "bench-admin-" + randomHex(8),
		// As in production: each ping carries its customer's token.
		"NEARCAST_APP_AUTH": "token", "NEARCAST_TOKEN_SECRETS": tokenSecret,
		"NEARCAST_COUPON_SECRET": randomHex(32), "NEARCAST_PUSH": "fcm", "NEARCAST_FCM_ENDPOINT": fcmURL,
		"NEARCAST_FCM_PROJECT": "nearcast-bench", "NEARCAST_QUIET_HOURS": "off", "NEARCAST_LOG_LEVEL": "warn",
		"NEARCAST_MIN_OFFER_GAP": minOfferGap.String(),
		// The bench's customers live 15 s between pings in a fraction
		// of a second: the per-minute limits would stop them.
		"NEARCAST_PINGS_PER_MINUTE": "0", "NEARCAST_PINGS_PER_MINUTE_DEVICE": "0",
	}
}

// runPhases runs the baselines, the warm-up, then Nearcast at full
// speed and at 80% of its peak, or at the fixed Rate alone.
func (r *runner) runPhases(ctx context.Context) error {
	cfg, rep := &r.cfg, r.rep
	// The customers out and about, in shards enough for the most
	// workers a phase has; they walk on from phase to phase.
	r.shards = newShards(r.city, cfg.Seed, cfg.Concurrency*2, cfg.Active, cfg.ErrandPct)
	if cfg.baseline("geosearch") {
		if err := loadGeo(ctx, r.rdb, r.city); err != nil {
			return err
		}
		r.onClose(func() { r.rdb.Del(context.Background(), geoKey) })
		rep.Phases = append(rep.Phases, r.phase(ctx, PhaseBaseline, geosearch{r.rdb}, 0, cfg.Duration))
	}
	if cfg.baseline("http") {
		rep.Phases = append(rep.Phases, r.phase(ctx, PhaseHTTP, healthz{r.nc}, 0, cfg.Duration))
	}
	// A warm-up, not counted: every customer out and about pings at
	// least once, as in a server that has been up a while (a customer's
	// first ping of the day creates their presence).
	r.warm = r.phase(ctx, "warm-up", r.nc, 0, cfg.WarmUp)
	rep.WarmUp = r.warm
	if r.fcm != nil {
		awaitPushes(ctx, r.fcm, r.warm.issued, 30*time.Second)
	}
	if cfg.Rate > 0 {
		rep.Phases = append(rep.Phases, r.phase(ctx, PhaseRate, r.nc, cfg.Rate, cfg.Duration))
	} else {
		peak := r.phase(ctx, PhasePeak, r.nc, 0, cfg.Duration)
		rep.Phases = append(rep.Phases, peak)
		if r.fcm != nil {
			// The next phase starts once the pushes of this one are out.
			awaitPushes(ctx, r.fcm, peak.issued, 30*time.Second)
		}
		if peak.Throughput > 0 {
			rep.Phases = append(rep.Phases, r.phase(ctx, PhaseAt80, r.nc, 0.8*peak.Throughput, cfg.Duration))
		}
	}
	return ctx.Err()
}

// phase drives one phase and measures the CPU each process spent on its
// pings.
func (r *runner) phase(ctx context.Context, name string, t target, rate float64, d time.Duration) *Phase {
	cfg := &r.cfg
	before, cmdsBefore := redisCPU(ctx, r.rdb), commandStats(ctx, r.rdb)
	benchBefore, serverBefore := processCPU(os.Getpid()), processCPU(r.serverPID)
	spec := phaseSpec{name: name, target: t, workers: cfg.Concurrency, duration: d, rate: rate, seed: cfg.Seed, gap: minOfferGap}
	if rate > 0 {
		// Enough workers that a slow answer seldom holds up the next ping.
		spec.workers = cfg.Concurrency * 2
	}
	p := drive(ctx, r.shards, spec)
	if p.Requests > 0 {
		perPing := func(sec float64) float64 { return sec * 1e6 / float64(p.Requests) }
		p.RedisCPUPerOpUs = perPing(redisCPU(ctx, r.rdb) - before)
		p.RedisCommands = perPingCommands(cmdsBefore, commandStats(ctx, r.rdb), p.Requests)
		p.CPUPerPingUs = map[string]float64{"redis": p.RedisCPUPerOpUs}
		if b := processCPU(os.Getpid()); b >= 0 && benchBefore >= 0 {
			p.CPUPerPingUs["bench"] = perPing(b - benchBefore)
		}
		if _, bare := t.(geosearch); r.serverPID != 0 && r.serverPID != os.Getpid() && !bare {
			if sv := processCPU(r.serverPID); sv >= 0 && serverBefore >= 0 {
				p.CPUPerPingUs["server"] = perPing(sv - serverBefore)
			}
		}
	}
	r.logf("%s: %d pings, %.0f per s, p50 %.2f ms, p99 %.2f ms, %d offers, %d errors",
		name, p.Requests, p.Throughput, p.Latency.P50, p.Latency.P99, p.Offers, p.ErrorCount)
	return p
}

// runPhones runs the phones phase, after the tally, so that its
// customers count in no figure of the load phases.
func (r *runner) runPhones(ctx context.Context) error {
	cfg := &r.cfg
	if cfg.Phones == 0 {
		return nil
	}
	pc := DefaultPhonesConfig()
	pc.Phones, pc.Walk, pc.Seed = cfg.Phones, time.Duration(cfg.PhoneHours*float64(time.Hour)).Round(time.Second), cfg.Seed
	rep, err := RunPhones(ctx, r.rdb, r.city, pc)
	if err != nil {
		return err
	}
	r.rep.Phones = rep
	r.logf("phones: %d phones × %.2f h of walk in each of %d areas in %.1f s", rep.Phones, rep.WalkHours, len(rep.Areas), rep.WallS)
	for _, a := range rep.Areas {
		poll, mon := a.Mode(ModePolling), a.Mode(ModeMonitored)
		r.logf("phones (%s): pings per customer-hour %.1f polling, %.1f monitored; enter delay p95 %.0f s and %.0f s; %d visits polling caught and monitoring missed",
			a.Name, poll.PingsPerCustomerHour, mon.PingsPerCustomerHour, poll.DelayS.P95, mon.DelayS.P95, a.CaughtByPollingMissedByMonitoring)
	}
	return nil
}

// tally counts the duplicate offers across phases and the pushes that
// reached the FCM double, and measures Redis's memory after the run.
func (r *runner) tally(ctx context.Context) {
	cfg, rep := &r.cfg, r.rep
	// Offers across phases: a coupon twice, or a customer offered twice
	// within the gap, is a duplicate.
	// The warm-up's offers count here too.
	var all []issued
	counted := append([]*Phase{r.warm}, rep.Phases...)
	for _, p := range counted {
		rep.DuplicateOffers += p.DuplicateOffers
		all = append(all, p.issued...)
	}
	rep.DuplicateOffers += crossPhaseDuplicates(counted)
	if r.fcm != nil {
		rep.Pushes = awaitPushes(ctx, r.fcm, all, 20*time.Second)
	}
	memEnd := infoInt(redisInfo(ctx, r.rdb), "used_memory")
	rep.Memory.RedisUsedBytes = memEnd
	if cfg.baseline("geosearch") {
		// The baseline's own key is not the engine's.
		memEnd -= geoKeyBytes(ctx, r.rdb)
	}
	rep.Memory.RedisBytesPerCustomerAfterRun = float64(memEnd-r.memCatalog) / float64(cfg.Customers)
}

func (c *Config) check() error {
	var errs []error
	if c.Stores < 1 || c.Rules < 0 || c.Customers < 1 {
		errs = append(errs, errors.New("--stores and --customers must be at least 1, --rules at least 0"))
	}
	if c.Concurrency < 1 || c.Concurrency > 4096 {
		errs = append(errs, errors.New("--concurrency must be 1 to 4096"))
	}
	if c.Webhook != "" && c.Webhook != "live" && c.Webhook != "dead" {
		errs = append(errs, errors.New("--webhook must be live, dead or empty"))
	}
	if c.ErrandPct < 0 || c.ErrandPct > 100 {
		errs = append(errs, errors.New("--errand-pct must be 0 to 100"))
	}
	if c.Active < c.Concurrency {
		c.Active = c.Concurrency
	}
	if c.Active > c.Customers {
		c.Active = c.Customers
	}
	if c.WarmUp < 100*time.Millisecond {
		errs = append(errs, errors.New("--warm-up must be at least 100ms"))
	}
	if c.Duration < 500*time.Millisecond {
		errs = append(errs, errors.New("--duration must be at least 500ms"))
	}
	if c.Rate < 0 {
		errs = append(errs, errors.New("--rate must not be negative"))
	}
	for _, b := range strings.Split(c.Baseline, ",") {
		if b != "geosearch" && b != "http" && b != "none" {
			errs = append(errs, fmt.Errorf("--baseline lists geosearch, http or none, not %q", b))
		}
	}
	if c.Phones < 0 || c.Phones > 100000 {
		errs = append(errs, errors.New("--phones must be 0 to 100000"))
	}
	if c.Phones > 0 && (c.PhoneHours < 1.0/60 || c.PhoneHours > 12) {
		errs = append(errs, errors.New("--phone-hours must be 1 minute (0.0167) to 12"))
	}
	if c.ServerURL != "" && c.RedisURL == "" {
		errs = append(errs, errors.New("--server needs --redis-url: the Redis that server runs on, where the bench loads its city"))
	}
	if c.ServerURL == "" && c.Start == nil {
		errs = append(errs, errors.New("no way to start a server: give --server"))
	}
	return errors.Join(errs...)
}

func (c *Config) baseline(name string) bool {
	return slices.Contains(strings.Split(c.Baseline, ","), name)
}

// crossPhaseDuplicates finds customers offered in two phases within the gap.
func crossPhaseDuplicates(phases []*Phase) int64 {
	seen := map[int]string{}
	var n int64
	for _, p := range phases {
		offered := map[int]bool{}
		for _, o := range p.issued {
			if offered[o.customer] {
				continue // counted within the phase
			}
			offered[o.customer] = true
			if _, ok := seen[o.customer]; ok {
				n++ // phases are shorter than the gap together
			}
		}
		for c := range offered {
			seen[c] = p.Name
		}
	}
	return n
}

// awaitPushes waits until every offer's push reached the FCM double, or
// until wait passes, and counts what arrived.
func awaitPushes(ctx context.Context, fcm *fcmtest.Server, offers []issued, wait time.Duration) Pushes {
	want := map[string]bool{}
	for _, o := range offers {
		want[o.CouponCode] = true
	}
	deadline := time.Now().Add(wait)
	var got map[string]int
	var total int
	for {
		got, total = map[string]int{}, 0
		for _, m := range fcm.Messages() {
			got[m.Data["coupon_code"]]++
			total++
		}
		arrived := 0
		for c := range want {
			if got[c] > 0 {
				arrived++
			}
		}
		if arrived == len(want) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	p := Pushes{Measured: true, Sent: total}
	for c, n := range got {
		p.Duplicates += n - 1
		if !want[c] {
			p.Unknown += n
		}
	}
	for c := range want {
		if got[c] == 0 {
			p.Pending++
		}
	}
	return p
}

func (r *Report) write(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	var txt strings.Builder
	r.WriteText(&txt)
	var svg strings.Builder
	if err := r.WriteSVG(&svg); err != nil {
		return err
	}
	for name, body := range map[string]string{"report.json": string(js) + "\n", "report.txt": txt.String(), "report.svg": svg.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// loadCatalog saves the city's stores and rules through the catalog, as
// the API would, without a snapshot rebuild per rule.
func loadCatalog(ctx context.Context, rdb redis.UniversalClient, city *City) error {
	for _, s := range city.Stores {
		if err := s.Normalize(); err != nil {
			return fmt.Errorf("store %s: %w", s.ID, err)
		}
	}
	cat := rules.NewCatalog(rdb)
	if _, err := cat.PutStores(ctx, city.Stores); err != nil {
		return err
	}
	for _, r := range city.Rules {
		if err := cat.PutRule(ctx, r, false); err != nil {
			return fmt.Errorf("rule %s: %w", r.ID, err)
		}
	}
	return nil
}

// loadCustomers saves every customer's profile and phone, in parallel
// batches.
func loadCustomers(ctx context.Context, rdb redis.UniversalClient, city *City, progress func(int)) error {
	cs := engine.NewCustomers(rdb)
	const chunk = 10000
	var mu sync.Mutex
	done, reported := 0, 0
	return fanOut(ctx, 4, city.Customers, chunk, func() func(int) error {
		return func(start int) error {
			end := min(start+chunk, city.Customers)
			custs := make([]*rules.Customer, 0, end-start)
			ids := make([]string, 0, end-start)
			devs := make([]*rules.Device, 0, end-start)
			for n := start; n < end; n++ {
				c, d := city.Customer(n)
				if err := c.Normalize(); err != nil {
					return err
				}
				custs, ids, devs = append(custs, c), append(ids, c.ID), append(devs, d)
			}
			if _, err := cs.PutMany(ctx, custs); err != nil {
				return err
			}
			if _, err := cs.PutDevices(ctx, ids, devs); err != nil {
				return err
			}
			mu.Lock()
			done += end - start
			if done-reported >= city.Customers/5 && done < city.Customers {
				reported = done
				progress(done)
			}
			mu.Unlock()
			return nil
		}
	})
}

// fanOut hands the jobs 0, step, 2·step, … below n to workers, each
// running the function start gives it (once per worker, for its own
// state), until all are done, one fails or ctx ends; it answers the
// first error.
func fanOut(ctx context.Context, workers, n, step int, start func() func(job int) error) error {
	jobs := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do := start()
			for j := range jobs {
				if err := do(j); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for j := 0; j < n; j += step {
		select {
		case jobs <- j:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}

func waitReady(ctx context.Context, base string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nearcast at %s not ready after 60 s: %v", base, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func redisInfo(ctx context.Context, rdb *redis.Client) map[string]string {
	out := map[string]string{}
	s, err := rdb.Info(ctx, "server", "memory", "cpu").Result()
	if err != nil {
		return out
	}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

func infoInt(info map[string]string, k string) int64 {
	n, _ := strconv.ParseInt(info[k], 10, 64)
	return n
}

// commandStats reads INFO commandstats: each command's calls and the
// microseconds Redis spent in them.
func commandStats(ctx context.Context, rdb *redis.Client) map[string][2]float64 {
	out := map[string][2]float64{}
	s, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return out
	}
	for _, line := range strings.Split(s, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var calls, usec float64
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				calls, _ = strconv.ParseFloat(v, 64)
			case "usec":
				usec, _ = strconv.ParseFloat(v, 64)
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = [2]float64{calls, usec}
	}
	return out
}

// perPingCommands is what each command cost a ping between two readings,
// the costliest first, at most eight.
func perPingCommands(before, after map[string][2]float64, pings int64) []CommandCost {
	var out []CommandCost
	for name, a := range after {
		b := before[name]
		if calls := a[0] - b[0]; calls > 0 {
			out = append(out, CommandCost{Command: name, Calls: calls / float64(pings), Us: (a[1] - b[1]) / float64(pings)})
		}
	}
	slices.SortFunc(out, func(x, y CommandCost) int { return cmp.Compare(y.Us, x.Us) })
	return out[:min(len(out), 8)]
}

// redisCPU is the seconds of CPU Redis has used.
func redisCPU(ctx context.Context, rdb *redis.Client) float64 {
	info := redisInfo(ctx, rdb)
	u, _ := strconv.ParseFloat(info["used_cpu_user"], 64)
	s, _ := strconv.ParseFloat(info["used_cpu_sys"], 64)
	return u + s
}

func geoKeyBytes(ctx context.Context, rdb *redis.Client) int64 {
	n, _ := rdb.MemoryUsage(ctx, geoKey, 0).Result()
	return n
}

// processCPU is the seconds of CPU (user and system) a process has
// used, from /proc; -1 where that cannot be read.
func processCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil || pid == 0 {
		return -1
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis (utime and stime are fields 14, 15).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return (u + st) / clockTicks
}

// clockTicks is the kernel's USER_HZ, 100 on Linux.
const clockTicks = 100

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

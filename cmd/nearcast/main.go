// Command nearcast is the proximity-offers server. `nearcast serve` runs
// it with the settings of the environment (see the README).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // profiles, only when NEARCAST_PPROF_ADDR is set
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	_ "time/tzdata" // time zones without the system's tzdata (small images)

	"github.com/alicebob/miniredis/v2"
	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"google.golang.org/api/option"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/engine/push"
	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/sandbox"
	"github.com/nearcast/nearcast/rules"
)

const usage = `usage: nearcast serve

nearcast serve runs the Nearcast server. Settings come from the environment:
NEARCAST_ADDR, NEARCAST_REDIS_URL, NEARCAST_DEMO, NEARCAST_PUSH,
GOOGLE_APPLICATION_CREDENTIALS, NEARCAST_FCM_PROJECT, NEARCAST_FCM_ENDPOINT,
NEARCAST_APP_KEYS, NEARCAST_ADMIN_KEYS, NEARCAST_COUPON_SECRET,
NEARCAST_PUSH_WORKERS, NEARCAST_PUSH_RATE, NEARCAST_PUSH_TTL, NEARCAST_VISIT_TIMEOUT,
NEARCAST_MAX_ENTER_SPEED, NEARCAST_MAX_OFFERS_PER_DAY, NEARCAST_PINGS_PER_MINUTE,
NEARCAST_PINGS_PER_MINUTE_DEVICE, NEARCAST_REDIS_WAIT_REPLICAS, NEARCAST_QUIET_HOURS, NEARCAST_MIN_OFFER_GAP, NEARCAST_CLAIM_IDLE,
NEARCAST_LOG_FORMAT, NEARCAST_LOG_LEVEL, NEARCAST_PPROF_ADDR, NEARCAST_APP_AUTH,
NEARCAST_ALLOW_KEY_ONLY, NEARCAST_TOKEN_SECRETS, NEARCAST_COUPON_CALLS_PER_MINUTE,
NEARCAST_REFUSE_SUSPICIOUS_REDEMPTIONS, NEARCAST_VERIFY_ID_TOKENS, NEARCAST_PLAY_INTEGRITY_PACKAGE,
NEARCAST_PLAY_INTEGRITY_ENDPOINT, NEARCAST_PLAY_INTEGRITY_STRICT, NEARCAST_WEBHOOK_MAX_AGE,
NEARCAST_WEBHOOK_TIMEOUT, NEARCAST_WEBHOOK_ALLOW_NETS, NEARCAST_EVENTS_MAXLEN, NEARCAST_EVENTS,
NEARCAST_FEEDBACK_STORE_GAP, NEARCAST_FEEDBACK_PER_MONTH (see README.md).

The load bench is a binary of its own, nearcast-bench (cmd/nearcast-bench).
`

func main() {
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "nearcast:", err)
		os.Exit(1)
	}
}

// serve runs the server until ctx ends, then shuts down in order: stop
// accepting requests, finish those in flight, finish the pushes in flight,
// close Redis.
func serve(ctx context.Context, env func(string) string, out io.Writer) error {
	cfg, err := loadConfig(env)
	if err != nil {
		return fmt.Errorf("settings:\n%w", err)
	}
	log := newLogger(cfg, out)
	rdb, mini, err := openRedis(cfg)
	if err != nil {
		return err
	}
	if mini != nil {
		defer mini.Close()
	}
	defer rdb.Close()
	live := rules.NewLive(rdb, log)
	if err := waitForRedis(ctx, live, log); err != nil {
		return err
	}
	if mini == nil {
		checkRedis(ctx, rdb, log)
	}
	customers := engine.NewCustomers(rdb)
	if cfg.Demo {
		if err := seedDemo(ctx, live, customers); err != nil {
			return fmt.Errorf("demo data: %w", err)
		}
		if err := live.Refresh(ctx); err != nil {
			return err
		}
	}
	s, err := assemble(ctx, cfg, log, rdb, live, customers)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	demoToken, err := demoCustomerToken(ctx, cfg, customers, s.tokens)
	if err != nil {
		ln.Close()
		return err
	}
	welcome(out, cfg, ln.Addr().String(), demoToken)
	return s.run(ctx, cfg, log, ln, mini)
}

// openRedis connects to the Redis the settings name, or starts the
// embedded one (mini, which the caller closes).
func openRedis(cfg *config) (rdb redis.UniversalClient, mini *miniredis.Miniredis, err error) {
	if !cfg.embedded() {
		rdb, err = redisClient(cfg.RedisURL)
		return rdb, nil, err
	}
	mini = miniredis.NewMiniRedis()
	if err := mini.StartAddr("127.0.0.1:0"); err != nil {
		return nil, nil, fmt.Errorf("start embedded redis: %w", err)
	}
	return redis.NewClient(&redis.Options{Addr: mini.Addr(), ContextTimeoutEnabled: true}), mini, nil
}

// server is the parts serve runs: the API, and what works behind it.
type server struct {
	app        *fiber.App
	live       *rules.Live
	dispatcher *engine.Dispatcher
	tokens     *api.CustomerTokens
	// hooks follows the webhook subscriptions; events relays the facts
	// the engine journals to the event streams (each kept near
	// NEARCAST_EVENTS_MAXLEN entries); deliverer sends them to the
	// subscriptions.
	hooks     *webhook.Live
	events    *engine.Events
	deliverer *webhook.Deliverer
	engine    *engine.Engine
	customers *engine.Customers
}

// assemble builds the engine, the dispatcher and the API from the
// settings.
func assemble(ctx context.Context, cfg *config, log *slog.Logger, rdb redis.UniversalClient, live *rules.Live, customers *engine.Customers) (*server, error) {
	sender, pushLog, err := pushSender(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := engine.NewMetrics(reg, rdb, live)

	// Events out: the subscriptions, loaded before the first ping so that
	// the engine journals from the start the events they want; the relay
	// of the journals to the streams.
	s := &server{live: live}
	hookStore := webhook.NewStore(rdb).WithMaxLen(cfg.EventsMaxLen).WithAllowNets(cfg.Webhooks.AllowNets)
	s.hooks = webhook.NewLive(hookStore, log)
	if err := s.hooks.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("webhook subscriptions: %w", err)
	}
	wanted := webhook.WantedBy(s.hooks)
	if cfg.AllEvents {
		wanted = func() string { return "*" }
	}
	s.events = engine.NewEvents(rdb, webhook.NewEmitter(rdb, cfg.EventsMaxLen), wanted, log)
	customers.WithEvents(s.events)
	s.customers = customers

	ecfg := cfg.Engine
	ecfg.Metrics = metrics
	ecfg.Events = s.events
	if ecfg.WaitReplicas < 0 {
		ecfg.WaitReplicas = replicasToWaitFor(ctx, rdb)
	}
	log.Info("offers wait for replicas", "replicas", ecfg.WaitReplicas)
	coupons := engine.NewCodeSigner(cfg.CouponSecret)
	eng := engine.New(rdb, live, coupons, ecfg, log, nil)
	s.engine = eng
	if err := engine.LoadScripts(ctx, rdb); err != nil {
		// Each is learnt on its first use instead, a round trip more.
		log.Warn("the engine's scripts not loaded at start", "err", err)
	}
	dcfg := cfg.Dispatch
	dcfg.Metrics = metrics
	dcfg.Events = s.events
	s.dispatcher = engine.NewDispatcher(rdb, sender, dcfg, log, nil)

	// The deliverer of the subscriptions, whose counters /metrics exports;
	// a subscription's store tags are the catalog snapshot's.
	wcfg := cfg.Webhooks
	wcfg.StoreTags = storeTags(live)
	s.deliverer = webhook.NewDeliverer(rdb, s.hooks, wcfg, log)
	reg.MustRegister(s.deliverer)

	verify, tokens, err := credentials(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.tokens = tokens
	var warnings []string
	if cfg.AppAuth.KeyOnly() && !cfg.embedded() {
		warnings = append(warnings, "NEARCAST_APP_AUTH=key: the app key alone acts for any customer, and anyone who unpacks the app has it; use token or firebase before real customers use this server")
	}
	for _, w := range warnings {
		log.Warn(w)
	}
	integrity, err := playIntegrity(ctx, cfg, rdb, log)
	if err != nil {
		return nil, err
	}
	s.app = api.New(api.Deps{
		Live: live, Customers: customers, Engine: eng, Ledger: engine.NewLedger(rdb, coupons, log, nil).RefuseSuspicious(cfg.RefuseSuspicious).WithEvents(s.events), Redis: rdb, Pushes: pushLog, Sandbox: sandbox.Miniredis,
		Ready:   func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		AppKeys: cfg.AppKeys, AdminKeys: cfg.AdminKeys, Log: log, Metrics: reg,
		AppAuth: cfg.AppAuth, Tokens: tokens, VerifyIDToken: verify,
		CouponRate: engine.NewCredentialRate(rdb, cfg.CouponCallsPerMin, nil), Warnings: warnings,
		Integrity: integrity, Webhooks: hookStore, WebhookHealth: s.deliverer.Health,
	})
	return s, nil
}

// storeTags answers a store's tags from the catalog snapshot in force,
// for webhook subscriptions that filter by tag: nil for a store it does
// not have (deleted, or not loaded yet).
func storeTags(live *rules.Live) func(storeID string) []string {
	return func(storeID string) []string {
		snap := live.Current()
		if snap == nil {
			return nil
		}
		pos, ok := snap.StoreByID(storeID)
		if !ok {
			return nil
		}
		return snap.Stores[pos].Tags
	}
}

// playIntegrity is the checker of Android apps' Play Integrity tokens,
// nil without NEARCAST_PLAY_INTEGRITY_PACKAGE: Google's API with the
// server's credentials, or the endpoint given without any (a test double).
func playIntegrity(ctx context.Context, cfg *config, rdb redis.UniversalClient, log *slog.Logger) (*api.PlayIntegrity, error) {
	if cfg.PlayIntegrityPackage == "" {
		return nil, nil
	}
	var opts []option.ClientOption
	switch {
	case cfg.PlayIntegrityEndpoint != "":
		opts = append(opts, option.WithoutAuthentication())
	case cfg.Credentials != "":
		opts = append(opts, option.WithCredentialsFile(cfg.Credentials))
	}
	p, err := api.NewPlayIntegrity(ctx, cfg.PlayIntegrityPackage, cfg.PlayIntegrityEndpoint, rdb, opts...)
	if err != nil {
		return nil, fmt.Errorf("NEARCAST_PLAY_INTEGRITY_PACKAGE: %w", err)
	}
	p.Strict, p.Log = cfg.PlayIntegrityStrict, log
	return p, nil
}

// pushSender is FCM, or the log sender (whose memory /v1/dev/pushes shows).
func pushSender(ctx context.Context, cfg *config, log *slog.Logger) (engine.Sender, api.PushLog, error) {
	if cfg.Push == "fcm" {
		fcm, err := push.NewFCM(ctx, push.FCMConfig{
			ProjectID: cfg.FCMProject, Endpoint: cfg.FCMEndpoint, CredentialsFile: cfg.Credentials, TTL: cfg.Engine.PushTTL,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("fcm: %w", err)
		}
		return fcm, nil, nil
	}
	l := push.NewLog(1000, log)
	return l, l, nil
}

// credentials are what checks the customer credentials app calls carry:
// Firebase ID tokens, and the customer tokens' signer.
func credentials(ctx context.Context, cfg *config) (verify func(context.Context, string) (string, error), tokens *api.CustomerTokens, err error) {
	if cfg.AppAuth.Firebase {
		verify, err = idTokenVerifier(ctx, cfg.FCMProject, cfg.Credentials)
		if err != nil {
			return nil, nil, fmt.Errorf("NEARCAST_APP_AUTH=firebase: %w", err)
		}
	}
	if len(cfg.TokenSecrets) > 0 && (cfg.AppAuth.Tokens || cfg.AppAuth.KeyOnly()) {
		// A server that takes no customer tokens mints none either.
		if tokens, err = api.NewCustomerTokens(cfg.TokenSecrets, nil); err != nil {
			return nil, nil, fmt.Errorf("NEARCAST_TOKEN_SECRETS: %w", err)
		}
	}
	return verify, tokens, nil
}

// migrateKeys moves what earlier releases kept in Redis under keys
// this one no longer writes, in the background: until it has, the engine
// reads those keys too (docs/changelog.md).
func migrateKeys(ctx context.Context, customers *engine.Customers, log *slog.Logger) {
	n, err := customers.MigrateTokenOwners(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Warn("token owners of an earlier release not moved; the next start tries again", "moved", n, "err", err)
	case n > 0:
		log.Info("token owners of an earlier release moved into nc:fcmtokens:*", "moved", n)
	}
}

// demoCustomerToken is the token flow, shown: what a company's backend
// would hand Anna's app ("" but for the demo).
func demoCustomerToken(ctx context.Context, cfg *config, customers *engine.Customers, tokens *api.CustomerTokens) (string, error) {
	if !cfg.Demo || tokens == nil {
		return "", nil
	}
	gen, err := customers.TokenGeneration(ctx, "c-42", api.DefaultTokenTTL)
	if err != nil {
		return "", fmt.Errorf("demo token: %w", err)
	}
	token, _, err := tokens.Mint("c-42", gen, api.DefaultTokenTTL)
	if err != nil {
		return "", fmt.Errorf("demo token: %w", err)
	}
	return token, nil
}

// run serves on ln, with the snapshot watcher, the dispatcher and the
// rest in the background, until ctx ends; then it stops them in order.
func (s *server) run(ctx context.Context, cfg *config, log *slog.Logger, ln net.Listener, mini *miniredis.Miniredis) error {
	bg, stopBg := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); _ = f(bg) }()
	}
	stop := func() { stopBg(); wg.Wait() }
	run(s.live.Run)
	run(s.dispatcher.Run)
	run(s.hooks.Run)
	run(s.events.Run)
	run(s.deliverer.Run)
	if cfg.PprofAddr != "" {
		pl, err := net.Listen("tcp", cfg.PprofAddr)
		if err != nil {
			stop()
			return fmt.Errorf("NEARCAST_PPROF_ADDR %s: %w", cfg.PprofAddr, err)
		}
		log.Info("profiles at http://" + pl.Addr().String() + "/debug/pprof/")
		ps := &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
		run(func(ctx context.Context) error {
			go func() { <-ctx.Done(); ps.Close() }()
			return ps.Serve(pl)
		})
	}
	if mini != nil {
		run(func(ctx context.Context) error { tickMiniredis(ctx, mini); return nil })
	}
	run(func(ctx context.Context) error { migrateKeys(ctx, s.customers, log); return nil })
	served := make(chan error, 1)
	go func() { served <- s.app.Listener(ln) }()
	var err error
	select {
	case err = <-served:
	case <-ctx.Done():
		log.Info("shutting down")
		err = s.app.ShutdownWithTimeout(cfg.ShutdownGrace)
	}
	// What runs behind the last answers (offers announced, funnels
	// counted) finishes before the background work stops; should it not
	// in time, the dispatchers announce the offers past their deadlines.
	settle, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	if err := s.engine.Settled(settle); err != nil {
		log.Warn("stopped before the work behind the last answers was done", "err", err)
	}
	cancel()
	stop()
	log.Info("stopped")
	return err
}

// tickMiniredis tells the embedded Redis every second that a second
// passed: miniredis counts TTLs only when told.
func tickMiniredis(ctx context.Context, mini *miniredis.Miniredis) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			mini.FastForward(time.Second)
		}
	}
}

func newLogger(cfg *config, out io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(out, opts))
	}
	return slog.New(slog.NewJSONHandler(out, opts))
}

// appAuthDesc says in a line what app calls must carry.
func appAuthDesc(a api.AppAuth) string {
	switch {
	case a.KeyOnly():
		return "the app key alone (NEARCAST_APP_AUTH=key); a customer token is checked when sent"
	case a.Tokens && a.Firebase:
		return "the app key and the customer's token (X-Customer-Token) or Firebase ID token (X-Firebase-ID-Token)"
	case a.Firebase:
		return "the app key and the customer's Firebase ID token (X-Firebase-ID-Token)"
	}
	return "the app key and the customer's token (X-Customer-Token, from POST /v1/customers/{id}/tokens)"
}

// redisClient connects to redis:// or rediss:// URLs, or to Redis Cluster
// through a comma-separated list of host:port seeds.
func redisClient(url string) (redis.UniversalClient, error) {
	if strings.HasPrefix(url, "redis://") || strings.HasPrefix(url, "rediss://") {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("NEARCAST_REDIS_URL: %w", err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout, opt.MaxRetries = redisTimeouts()
		opt.DialerRetries = 1 // a Redis that is down is told at once, not after five tries
		opt.ContextTimeoutEnabled = true
		return redis.NewClient(opt), nil
	}
	seeds := list(url)
	if len(seeds) == 0 {
		return nil, errors.New("NEARCAST_REDIS_URL: give redis://host:port or host:port seeds of a cluster")
	}
	opt := &redis.ClusterOptions{Addrs: seeds}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout, opt.MaxRetries = redisTimeouts()
	opt.DialerRetries = 1
	opt.ContextTimeoutEnabled = true
	cc := redis.NewClusterClient(opt)
	cc.AddHook(reloadOnFailure{cc})
	return cc, nil
}

// replicasToWaitFor is NEARCAST_REDIS_WAIT_REPLICAS unset: one when every
// master of a cluster has a replica, else none.
func replicasToWaitFor(ctx context.Context, rdb redis.UniversalClient) int {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return 0
	}
	slots, err := cc.ClusterSlots(ctx).Result()
	if err != nil || len(slots) == 0 {
		return 0
	}
	for _, s := range slots {
		if len(s.Nodes) < 2 {
			return 0
		}
	}
	return 1
}

// reloadOnFailure makes a cluster client read the slot map again as soon
// as a node stops answering (or a node says the cluster is down), rather
// than when the map is ten seconds old: pings find the replica that took
// over from a dead master within a moment of the failover.
type reloadOnFailure struct{ cc *redis.ClusterClient }

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.check(ctx, c.Err())
		}
		return err
	}
}

func (h reloadOnFailure) check(ctx context.Context, err error) {
	if err == nil || errors.Is(err, redis.Nil) {
		return
	}
	var re redis.Error
	if !errors.As(err, &re) || redis.HasErrorPrefix(err, "CLUSTERDOWN") || redis.HasErrorPrefix(err, "MOVED") {
		h.cc.ReloadState(ctx) // one reload at a time, however many ask
	}
}

// redisTimeouts keep a ping from hanging on a Redis that is down: the
// answer is a quick 503, not a stalled customer. A request's deadline (its
// Redis budget, api.DefaultRequestTimeout) bounds its calls too, retries
// included, since the clients honour deadlines (ContextTimeoutEnabled):
// a Redis that hangs is told as soon.
func redisTimeouts() (dial, read, write, pool time.Duration, retries int) {
	return 500 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond, 1
}

// checkRedis warns of a Redis setting that costs memory. A customer's
// profile and device hashes hold values of some 250 bytes; below
// hash-max-listpack-value 512 Redis keeps them in its large encoding.
func checkRedis(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) {
	v, err := rdb.ConfigGet(ctx, "hash-max-listpack-value").Result()
	if err != nil {
		return // CONFIG is often off on managed Redis: nothing to tell
	}
	if n, err := strconv.Atoi(v["hash-max-listpack-value"]); err == nil && n < 512 {
		log.Warn("redis hash-max-listpack-value is below 512: each customer takes about 1.25 KiB of Redis instead of about 0.85 KiB; set it to 1024", "hash-max-listpack-value", n)
	}
}

// waitForRedis loads the first snapshot, retrying while Redis is not up.
func waitForRedis(ctx context.Context, live *rules.Live, log *slog.Logger) error {
	for {
		err := live.Refresh(ctx)
		if err == nil {
			return nil
		}
		log.Warn("waiting for redis", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func welcome(out io.Writer, cfg *config, addr, demoToken string) {
	host := addr
	if h, p, err := net.SplitHostPort(addr); err == nil && (h == "::" || h == "0.0.0.0" || h == "") {
		host = "127.0.0.1:" + p
	}
	redisDesc := "embedded Redis (in memory, gone when the server stops)"
	if !cfg.embedded() {
		redisDesc = "Redis at " + cfg.RedisURL
	}
	quiet := "off"
	if q := cfg.Engine.QuietHours; q[0] != q[1] {
		quiet = fmt.Sprintf("%02d:%02d-%02d:%02d in each customer's time zone", q[0]/60, q[0]%60, q[1]/60, q[1]%60)
	}
	fmt.Fprintf(out, "\nNearcast is listening on http://%s\n  redis: %s\n  push:  %s\n  quiet hours: %s\n", host, redisDesc, cfg.Push, quiet)
	if cfg.embedded() && len(cfg.AppKeys) > 0 && cfg.AppKeys[0] == "demo-app" {
		fmt.Fprintf(out, "  keys:  app key demo-app, admin key demo-admin\n")
	}
	fmt.Fprintf(out, "  app calls: %s\n", appAuthDesc(cfg.AppAuth))
	if cfg.Demo {
		fmt.Fprintf(out, "  demo:  customer c-42 (Anna, device d-1), stores s-alex, s-hackescher, s-potsdamer (Berlin), s-jungfernstieg, s-hh-hbf (Hamburg)\n")
		if demoToken != "" {
			fmt.Fprintf(out, "  c-42's customer token (24 h): %s\n", demoToken)
		}
		credential := ""
		if demoToken != "" {
			credential = " -H 'X-Customer-Token: " + demoToken + "'"
		}
		fmt.Fprintf(out, "\nTry:\n  curl -s -H 'Authorization: Bearer demo-app'%s -H 'Content-Type: application/json' \\\n    -d '{\"customer_id\":\"c-42\",\"device_id\":\"d-1\",\"lat\":52.5215,\"lng\":13.4130}' http://%s/v1/pings\n", credential, host)
		fmt.Fprintf(out, "  curl -s -H 'Authorization: Bearer demo-admin' 'http://%s/v1/dev/pushes?customer_id=c-42'\n\n", host)
	}
}

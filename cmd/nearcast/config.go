package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/rules"
)

// config is the server's settings, read from the environment as the
// contract lists them.
type config struct {
	Addr         string
	RedisURL     string // "" means the embedded Redis
	Demo         bool
	Push         string // log or fcm
	Credentials  string
	FCMProject   string
	FCMEndpoint  string
	AppKeys      []string
	AdminKeys    []string
	CouponSecret []byte
	// Engine and Dispatch are the engine's settings: its defaults
	// (engine.DefaultConfig(), engine.DefaultDispatchConfig), each changed by
	// its NEARCAST_ setting. Engine.WaitReplicas -1 (the server's default)
	// means as many as every master of the cluster has, up to one.
	Engine        engine.Config
	Dispatch      engine.DispatchConfig
	LogFormat     string
	LogLevel      string
	PprofAddr     string // "" : no profiling endpoint
	ShutdownGrace time.Duration
	// AppAuth is the customer credential app calls need (NEARCAST_APP_AUTH).
	AppAuth api.AppAuth
	// KeyOnlyAllowed is NEARCAST_ALLOW_KEY_ONLY: the app key alone on a
	// real Redis, warned of.
	KeyOnlyAllowed bool
	// TokenSecrets sign (the first) and verify customer tokens.
	TokenSecrets [][]byte
	// CouponCallsPerMin limits each credential's coupon calls; 0: none.
	CouponCallsPerMin int
	// RefuseSuspicious is NEARCAST_REFUSE_SUSPICIOUS_REDEMPTIONS: a coupon
	// issued to a suspicious fix is refused at the till (422).
	RefuseSuspicious bool
	// PlayIntegrity* check the Play Integrity tokens Android apps send
	// with pings: the app's package ("": none checked), Google's endpoint
	// (a test double's), and whether the app must be Play-recognized.
	PlayIntegrityPackage  string
	PlayIntegrityEndpoint string
	PlayIntegrityStrict   bool
	// Webhooks tunes the webhook deliverer: its defaults
	// (webhook.DefaultConfig()) with NEARCAST_WEBHOOK_MAX_AGE,
	// NEARCAST_WEBHOOK_TIMEOUT and NEARCAST_WEBHOOK_ALLOW_NETS.
	Webhooks webhook.Config
	// EventsMaxLen bounds each shard's stream of events
	// (NEARCAST_EVENTS_MAXLEN).
	EventsMaxLen int64
	// AllEvents writes every event type to the streams, for workers that
	// read them directly (NEARCAST_EVENTS=all); else only the types some
	// subscription wants.
	AllEvents bool
}

func (c *config) embedded() bool { return c.RedisURL == "" }

// loadConfig reads the settings, each concern in turn, and names every
// setting it refuses at once.
func loadConfig(env func(string) string) (*config, error) {
	c := &config{
		Addr:                  or(env("NEARCAST_ADDR"), ":8080"),
		RedisURL:              strings.TrimSpace(env("NEARCAST_REDIS_URL")),
		Credentials:           env("GOOGLE_APPLICATION_CREDENTIALS"),
		PlayIntegrityPackage:  strings.TrimSpace(env("NEARCAST_PLAY_INTEGRITY_PACKAGE")),
		PlayIntegrityEndpoint: env("NEARCAST_PLAY_INTEGRITY_ENDPOINT"),
		PlayIntegrityStrict:   env("NEARCAST_PLAY_INTEGRITY_STRICT") == "1",
		FCMProject:            env("NEARCAST_FCM_PROJECT"),
		FCMEndpoint:           env("NEARCAST_FCM_ENDPOINT"),
		AppKeys:               list(env("NEARCAST_APP_KEYS")),
		AdminKeys:             list(env("NEARCAST_ADMIN_KEYS")),
		LogLevel:              or(env("NEARCAST_LOG_LEVEL"), "info"),
		PprofAddr:             env("NEARCAST_PPROF_ADDR"),
		ShutdownGrace:         15 * time.Second,
		Engine:                engine.DefaultConfig(),
		Dispatch:              engine.DefaultDispatchConfig(),
	}
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	c.demo(env, bad)
	c.pushSender(env, bad)
	c.secrets(env, bad)
	c.delivery(env, bad)
	c.Engine.VisitTimeout = duration(env, "NEARCAST_VISIT_TIMEOUT", c.Engine.VisitTimeout, bad)
	c.Dispatch.ClaimIdle = duration(env, "NEARCAST_CLAIM_IDLE", c.Dispatch.ClaimIdle, bad)
	c.quietHours(env, bad)
	c.limits(env, bad)
	c.appAuth(env, bad)
	c.CouponCallsPerMin = count(env, "NEARCAST_COUPON_CALLS_PER_MINUTE", engine.DefaultCouponCallsPerMinute, bad)
	switch v := env("NEARCAST_REFUSE_SUSPICIOUS_REDEMPTIONS"); v {
	case "", "0", "false":
	case "1", "true":
		c.RefuseSuspicious = true
	default:
		bad("NEARCAST_REFUSE_SUSPICIOUS_REDEMPTIONS", "must be 1 or 0, not %q", v)
	}
	c.webhooks(env, bad)
	c.logFormat(env, bad)
	return c, errors.Join(errs...)
}

// webhooks reads how events go out: NEARCAST_WEBHOOK_MAX_AGE (how long
// an event is tried), NEARCAST_WEBHOOK_TIMEOUT (one request),
// NEARCAST_WEBHOOK_ALLOW_NETS (private networks receivers may be in) and
// NEARCAST_EVENTS_MAXLEN (each shard's stream) and NEARCAST_EVENTS
// (which types are written).
func (c *config) webhooks(env func(string) string, bad func(string, string, ...any)) {
	c.Webhooks = webhook.DefaultConfig()
	c.Webhooks.MaxAge = duration(env, "NEARCAST_WEBHOOK_MAX_AGE", c.Webhooks.MaxAge, bad)
	c.Webhooks.Timeout = duration(env, "NEARCAST_WEBHOOK_TIMEOUT", c.Webhooks.Timeout, bad)
	if c.Webhooks.Timeout > time.Minute {
		bad("NEARCAST_WEBHOOK_TIMEOUT", "must be at most 1m: a receiver that takes longer holds up its subscription")
	}
	for _, v := range list(env("NEARCAST_WEBHOOK_ALLOW_NETS")) {
		_, n, err := net.ParseCIDR(v)
		if err != nil {
			bad("NEARCAST_WEBHOOK_ALLOW_NETS", "must be networks in CIDR notation, comma-separated, such as 10.20.0.0/16,fd00:1::/64; %q is not one", v)
			continue
		}
		c.Webhooks.AllowNets = append(c.Webhooks.AllowNets, n)
	}
	switch v := env("NEARCAST_EVENTS"); v {
	case "", "subscribed":
	case "all":
		c.AllEvents = true
	default:
		bad("NEARCAST_EVENTS", "must be subscribed (the event types some webhook subscription wants: the default) or all (every type, for workers reading the streams), not %q", v)
	}
	c.EventsMaxLen = webhook.DefaultMaxLen
	if v := env("NEARCAST_EVENTS_MAXLEN"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1000 {
			bad("NEARCAST_EVENTS_MAXLEN", "must be a whole number of events, at least 1000")
		} else {
			c.EventsMaxLen = n
		}
	}
}

// demo reads NEARCAST_DEMO: demo data, by default on the embedded Redis.
func (c *config) demo(env func(string) string, bad func(string, string, ...any)) {
	c.Demo = c.embedded()
	switch v := env("NEARCAST_DEMO"); v {
	case "":
	case "1", "true":
		c.Demo = true
	case "0", "false":
		c.Demo = false
	default:
		bad("NEARCAST_DEMO", "must be 1 or 0, not %q", v)
	}
}

// pushSender reads NEARCAST_PUSH, the sender (fcm by default when
// credentials are given, else log), and what FCM needs.
func (c *config) pushSender(env func(string) string, bad func(string, string, ...any)) {
	c.Push = env("NEARCAST_PUSH")
	if c.Push == "" {
		c.Push = "log"
		if c.Credentials != "" {
			c.Push = "fcm"
		}
	}
	if c.Push != "log" && c.Push != "fcm" {
		bad("NEARCAST_PUSH", "must be log or fcm, not %q", c.Push)
	}
	if c.Push == "fcm" && c.FCMProject == "" && c.Credentials == "" {
		bad("NEARCAST_FCM_PROJECT", "is required with NEARCAST_PUSH=fcm when no GOOGLE_APPLICATION_CREDENTIALS are given")
	}
}

// secrets checks the API keys and reads NEARCAST_COUPON_SECRET: a real
// Redis needs them, the embedded one makes them up.
func (c *config) secrets(env func(string) string, bad func(string, string, ...any)) {
	if len(c.AppKeys) == 0 && len(c.AdminKeys) == 0 {
		if c.embedded() {
			c.AppKeys, c.AdminKeys = []string{"demo-app"}, []string{"demo-admin"}
		} else {
			bad("NEARCAST_APP_KEYS/NEARCAST_ADMIN_KEYS", "are required with a real Redis")
		}
	}
	if s := env("NEARCAST_COUPON_SECRET"); s != "" {
		c.CouponSecret = []byte(s)
	} else if c.embedded() {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		c.CouponSecret = []byte(hex.EncodeToString(b))
	} else {
		bad("NEARCAST_COUPON_SECRET", "is required with a real Redis")
	}
}

// delivery reads how pushes go out: NEARCAST_PUSH_WORKERS,
// NEARCAST_PUSH_RATE and NEARCAST_PUSH_TTL.
func (c *config) delivery(env func(string) string, bad func(string, string, ...any)) {
	if v := env("NEARCAST_PUSH_WORKERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 256 {
			bad("NEARCAST_PUSH_WORKERS", "must be a whole number from 1 to 256")
		}
		c.Dispatch.Workers = n
	}
	if v := env("NEARCAST_PUSH_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			bad("NEARCAST_PUSH_RATE", "must be pushes a second, 0 for no bound")
		}
		c.Dispatch.Rate = f
	}
	c.Engine.PushTTL = duration(env, "NEARCAST_PUSH_TTL", c.Engine.PushTTL, bad)
}

// quietHours reads NEARCAST_QUIET_HOURS (the engine's by default, off on
// the embedded Redis).
func (c *config) quietHours(env func(string) string, bad func(string, string, ...any)) {
	quiet := env("NEARCAST_QUIET_HOURS")
	switch {
	case quiet == "" && c.embedded(), quiet == "off":
		c.Engine.QuietHours = [2]int{} // the demo tour works at any hour
	case quiet != "":
		from, to, err := rules.ParseSpan(quiet)
		if err != nil {
			bad("NEARCAST_QUIET_HOURS", "must be like 21:00-08:00, or off")
		}
		c.Engine.QuietHours = [2]int{from, to}
	}
}

// limits reads the bounds on offers and pings: the least gap between two
// offers, the daily cap, the pings a minute, the replicas an offer waits
// for, and the fastest entry that counts.
func (c *config) limits(env func(string) string, bad func(string, string, ...any)) {
	e := &c.Engine
	if v := env("NEARCAST_MIN_OFFER_GAP"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			bad("NEARCAST_MIN_OFFER_GAP", "must be a duration such as 5m, or 0s")
		}
		e.MinOfferGap = d
	}
	e.MaxOffersPerDay = count(env, "NEARCAST_MAX_OFFERS_PER_DAY", e.MaxOffersPerDay, bad)
	// The questions after visits (docs/feedback.md).
	e.FeedbackStoreGap = duration(env, "NEARCAST_FEEDBACK_STORE_GAP", e.FeedbackStoreGap, bad)
	e.FeedbackPerMonth = count(env, "NEARCAST_FEEDBACK_PER_MONTH", e.FeedbackPerMonth, bad)
	e.PingsPerMinute = count(env, "NEARCAST_PINGS_PER_MINUTE", e.PingsPerMinute, bad)
	e.PingsPerMinuteDevice = count(env, "NEARCAST_PINGS_PER_MINUTE_DEVICE", e.PingsPerMinuteDevice, bad)
	e.WaitReplicas = count(env, "NEARCAST_REDIS_WAIT_REPLICAS", -1, bad) // -1: decided at start, see replicasToWaitFor
	if v := env("NEARCAST_MAX_ENTER_SPEED"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 100 {
			bad("NEARCAST_MAX_ENTER_SPEED", "must be a speed in m/s above 0, e.g. 3")
		}
		e.MaxEnterSpeedMps = f
	}
}

// logFormat reads NEARCAST_LOG_FORMAT: json, or text on the embedded
// Redis.
func (c *config) logFormat(env func(string) string, bad func(string, string, ...any)) {
	c.LogFormat = env("NEARCAST_LOG_FORMAT")
	if c.LogFormat == "" {
		c.LogFormat = "json"
		if c.embedded() {
			c.LogFormat = "text"
		}
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		bad("NEARCAST_LOG_FORMAT", "must be json or text")
	}
}

// appAuth reads who may act for a customer: NEARCAST_APP_AUTH (token by
// default, key on the embedded demo), NEARCAST_ALLOW_KEY_ONLY, and the
// customer tokens' secrets, NEARCAST_TOKEN_SECRETS. NEARCAST_VERIFY_ID_TOKENS=1,
// the older setting, means firebase when NEARCAST_APP_AUTH is not set.
func (c *config) appAuth(env func(string) string, bad func(string, string, ...any)) {
	mode := env("NEARCAST_APP_AUTH")
	switch v := env("NEARCAST_VERIFY_ID_TOKENS"); v {
	case "", "0", "false":
	case "1", "true":
		if mode == "" {
			mode = "firebase"
		}
	default:
		bad("NEARCAST_VERIFY_ID_TOKENS", "must be 1 or 0, not %q", v)
	}
	if mode == "" {
		mode = "token"
		if c.embedded() {
			mode = "key" // the README's tour stays one curl
		}
	}
	a, err := api.ParseAppAuth(mode)
	if err != nil {
		bad("NEARCAST_APP_AUTH", "%v", err)
	}
	c.AppAuth = a
	switch v := env("NEARCAST_ALLOW_KEY_ONLY"); v {
	case "", "0", "false":
	case "1", "true":
		c.KeyOnlyAllowed = true
	default:
		bad("NEARCAST_ALLOW_KEY_ONLY", "must be 1 or 0, not %q", v)
	}
	if a.KeyOnly() && !c.embedded() && !c.KeyOnlyAllowed {
		bad("NEARCAST_APP_AUTH", "key lets anyone who unpacks the app act for any customer; on a real Redis it needs NEARCAST_ALLOW_KEY_ONLY=1 as well (or use token or firebase)")
	}
	if a.Firebase && c.FCMProject == "" && c.Credentials == "" {
		bad("NEARCAST_APP_AUTH", "firebase needs the Firebase project: NEARCAST_FCM_PROJECT or GOOGLE_APPLICATION_CREDENTIALS")
	}
	for _, s := range list(env("NEARCAST_TOKEN_SECRETS")) {
		if len(s) < api.MinTokenSecret {
			bad("NEARCAST_TOKEN_SECRETS", "each secret must be at least %d characters", api.MinTokenSecret)
		}
		c.TokenSecrets = append(c.TokenSecrets, []byte(s))
	}
	if len(c.TokenSecrets) == 0 {
		if c.embedded() {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			c.TokenSecrets = [][]byte{[]byte(hex.EncodeToString(b))}
		} else if a.Tokens {
			bad("NEARCAST_TOKEN_SECRETS", "is required with NEARCAST_APP_AUTH=%s on a real Redis: the secrets that sign customer tokens, the first signs, each at least %d characters", a, api.MinTokenSecret)
		}
	}
}

func duration(env func(string) string, name string, def time.Duration, bad func(string, string, ...any)) time.Duration {
	v := env(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		bad(name, "must be a duration such as 10m or 90s")
		return def
	}
	return d
}

// count reads a whole number of at least 0 (0: no limit).
func count(env func(string) string, name string, def int, bad func(string, string, ...any)) int {
	v := env(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		bad(name, "must be a whole number, 0 for no limit")
		return def
	}
	return n
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

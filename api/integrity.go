package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
	"google.golang.org/api/playintegrity/v1"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
)

// Device integrity (docs/security.md, "Device integrity"): an Android app
// may send a Play Integrity token with a ping (X-Play-Integrity-Token).
// PlayIntegrity decodes it through Google's Play Integrity API and says
// what it proves of the fix's device: trusted, suspicious, or nothing.
//
// It lives in the API, beside the customer credentials it resembles: a
// token in a header, checked before the engine sees the ping, which gets
// only the outcome (a signal of engine.Ping). The engine stays free of
// Google's client, as it is of firebase-admin-go.

// HeaderPlayIntegrity carries an Android app's Play Integrity token.
const HeaderPlayIntegrity = "X-Play-Integrity-Token"

// IntegrityVerdict is what a device integrity token says of a fix.
type IntegrityVerdict string

// The verdicts. IntegrityNone is no verdict: no token was sent, the
// check is not configured, or Google's API could not be asked.
const (
	IntegrityNone       IntegrityVerdict = ""
	IntegrityTrusted    IntegrityVerdict = "trusted"
	IntegritySuspicious IntegrityVerdict = "suspicious"
)

// The reasons a check gives with its verdict: the first a suspicious
// token fails, in the order checked; ReasonIntegrityUnavailable with no
// verdict. A trusted token has none.
const (
	// ReasonIntegrityInvalid: Google could not decode the token (garbled,
	// cut, made up, or of an app outside the Cloud project), or it decoded
	// without the verdicts every token carries.
	ReasonIntegrityInvalid = "integrity_invalid"
	// ReasonIntegrityPackage: the token was requested by another app.
	ReasonIntegrityPackage = "integrity_package"
	// ReasonIntegrityStale: requested more than MaxAge before the check
	// (or more than a minute after it).
	ReasonIntegrityStale = "integrity_stale"
	// ReasonIntegrityReplayed: the token is another customer's or device's:
	// one of them presented it first, or (BindRequestHash) its request
	// hash names another.
	ReasonIntegrityReplayed = "integrity_replayed"
	// ReasonIntegrityDevice: the device does not meet device integrity
	// (rooted, an emulator, an altered system, or unknown to Play).
	ReasonIntegrityDevice = "integrity_device"
	// ReasonIntegrityApp: the app is not the one Google Play distributes
	// (Strict only): sideloaded, re-signed or altered.
	ReasonIntegrityApp = "integrity_app"
	// ReasonIntegrityUnavailable: Google's API did not answer in time, was
	// down, over its quota, or refused Nearcast's own credentials. No
	// verdict: the ping goes on as if it had no token.
	ReasonIntegrityUnavailable = "integrity_unavailable"
)

// Defaults of a PlayIntegrity's settings.
const (
	// DefaultIntegrityMaxAge is how long a token is good for from its
	// request: Google's own advice for the age of a verdict to act on.
	DefaultIntegrityMaxAge = 10 * time.Minute
	// DefaultIntegrityTimeout bounds a call of Google's API: a ping waits
	// no longer for it.
	DefaultIntegrityTimeout = 800 * time.Millisecond
	// DefaultIntegrityBackoff is how long a replica leaves Google's API
	// alone after it failed to answer: the pings with new tokens in that
	// time get no verdict at once instead of waiting out a timeout each.
	DefaultIntegrityBackoff = 5 * time.Second
)

const (
	// integritySkew is how far after the server's clock a token's request
	// time may be (phones' clocks are off).
	integritySkew = time.Minute
	// maxIntegrityToken bounds a token's length: real ones are some 1-3
	// KB; a longer one is not sent to Google.
	maxIntegrityToken = 16 << 10
	// integrityCacheSize bounds the tokens a replica remembers (some 100
	// bytes each); past it, about half are forgotten.
	integrityCacheSize = 1 << 16
)

// integrityKey is a Play Integrity token's record, named by a hash of the
// token (a credential of the phone's, never stored): string,
// "<verdict> <reason> <holder> <until>", the verdict and reason of its
// first check (verdict and reason "-" when none), the hash of the
// customer and device that first presented it (integrityHolder), and the
// unix ms until which the verdict stands. Written once, with SET NX, by
// whichever replica checked the token first; TTL until then: the token's
// request time plus MaxAge, or MaxAge for a token that failed. Its own
// hash tag: one key, one slot. It names no customer, so erasure has
// nothing to remove from it.
func integrityKey(id [sha256.Size]byte) string { return "nc:{pi:" + hex.EncodeToString(id[:16]) + "}" }

// integrityHolder names who presented a token, without naming them.
func integrityHolder(customerID, deviceID string) string {
	sum := sha256.Sum256([]byte("nearcast-holder\x00" + customerID + "\x00" + deviceID))
	return hex.EncodeToString(sum[:16])
}

// IntegrityRequestHash is the request hash (standard requests,
// requestHash) or nonce (classic requests) an app sets on the Play
// Integrity tokens it requests for a customer's device, when the checker
// binds tokens to them (BindRequestHash): base64url, unpadded, of the
// SHA-256 of "nearcast-play-integrity\n<customer id>\n<device id>". A
// token whose hash names another customer or device is refused as
// replayed, even when presented first.
func IntegrityRequestHash(customerID, deviceID string) string {
	sum := sha256.Sum256([]byte("nearcast-play-integrity\n" + customerID + "\n" + deviceID))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// PlayIntegrity checks Android apps' Play Integrity tokens for one app
// (its package name), through Google's API, and keeps each token's first
// use in Redis so that it serves only the customer's device that
// presented it first, for its life, and is decoded once whichever
// replica sees it. A nil *PlayIntegrity checks nothing: every token gets
// no verdict.
//
// Its settings are set before the first Check and not changed after.
type PlayIntegrity struct {
	// Strict also requires the app to be the one Google Play distributes
	// (appRecognitionVerdict PLAY_RECOGNIZED): off, a sideloaded or
	// internal build on a sound device is trusted too.
	Strict bool
	// BindRequestHash requires each token's request hash (or nonce) to be
	// IntegrityRequestHash of the customer and device presenting it.
	BindRequestHash bool
	// MaxAge is how long a token is good for from its request
	// (DefaultIntegrityMaxAge when zero).
	MaxAge time.Duration
	// Timeout bounds a call of Google's API (DefaultIntegrityTimeout when
	// zero).
	Timeout time.Duration
	// Backoff is how long Google's API is left alone after it failed to
	// answer (DefaultIntegrityBackoff when zero; negative: never).
	Backoff time.Duration
	// RedisTimeout bounds each Redis call (DefaultRequestTimeout when
	// zero).
	RedisTimeout time.Duration
	// Log is told of Google's API failing (slog.Default() when nil).
	Log *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	pkg string
	svc *playintegrity.Service
	rdb redis.UniversalClient
	// quietUntil: unix ns until which Google's API is not asked.
	quietUntil atomic.Int64

	mu   sync.Mutex
	seen map[[sha256.Size]byte]integrityRecord // records read or written, which never change
}

// integrityRecord is a token's first check.
type integrityRecord struct {
	verdict IntegrityVerdict
	reason  string
	holder  string
	until   time.Time
}

// answer is what the record says to a holder at now: its verdict to the
// first one, replayed to any other; stale once a trusted token's life is
// over (its key is gone by then, but for replicas' clocks).
func (r integrityRecord) answer(holder string, now time.Time) (IntegrityVerdict, string, error) {
	switch {
	case r.holder != holder:
		return IntegritySuspicious, ReasonIntegrityReplayed, nil
	case r.verdict == IntegrityTrusted && !now.Before(r.until):
		return IntegritySuspicious, ReasonIntegrityStale, nil
	}
	return r.verdict, r.reason, nil
}

func (r integrityRecord) String() string {
	v, reason := string(r.verdict), r.reason
	if v == "" {
		v = "-"
	}
	if reason == "" {
		reason = "-"
	}
	return fmt.Sprintf("%s %s %s %d", v, reason, r.holder, r.until.UnixMilli())
}

func parseIntegrityRecord(s string) (integrityRecord, error) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return integrityRecord{}, fmt.Errorf("play integrity: a record of %d fields: %q", len(f), s)
	}
	ms, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return integrityRecord{}, fmt.Errorf("play integrity: a record's time: %q", s)
	}
	r := integrityRecord{verdict: IntegrityVerdict(f[0]), reason: f[1], holder: f[2], until: time.UnixMilli(ms)}
	if r.verdict == "-" {
		r.verdict = IntegrityNone
	}
	if r.reason == "-" {
		r.reason = ""
	}
	return r, nil
}

// androidPackageName is the form of an Android package name.
var androidPackageName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+$`)

// NewPlayIntegrity returns the checker of app packageName's tokens, which
// keeps its records in rdb. endpoint replaces Google's
// (https://playintegrity.googleapis.com/), for a test double; opts are
// the API client's, such as option.WithCredentialsFile, or
// option.WithoutAuthentication for a double. Without any, the client
// takes Google's application default credentials: a service account of
// the Cloud project linked to the app in the Play Console, with the
// Play Integrity API enabled.
func NewPlayIntegrity(ctx context.Context, packageName, endpoint string, rdb redis.UniversalClient, opts ...option.ClientOption) (*PlayIntegrity, error) {
	if !androidPackageName.MatchString(packageName) {
		return nil, fmt.Errorf("play integrity: %q is not an Android package name, such as com.example.app", packageName)
	}
	if rdb == nil {
		return nil, errors.New("play integrity: no Redis for the tokens' records")
	}
	if endpoint != "" {
		opts = append([]option.ClientOption{option.WithEndpoint(endpoint)}, opts...)
	}
	svc, err := playintegrity.NewService(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("play integrity: %w", err)
	}
	return &PlayIntegrity{pkg: packageName, svc: svc, rdb: rdb, seen: map[[sha256.Size]byte]integrityRecord{}}, nil
}

// PackageName is the app whose tokens are checked.
func (p *PlayIntegrity) PackageName() string { return p.pkg }

// Check says what token, sent with a ping of customerID's device
// deviceID, proves of the fix: IntegrityTrusted; IntegritySuspicious with
// the reason; or IntegrityNone, with ReasonIntegrityUnavailable when
// Google's API could not be asked (logged), or no reason for no token or
// a nil checker. A failure of Redis is an error (engine.ErrUnavailable:
// the API answers 503). Google's API is asked once per token, by the
// first replica that sees it, within Timeout.
func (p *PlayIntegrity) Check(ctx context.Context, token, customerID, deviceID string) (IntegrityVerdict, string, error) {
	if p == nil || token == "" {
		return IntegrityNone, "", nil
	}
	if len(token) > maxIntegrityToken {
		return IntegritySuspicious, ReasonIntegrityInvalid, nil
	}
	holder := integrityHolder(customerID, deviceID)
	id := sha256.Sum256([]byte(token))
	if r, ok := p.remembered(id); ok {
		return r.answer(holder, p.now())
	}
	r, found, err := p.read(ctx, id)
	if err != nil {
		return IntegrityNone, "", err
	}
	if !found {
		if p.quiet() {
			return IntegrityNone, ReasonIntegrityUnavailable, nil
		}
		payload, reason := p.decode(ctx, token)
		if reason == ReasonIntegrityUnavailable {
			return IntegrityNone, reason, nil
		}
		r = p.judge(payload, reason, customerID, deviceID)
		r.holder = holder
		if r, err = p.write(ctx, id, r); err != nil {
			return IntegrityNone, "", err
		}
	}
	p.remember(id, r)
	return r.answer(holder, p.now())
}

// decode asks Google's API for the token's payload, answering it, or no
// payload with ReasonIntegrityInvalid (Google cannot decode the token) or
// ReasonIntegrityUnavailable (Google did not answer, or refused the call
// for a reason of Nearcast's), which it logs.
func (p *PlayIntegrity) decode(ctx context.Context, token string) (*playintegrity.TokenPayloadExternal, string) {
	ctx, cancel := context.WithTimeout(ctx, integrityDuration(p.Timeout, DefaultIntegrityTimeout))
	defer cancel()
	start := time.Now()
	res, err := p.svc.V1.DecodeIntegrityToken(p.pkg, &playintegrity.DecodeIntegrityTokenRequest{IntegrityToken: token}).Context(ctx).Do()
	if err == nil && res.TokenPayloadExternal != nil {
		return res.TokenPayloadExternal, ""
	}
	log := p.log().With("package", p.pkg, "took", time.Since(start).Round(time.Millisecond))
	var ge *googleapi.Error
	switch {
	case err == nil:
		log.Warn("play integrity: Google's API answered no payload; the ping goes on without a verdict")
	case errors.As(err, &ge) && ge.Code == 400:
		return nil, ReasonIntegrityInvalid
	case errors.As(err, &ge) && (ge.Code == 401 || ge.Code == 403 || ge.Code == 404):
		// Not the phone's fault: Nearcast's credentials, the Cloud project
		// or the package name are wrong. No ping is held against it.
		log.Error("play integrity: Google's API refuses Nearcast's calls: check the credentials, that the Play Integrity API is enabled in the Cloud project linked to the app, and NEARCAST_PLAY_INTEGRITY_PACKAGE",
			"status", ge.Code, "err", ge.Message)
	default:
		log.Warn("play integrity: Google's API did not answer; pings with new tokens go on without a verdict", "err", err)
	}
	if b := integrityDuration(p.Backoff, DefaultIntegrityBackoff); b > 0 {
		p.quietUntil.Store(p.now().Add(b).UnixNano())
	}
	return nil, ReasonIntegrityUnavailable
}

// quiet tells whether Google's API is being left alone after a failure.
func (p *PlayIntegrity) quiet() bool { return p.now().UnixNano() < p.quietUntil.Load() }

// judge makes a token's record from its payload, or from the reason it
// has none: the verdict, and until when it stands.
func (p *PlayIntegrity) judge(pl *playintegrity.TokenPayloadExternal, reason, customerID, deviceID string) integrityRecord {
	now, maxAge := p.now(), integrityDuration(p.MaxAge, DefaultIntegrityMaxAge)
	failed := integrityRecord{verdict: IntegritySuspicious, until: now.Add(maxAge)}
	if reason != "" {
		failed.reason = reason
		return failed
	}
	rd, app, dev := pl.RequestDetails, pl.AppIntegrity, pl.DeviceIntegrity
	if rd == nil || app == nil || dev == nil {
		failed.reason = ReasonIntegrityInvalid
		return failed
	}
	at := time.UnixMilli(rd.TimestampMillis)
	switch want := IntegrityRequestHash(customerID, deviceID); {
	case rd.RequestPackageName != p.pkg || (app.PackageName != "" && app.PackageName != p.pkg):
		failed.reason = ReasonIntegrityPackage
	case rd.TimestampMillis <= 0 || now.Sub(at) > maxAge || at.Sub(now) > integritySkew:
		failed.reason = ReasonIntegrityStale
	case p.BindRequestHash && rd.RequestHash != want && rd.Nonce != want:
		failed.reason = ReasonIntegrityReplayed
	case !slices.Contains(dev.DeviceRecognitionVerdict, "MEETS_DEVICE_INTEGRITY") &&
		!slices.Contains(dev.DeviceRecognitionVerdict, "MEETS_STRONG_INTEGRITY"):
		failed.reason = ReasonIntegrityDevice
	case p.Strict && app.AppRecognitionVerdict != "PLAY_RECOGNIZED":
		failed.reason = ReasonIntegrityApp
	default:
		return integrityRecord{verdict: IntegrityTrusted, until: at.Add(maxAge)}
	}
	return failed
}

// read finds a token's record in Redis.
func (p *PlayIntegrity) read(ctx context.Context, id [sha256.Size]byte) (integrityRecord, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, integrityDuration(p.RedisTimeout, DefaultRequestTimeout))
	defer cancel()
	s, err := p.rdb.Get(ctx, integrityKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return integrityRecord{}, false, nil
	}
	if err != nil {
		return integrityRecord{}, false, rules.RedisErr("play integrity: read a token's record", err)
	}
	r, err := parseIntegrityRecord(s)
	return r, err == nil, err
}

// write records a token's first check, unless another replica recorded
// one first: the record that stands is answered.
func (p *PlayIntegrity) write(ctx context.Context, id [sha256.Size]byte, r integrityRecord) (integrityRecord, error) {
	ttl := max(r.until.Sub(p.now()), time.Second)
	wctx, cancel := context.WithTimeout(ctx, integrityDuration(p.RedisTimeout, DefaultRequestTimeout))
	defer cancel()
	ok, err := p.rdb.SetNX(wctx, integrityKey(id), r.String(), ttl).Result()
	if err != nil {
		return r, rules.RedisErr("play integrity: record a token's check", err)
	}
	if ok {
		return r, nil
	}
	first, found, err := p.read(ctx, id)
	if err == nil && !found {
		err = rules.RedisErr("play integrity: read a token's record", fmt.Errorf("%w: it expired as it was read", rules.ErrUnavailable))
	}
	return first, err
}

// remembered is a token's record this replica read or wrote, while it
// stands.
func (p *PlayIntegrity) remembered(id [sha256.Size]byte) (integrityRecord, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.seen[id]
	if ok && !p.now().Before(r.until) {
		delete(p.seen, id)
		return r, false
	}
	return r, ok
}

// remember keeps a token's record; past integrityCacheSize, the records
// that no longer stand and about half of the others are forgotten.
func (p *PlayIntegrity) remember(id [sha256.Size]byte, r integrityRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) >= integrityCacheSize {
		now, n := p.now(), 0
		for k, old := range p.seen {
			if n++; n%2 == 0 || !now.Before(old.until) {
				delete(p.seen, k)
			}
		}
	}
	p.seen[id] = r
}

func (p *PlayIntegrity) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *PlayIntegrity) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

// integrityDuration is a setting, or its default when zero.
func integrityDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// integritySignal checks the Play Integrity token a ping came with, if
// any and if the server checks them, and answers signals with its verdict
// added: SignalIntegrityOK, or the failure's reason. An unavailable
// Google API adds nothing (the fix is then merely unverified); a Redis
// failure is an error.
func (s *Server) integritySignal(c *fiber.Ctx, customerID, deviceID string, signals []string) ([]string, error) {
	tok := c.Get(HeaderPlayIntegrity)
	if tok == "" || s.Integrity == nil {
		return signals, nil
	}
	v, reason, err := s.Integrity.Check(context.Background(), tok, customerID, deviceID) // bounds its own calls
	if err != nil {
		return nil, err
	}
	switch v {
	case IntegrityTrusted:
		return append(signals, engine.SignalIntegrityOK), nil
	case IntegritySuspicious:
		return append(signals, reason), nil
	}
	return signals, nil
}

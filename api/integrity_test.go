package api_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/api/option"
	"google.golang.org/api/playintegrity/v1"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/playtest"
	"github.com/nearcast/nearcast/internal/redistest"
)

const integrityApp = "com.example.nearcast"

// newIntegrity is a checker of integrityApp's tokens that asks the double
// at endpoint and keeps its records in rdb.
func newIntegrity(t *testing.T, endpoint string, rdb redis.UniversalClient) *api.PlayIntegrity {
	t.Helper()
	p, err := api.NewPlayIntegrity(context.Background(), integrityApp, endpoint, rdb, option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	p.Log = quiet
	return p
}

type integrityWant struct {
	verdict api.IntegrityVerdict
	reason  string
}

func checkIntegrity(t *testing.T, p *api.PlayIntegrity, token, customer, device string, want integrityWant) {
	t.Helper()
	v, reason, err := p.Check(context.Background(), token, customer, device)
	if err != nil {
		t.Fatalf("Check(%.20s…, %s, %s): %v", token, customer, device, err)
	}
	if v != want.verdict || reason != want.reason {
		t.Errorf("Check(%.20s…, %s, %s) = %q %q, want %q %q", token, customer, device, v, reason, want.verdict, want.reason)
	}
}

// The double answers each kind of token; each comes out as it should, on
// every backend, and Google's API is asked in well-formed requests only.
func TestPlayIntegrityVerdicts(t *testing.T) {
	for _, b := range redistest.Backends(srv) {
		t.Run(b.Name, func(t *testing.T) {
			play := playtest.New(t)
			rdb := b.New(t)
			tok := play.Table(integrityApp, time.Now())
			lenient, strict := newIntegrity(t, play.URL(), rdb), newIntegrity(t, play.URL(), rdb)
			strict.Strict = true
			trusted := integrityWant{api.IntegrityTrusted, ""}
			suspicious := func(reason string) integrityWant { return integrityWant{api.IntegritySuspicious, reason} }
			for _, c := range []struct {
				name    string
				checker *api.PlayIntegrity
				token   string
				want    integrityWant
			}{
				{"good", lenient, tok.Good, trusted},
				{"only basic integrity", lenient, tok.BadDevice, suspicious(api.ReasonIntegrityDevice)},
				{"no device verdict", lenient, tok.NoVerdict, suspicious(api.ReasonIntegrityDevice)},
				{"sideloaded app, lenient", lenient, tok.SideLoaded, trusted},
				{"another app's token", lenient, tok.WrongPackage, suspicious(api.ReasonIntegrityPackage)},
				{"an hour old", lenient, tok.Stale, suspicious(api.ReasonIntegrityStale)},
				{"made up", lenient, "eyJhbGciOiJBMjU2S1ciLCJlbmMiOiJBMjU2R0NNIn0.made.up.token.x", suspicious(api.ReasonIntegrityInvalid)},
				{"garbled", lenient, tok.Good[:len(tok.Good)/2], suspicious(api.ReasonIntegrityInvalid)},
				{"longer than any token", lenient, strings.Repeat("A", 64<<10), suspicious(api.ReasonIntegrityInvalid)},
				{"sideloaded app, strict", strict, play.Issue(sideloaded()), suspicious(api.ReasonIntegrityApp)},
				{"good, strict", strict, play.Issue(playtest.Genuine(integrityApp, time.Now())), trusted},
			} {
				t.Run(c.name, func(t *testing.T) { checkIntegrity(t, c.checker, c.token, "c-1", "d-1", c.want) })
			}
			if n := play.Malformed(); n != 0 {
				t.Errorf("the double refused %d requests as malformed", n)
			}
			for _, r := range play.Requests() {
				if r.Package != integrityApp || len(r.Token) > 16<<10 {
					t.Errorf("a request for %q with a token of %d bytes", r.Package, len(r.Token))
				}
			}
		})
	}
}

func sideloaded() *playintegrity.TokenPayloadExternal {
	p := playtest.Genuine(integrityApp, time.Now())
	p.AppIntegrity.AppRecognitionVerdict = "UNRECOGNIZED_VERSION"
	return p
}

// A token serves the device that presented it first, for its life, on
// every replica; any other customer or device presenting it is told
// replayed. Google's API is asked once per token, whatever the answer.
func TestPlayIntegrityReplayed(t *testing.T) {
	for _, b := range redistest.Backends(srv) {
		t.Run(b.Name, func(t *testing.T) {
			play := playtest.New(t)
			rdb := b.New(t)
			a, other := newIntegrity(t, play.URL(), rdb), newIntegrity(t, play.URL(), rdb) // two replicas
			tok := play.Table(integrityApp, time.Now())
			trusted, replayed := integrityWant{api.IntegrityTrusted, ""}, integrityWant{api.IntegritySuspicious, api.ReasonIntegrityReplayed}
			checkIntegrity(t, a, tok.Good, "c-1", "d-1", trusted)
			checkIntegrity(t, a, tok.Good, "c-1", "d-1", trusted) // the app's next ping, or a retry
			checkIntegrity(t, other, tok.Good, "c-1", "d-1", trusted)
			checkIntegrity(t, a, tok.Good, "c-2", "d-1", replayed)
			checkIntegrity(t, other, tok.Good, "c-1", "d-2", replayed)
			checkIntegrity(t, other, tok.Good, "c-3", "", replayed)
			// A failed token is recorded too: its first holder keeps its
			// reason, the others are told replayed.
			device := integrityWant{api.IntegritySuspicious, api.ReasonIntegrityDevice}
			checkIntegrity(t, a, tok.BadDevice, "c-1", "d-1", device)
			checkIntegrity(t, other, tok.BadDevice, "c-1", "d-1", device)
			checkIntegrity(t, other, tok.BadDevice, "c-9", "d-9", replayed)
			for i := 0; i < 3; i++ {
				checkIntegrity(t, other, "not-a-token", "c-1", "d-1", integrityWant{api.IntegritySuspicious, api.ReasonIntegrityInvalid})
			}
			asked := map[string]int{}
			for _, r := range play.Requests() {
				asked[r.Token]++
			}
			for _, token := range []string{tok.Good, tok.BadDevice, "not-a-token"} {
				if asked[token] != 1 {
					t.Errorf("Google's API was asked %d times for one token, want once", asked[token])
				}
			}
			// A replica that starts afresh reads the records from Redis.
			late := newIntegrity(t, play.URL(), rdb)
			checkIntegrity(t, late, tok.Good, "c-1", "d-1", trusted)
			checkIntegrity(t, late, tok.Good, "c-4", "d-4", replayed)
			if n := len(play.Requests()); n != 3 {
				t.Errorf("Google's API was asked %d times, want 3", n)
			}
			checkRecordTTL(t, rdb, api.DefaultIntegrityMaxAge)
		})
	}
}

// checkRecordTTL checks that every token's record expires within maxAge.
func checkRecordTTL(t *testing.T, rdb redis.UniversalClient, maxAge time.Duration) {
	t.Helper()
	ctx := context.Background()
	var n atomic.Int64
	check := func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, "nc:{pi:*}").Result()
		if err != nil {
			return err
		}
		for _, k := range keys {
			n.Add(1)
			ttl, err := c.PTTL(ctx, k).Result()
			if err != nil {
				return err
			}
			if ttl <= 0 || ttl > maxAge {
				t.Errorf("%s expires in %v, want within %v", k, ttl, maxAge)
			}
		}
		return nil
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, check)
	case *redis.Client:
		err = check(ctx, c)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n.Load() != 3 {
		t.Errorf("%d records of tokens, want 3", n.Load())
	}
}

// A token is good for MaxAge from its request, however often it was
// checked before.
func TestPlayIntegrityTokenLife(t *testing.T) {
	for _, b := range redistest.Backends(srv) {
		t.Run(b.Name, func(t *testing.T) {
			play := playtest.New(t)
			rdb := b.New(t)
			var skew atomic.Int64
			clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
			a, other := newIntegrity(t, play.URL(), rdb), newIntegrity(t, play.URL(), rdb)
			a.Now, other.Now = clock, clock
			good := play.Issue(playtest.Genuine(integrityApp, time.Now().Add(-9*time.Minute)))
			checkIntegrity(t, a, good, "c-1", "d-1", integrityWant{api.IntegrityTrusted, ""})
			skew.Store(int64(2 * time.Minute))
			stale := integrityWant{api.IntegritySuspicious, api.ReasonIntegrityStale}
			checkIntegrity(t, a, good, "c-1", "d-1", stale)     // remembered
			checkIntegrity(t, other, good, "c-1", "d-1", stale) // read from Redis
			future := play.Issue(playtest.Genuine(integrityApp, time.Now().Add(5*time.Minute)))
			skew.Store(0)
			checkIntegrity(t, a, future, "c-1", "d-1", stale)
		})
	}
}

// BindRequestHash: a token serves only the customer and device whose
// hash it was requested with, in a standard request's hash or a classic
// request's nonce.
func TestPlayIntegrityBoundToItsHolder(t *testing.T) {
	play := playtest.New(t)
	rdb, _ := redistest.Mini(t)
	p := newIntegrity(t, play.URL(), rdb)
	p.BindRequestHash = true
	bound := func(hash string, classic bool) string {
		pl := playtest.Genuine(integrityApp, time.Now())
		if classic {
			pl.RequestDetails.RequestHash, pl.RequestDetails.Nonce = "", hash
		} else {
			pl.RequestDetails.RequestHash = hash
		}
		return play.Issue(pl)
	}
	trusted, replayed := integrityWant{api.IntegrityTrusted, ""}, integrityWant{api.IntegritySuspicious, api.ReasonIntegrityReplayed}
	checkIntegrity(t, p, bound(api.IntegrityRequestHash("c-1", "d-1"), false), "c-1", "d-1", trusted)
	checkIntegrity(t, p, bound(api.IntegrityRequestHash("c-1", "d-1"), true), "c-1", "d-1", trusted)
	checkIntegrity(t, p, bound(api.IntegrityRequestHash("c-1", "d-1"), false), "c-2", "d-1", replayed) // presented first, by another
	checkIntegrity(t, p, bound(api.IntegrityRequestHash("c-1", "d-1"), false), "c-1", "d-2", replayed)
	checkIntegrity(t, p, bound("", false), "c-1", "d-1", replayed)
	if h := api.IntegrityRequestHash("c-1", "d-1"); len(h) != 43 || strings.ContainsAny(h, "+/=") {
		t.Errorf("request hash %q is not 32 bytes of unpadded base64url", h)
	}
}

// Google's API down, slow, over its quota, refusing Nearcast's
// credentials, or not there at all: no verdict, at once or within the
// timeout, and nothing recorded, so that the token is checked when the
// API is back.
func TestPlayIntegrityUnavailable(t *testing.T) {
	unavailable := integrityWant{api.IntegrityNone, api.ReasonIntegrityUnavailable}
	for _, code := range []string{"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "UNAUTHENTICATED", "NOT_FOUND"} {
		t.Run(code, func(t *testing.T) {
			play := playtest.New(t)
			rdb, _ := redistest.Mini(t)
			p := newIntegrity(t, play.URL(), rdb)
			p.Backoff = -1
			good := play.Issue(playtest.Genuine(integrityApp, time.Now()))
			play.Fail(code, 1)
			checkIntegrity(t, p, good, "c-1", "d-1", unavailable)
			checkIntegrity(t, p, good, "c-1", "d-1", integrityWant{api.IntegrityTrusted, ""})
		})
	}
	t.Run("slow", func(t *testing.T) {
		play := playtest.New(t)
		rdb, _ := redistest.Mini(t)
		p := newIntegrity(t, play.URL(), rdb)
		play.SetDelay(1500 * time.Millisecond)
		start := time.Now()
		checkIntegrity(t, p, play.Issue(playtest.Genuine(integrityApp, time.Now())), "c-1", "d-1", unavailable)
		if took := time.Since(start); took > api.DefaultIntegrityTimeout+500*time.Millisecond {
			t.Errorf("a ping waited %v for Google's API, want at most %v", took, api.DefaultIntegrityTimeout)
		}
	})
	t.Run("closed port", func(t *testing.T) {
		rdb, _ := redistest.Mini(t)
		p := newIntegrity(t, "http://127.0.0.1:1/", rdb)
		start := time.Now()
		checkIntegrity(t, p, "some-token", "c-1", "d-1", unavailable)
		if took := time.Since(start); took > api.DefaultIntegrityTimeout {
			t.Errorf("a refused connection took %v", took)
		}
	})
	t.Run("backoff", func(t *testing.T) {
		play := playtest.New(t)
		rdb, _ := redistest.Mini(t)
		p := newIntegrity(t, play.URL(), rdb)
		play.Fail("UNAVAILABLE", 0)
		checkIntegrity(t, p, play.Issue(playtest.Genuine(integrityApp, time.Now())), "c-1", "d-1", unavailable)
		start := time.Now()
		for i := 0; i < 5; i++ {
			checkIntegrity(t, p, play.Issue(playtest.Genuine(integrityApp, time.Now())), "c-1", "d-1", unavailable)
		}
		if n := len(play.Requests()); n != 1 {
			t.Errorf("Google's API was asked %d times in its backoff, want once", n)
		}
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Errorf("checks in the backoff took %v", took)
		}
	})
}

// A Redis that cannot answer is an error the API answers 503; no token,
// or no checker, is no verdict without a Redis call.
func TestPlayIntegrityRedisDown(t *testing.T) {
	play := playtest.New(t)
	rdb, m := redistest.Mini(t)
	p := newIntegrity(t, play.URL(), rdb)
	seen := play.Issue(playtest.Genuine(integrityApp, time.Now()))
	checkIntegrity(t, p, seen, "c-1", "d-1", integrityWant{api.IntegrityTrusted, ""})
	m.Close()
	_, _, err := p.Check(context.Background(), play.Issue(playtest.Genuine(integrityApp, time.Now())), "c-1", "d-1")
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Errorf("Check with Redis down: %v, want engine.ErrUnavailable", err)
	}
	// A token this replica checked is answered without Redis: the app's
	// next pings with it cost no round trip.
	checkIntegrity(t, p, seen, "c-1", "d-1", integrityWant{api.IntegrityTrusted, ""})
	checkIntegrity(t, p, seen, "c-2", "d-1", integrityWant{api.IntegritySuspicious, api.ReasonIntegrityReplayed})
	checkIntegrity(t, p, "", "c-1", "d-1", integrityWant{api.IntegrityNone, ""})
	var none *api.PlayIntegrity
	checkIntegrity(t, none, "some-token", "c-1", "d-1", integrityWant{api.IntegrityNone, ""})
	if n := len(play.Requests()); n != 1 {
		t.Errorf("Google's API was asked %d times, want once (never with Redis down)", n)
	}
}

func TestNewPlayIntegrityNeedsAPackage(t *testing.T) {
	rdb, _ := redistest.Mini(t)
	for _, pkg := range []string{"", "nearcast", "com..example", "com.example/app"} {
		if _, err := api.NewPlayIntegrity(context.Background(), pkg, "http://127.0.0.1:1/", rdb, option.WithoutAuthentication()); err == nil {
			t.Errorf("NewPlayIntegrity(%q) took it", pkg)
		}
	}
}

// A ping with a Play Integrity token: a device that passes makes the fix
// trusted, one that fails (a rooted phone) suspicious, and no token
// leaves it unverified; what the admin key sees, and what an offer with
// min_trust trusted gets.
func TestPingsCarryTheirIntegrity(t *testing.T) {
	double := playtest.New(t)
	rdb := srv.Client(t)
	c := newClientWith(t, rdb, func(d *api.Deps) { d.Integrity = newIntegrity(t, double.URL(), rdb) })
	c.admin("PUT", "/v1/customers/c-42", customerAnna)
	tokens := double.Table(integrityApp, time.Now())
	for _, tt := range []struct{ token, device, want string }{
		{"", "d-0", engine.TrustUnverified},
		{tokens.Good, "d-1", engine.TrustTrusted},
		{tokens.BadDevice, "d-2", engine.TrustSuspicious},
	} {
		headers := map[string]string{}
		if tt.token != "" {
			headers[api.HeaderPlayIntegrity] = tt.token
		}
		r := c.request("POST", "/v1/pings?dry_run=true", "admin-key", "application/json",
			`{"customer_id": "c-42", "device_id": "`+tt.device+`", "lat": 52.5219, "lng": 13.4132, "accuracy_m": 10}`, headers)
		trust, _ := r.Body["trust"].(map[string]any)
		if r.Status != 200 || trust["level"] != tt.want {
			t.Errorf("token %.10q: %d %s, want trust %s", tt.token, r.Status, r.Raw, tt.want)
		}
	}
}

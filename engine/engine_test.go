package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// clock is a settable clock for walking a customer through a day.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func ptr[T any](v T) *T { return &v }

// Alexanderplatz, Berlin.
const alexLat, alexLng = 52.5219, 13.4132

// north moves a point north by metres.
func north(lat, lng, m float64) (float64, float64) {
	return lat + m/111194.9, lng
}

type fixture struct {
	rdb   redis.UniversalClient
	eng   *engine.Engine
	live  *rules.Live
	cust  *engine.Customers
	clock *clock
}

func setup(t *testing.T, rdb redis.UniversalClient, extraRules ...rules.Rule) *fixture {
	return setupTB(t, rdb, extraRules...)
}

func setupTB(t testing.TB, rdb redis.UniversalClient, extraRules ...rules.Rule) *fixture {
	t.Helper()
	ctx := context.Background()
	live := rules.NewLive(rdb, quiet)
	cat := live.Catalog()
	stores := []rules.Store{
		{ID: "s-alex", Name: "Alexanderplatz", Lat: ptr(alexLat), Lng: ptr(alexLng), RadiusM: 100, Tags: []string{"coffee"}, Timezone: "Europe/Berlin"},
		{ID: "s-far", Name: "Far away", Lat: ptr(53.55), Lng: ptr(10.0), RadiusM: 100, Tags: []string{"coffee"}},
	}
	for _, s := range stores {
		if _, err := cat.PutStore(ctx, &s); err != nil {
			t.Fatal(err)
		}
	}
	rs := append([]rules.Rule{{
		ID: "latte", Name: "Latte", Priority: 10,
		Trigger:  rules.Trigger{On: rules.OnEnter, Stores: &rules.StoreSelector{Tags: []string{"coffee"}}},
		Audience: "customer.attributes.tier == 'gold'",
		Caps:     rules.Caps{PerCustomerPerDay: 1},
		Offer: rules.Offer{
			Title:     rules.Texts{{Lang: "de", Template: "Hallo {{.customer.first_name}}!"}, {Lang: "en", Template: "Hi {{.customer.first_name}}!"}},
			Body:      rules.Texts{{Lang: "de", Template: "{{.store.name}}: {{.distance_m}} m"}, {Lang: "en", Template: "{{.store.name}} is {{.distance_m}} m away"}},
			ValidForS: 3600,
		},
	}}, extraRules...)
	for _, r := range rs {
		if err := cat.PutRule(ctx, &r, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := live.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	cust := engine.NewCustomers(rdb)
	anna := rules.Customer{ID: "c-42", FirstName: "Anna", Locale: "de", Timezone: "Europe/Berlin",
		Consent: rules.Consent{Location: true, Push: true}, Attributes: map[string]any{"tier": "gold"}}
	if _, err := cust.Put(ctx, &anna); err != nil {
		t.Fatal(err)
	}
	if _, err := cust.PutDevice(ctx, "c-42", &rules.Device{ID: "d-1", FCMToken: "tok-1", Platform: "android"}); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)}
	eng := engine.New(rdb, live, engine.NewCodeSigner([]byte("test-secret")), engine.DefaultConfig(), quiet, clk.Now)
	return &fixture{rdb: rdb, eng: eng, live: live, cust: cust, clock: clk}
}

func (f *fixture) ping(t *testing.T, metresNorth float64, opt engine.Options) *engine.Result {
	t.Helper()
	lat, lng := north(alexLat, alexLng, metresNorth)
	res, err := settled(f.eng).Evaluate(context.Background(), engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng, TS: f.clock.Now()}, opt)
	if err != nil {
		t.Fatalf("Evaluate: %v", err)
	}
	return res
}

func outboxLen(t *testing.T, rdb redis.UniversalClient) int64 {
	n, err := rdb.XLen(context.Background(), "nc:{outbox}:stream").Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWalkInOutAndBackIn(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			// 300 m away, walking in: nothing until inside the 100 m radius.
			for _, d := range []float64{300, 200, 130} {
				if res := f.ping(t, d, engine.Options{}); len(res.Events) != 0 || len(res.Offers) != 0 {
					t.Fatalf("at %v m: %+v", d, res)
				}
				f.clock.Advance(30 * time.Second)
			}
			res := f.ping(t, 60, engine.Options{})
			if len(res.Events) != 1 || res.Events[0].Type != "enter" || res.Events[0].StoreID != "s-alex" || res.Events[0].DistanceM != 60 {
				t.Fatalf("enter: events %+v", res.Events)
			}
			if len(res.Offers) != 1 {
				t.Fatalf("enter: offers %+v", res.Offers)
			}
			o := res.Offers[0]
			if o.Title != "Hallo Anna!" || o.Body != "Alexanderplatz: 60 m" || o.RuleID != "latte" || len(o.CouponCode) != engine.CouponCodeLen {
				t.Fatalf("offer %+v", o)
			}
			if want := f.clock.Now().Add(time.Hour); !o.ExpiresAt.Equal(want) {
				t.Fatalf("expires_at %v, want %v", o.ExpiresAt, want)
			}
			if n := outboxLen(t, f.rdb); n != 1 {
				t.Fatalf("outbox holds %d pushes, want 1", n)
			}

			// A second ping inside the same visit fires nothing.
			f.clock.Advance(time.Minute)
			if res := f.ping(t, 20, engine.Options{}); len(res.Events) != 0 || len(res.Offers) != 0 {
				t.Fatalf("second ping inside: %+v", res)
			}
			// Jitter just past the edge, inside the exit margin: still inside.
			f.clock.Advance(time.Minute)
			if res := f.ping(t, 110, engine.Options{}); len(res.Events) != 0 {
				t.Fatalf("edge jitter: %+v", res.Events)
			}
			// Leaving: an exit with the visit's length.
			f.clock.Advance(time.Minute)
			res = f.ping(t, 400, engine.Options{})
			if len(res.Events) != 1 || res.Events[0].Type != "exit" || res.Events[0].VisitS == nil || *res.Events[0].VisitS != 180 {
				t.Fatalf("exit: %+v", res.Events)
			}
			// Back in later the same day: a new visit, but the daily cap holds.
			f.clock.Advance(time.Hour)
			res = f.ping(t, 10, engine.Options{Explain: true})
			if len(res.Events) != 1 || res.Events[0].Type != "enter" || len(res.Offers) != 0 {
				t.Fatalf("re-enter same day: %+v", res)
			}
			if len(res.Explain) != 1 || res.Explain[0].Result != engine.ReasonCap {
				t.Fatalf("explain: %+v", res.Explain)
			}
			// Out, and in again the next day: a new coupon.
			f.clock.Advance(time.Minute)
			f.ping(t, 500, engine.Options{})
			f.clock.Advance(24 * time.Hour)
			res = f.ping(t, 10, engine.Options{})
			if len(res.Offers) != 1 || res.Offers[0].CouponCode == o.CouponCode {
				t.Fatalf("next day: %+v", res)
			}
			if n := outboxLen(t, f.rdb); n != 2 {
				t.Fatalf("outbox holds %d pushes, want 2", n)
			}
		})
	}
}

func TestVisitTimesOut(t *testing.T) {
	f := setup(t, srvOrMini(t))
	if res := f.ping(t, 10, engine.Options{}); len(res.Events) != 1 {
		t.Fatalf("first: %+v", res)
	}
	f.clock.Advance(engine.DefaultConfig().VisitTimeout + time.Minute)
	if res := f.ping(t, 10, engine.Options{}); len(res.Events) != 1 || res.Events[0].Type != "enter" {
		t.Fatalf("after a long silence the next fix inside is a new visit: %+v", res)
	}
}

func srvOrMini(t *testing.T) *redis.Client { return srv.Client(t) }

func TestOutOfOrderAndLateFixes(t *testing.T) {
	f := setup(t, srvOrMini(t))
	f.ping(t, 300, engine.Options{})
	// A fix older than one already seen changes nothing.
	lat, lng := north(alexLat, alexLng, 10)
	res, err := settled(f.eng).Evaluate(context.Background(), engine.Ping{CustomerID: "c-42", Lat: lat, Lng: lng, TS: f.clock.Now().Add(-time.Second)}, engine.Options{})
	if err != nil || len(res.Events) != 0 {
		t.Fatalf("out-of-order fix: %+v %v", res, err)
	}
	// A delayed upload moves presence but fires no offer.
	f.clock.Advance(10 * time.Minute)
	res, err = settled(f.eng).Evaluate(context.Background(), engine.Ping{CustomerID: "c-42", Lat: lat, Lng: lng, TS: f.clock.Now().Add(-6 * time.Minute)}, engine.Options{Explain: true})
	if err != nil || len(res.Events) != 1 || len(res.Offers) != 0 || res.Explain[0].Result != engine.ReasonLate {
		t.Fatalf("late fix: %+v %v", res, err)
	}
}

func TestNoConsentKeepsNothing(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			ctx := context.Background()
			bob := rules.Customer{ID: "bob", Consent: rules.Consent{Location: false, Push: true}}
			if _, err := f.cust.Put(ctx, &bob); err != nil {
				t.Fatal(err)
			}
			// A registered device, which a ping with consent would stamp.
			if _, err := f.cust.PutDevice(ctx, "bob", &rules.Device{ID: "d", FCMToken: "tok-bob", Platform: "ios"}); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"bob", "nobody"} {
				lat, lng := north(alexLat, alexLng, 10)
				res, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: id, DeviceID: "d", Lat: lat, Lng: lng}, engine.Options{})
				if err != nil || len(res.Events) != 0 || len(res.Offers) != 0 {
					t.Fatalf("%s: %+v %v", id, res, err)
				}
				for _, part := range []string{"presence", "device_seen", "caps"} {
					if n, _ := f.rdb.Exists(ctx, "nc:{c:"+id+"}:"+part).Result(); n != 0 {
						t.Fatalf("%s: %s was stored without location consent", id, part)
					}
				}
				if seen, _ := f.rdb.HExists(ctx, "nc:{c:"+id+"}:devices", "#seen:d").Result(); seen {
					t.Fatalf("%s: the device's stamp was stored without location consent", id)
				}
			}
			// Without push consent: presence moves, but no offer.
			anna, _ := f.cust.Get(ctx, "c-42")
			anna.Consent.Push = false
			if _, err := f.cust.Put(ctx, anna); err != nil {
				t.Fatal(err)
			}
			res := f.ping(t, 10, engine.Options{Explain: true})
			if len(res.Events) != 1 || len(res.Offers) != 0 || res.Explain[0].Result != engine.ReasonConsent {
				t.Fatalf("no push consent: %+v", res)
			}
			// Location consent withdrawn while inside a store: what was
			// known of where she is goes, and her next ping (the observe
			// step asks for consent only when it finds no presence)
			// neither moves nor keeps anything.
			anna.Consent.Location = false
			if _, err := f.cust.Put(ctx, anna); err != nil {
				t.Fatal(err)
			}
			if res := f.ping(t, 500, engine.Options{Explain: true}); len(res.Events) != 0 || res.Reason != engine.ReasonConsent {
				t.Fatalf("location consent withdrawn: %+v", res)
			}
			if n, _ := f.rdb.Exists(ctx, "nc:{c:c-42}:presence").Result(); n != 0 {
				t.Fatal("presence kept after location consent was withdrawn")
			}
		})
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			ctx := context.Background()
			before, _ := redistest.Keys(ctx, f.rdb, "*")
			res := f.ping(t, 10, engine.Options{DryRun: true, Explain: true})
			if len(res.Events) != 1 || len(res.Offers) != 1 || res.Explain[0].Result != engine.ResultSent {
				t.Fatalf("dry run answers what would happen: %+v", res)
			}
			after, _ := redistest.Keys(ctx, f.rdb, "*")
			// It counts against the customer's limits, as every call does,
			// and writes nothing else.
			after = slices.DeleteFunc(after, func(k string) bool { return k == "nc:{c:c-42}:rate" })
			if len(before) != len(after) {
				t.Fatalf("dry run wrote keys: %v → %v", before, after)
			}
			if res := f.ping(t, 10, engine.Options{}); len(res.Offers) != 1 {
				t.Fatalf("the real ping after a dry run still fires: %+v", res)
			}
		})
	}
}

func TestArbitrationAndAudience(t *testing.T) {
	welcome := rules.Rule{ID: "welcome", Name: "Welcome", Priority: 20,
		Trigger:  rules.Trigger{On: rules.OnEnter, Stores: &rules.StoreSelector{IDs: []string{"s-alex"}}},
		Audience: "'newbie' in customer.segments",
		Offer:    rules.Offer{Title: rules.Texts{{Lang: "en", Template: "Welcome"}}, Body: rules.Texts{{Lang: "en", Template: "Code {{.coupon.code}}"}}},
	}
	cheap := rules.Rule{ID: "cheap", Name: "Cheap", Priority: 1,
		Trigger: rules.Trigger{On: rules.OnEnter},
		Offer:   rules.Offer{Title: rules.Texts{{Lang: "en", Template: "Cheap"}}, Body: rules.Texts{{Lang: "en", Template: "x"}}},
	}
	f := setup(t, srvOrMini(t), welcome, cheap)
	res := f.ping(t, 10, engine.Options{Explain: true})
	if len(res.Offers) != 1 || res.Offers[0].RuleID != "latte" {
		t.Fatalf("one offer, the best eligible: %+v", res.Offers)
	}
	got := map[string]string{}
	for _, e := range res.Explain {
		got[e.RuleID] = e.Result
	}
	want := map[string]string{"welcome": engine.ReasonAudience, "latte": engine.ResultSent, "cheap": engine.ReasonLower}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("explain %s = %q, want %q (all: %+v)", k, got[k], v, res.Explain)
		}
	}
	// The welcome body renders the coupon code; the first language is the
	// fallback for a German customer.
	f.clock.Advance(time.Minute)
	ctx := context.Background()
	anna, _ := f.cust.Get(ctx, "c-42")
	anna.Segments = []string{"newbie"}
	f.cust.Put(ctx, anna)
	f.clock.Advance(10 * time.Minute)
	f.ping(t, 500, engine.Options{})
	f.clock.Advance(10 * time.Minute)
	res = f.ping(t, 10, engine.Options{})
	if len(res.Offers) != 1 || res.Offers[0].RuleID != "welcome" || res.Offers[0].Body != "Code "+res.Offers[0].CouponCode {
		t.Fatalf("welcome: %+v", res.Offers)
	}
}

// Two replicas' worth of concurrent pings of one customer entering one
// store: exactly one coupon.
func TestConcurrentPingsIssueOneCoupon(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			var wg sync.WaitGroup
			var mu sync.Mutex
			offers, enters := 0, 0
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					lat, lng := north(alexLat, alexLng, float64(i%40))
					res, err := settled(f.eng).Evaluate(context.Background(), engine.Ping{CustomerID: "c-42", Lat: lat, Lng: lng, TS: f.clock.Now()}, engine.Options{})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					offers += len(res.Offers)
					enters += len(res.Events)
					mu.Unlock()
				}(i)
			}
			wg.Wait()
			if offers != 1 || enters != 1 {
				t.Fatalf("%d offers and %d enter events from 50 concurrent pings, want 1 and 1", offers, enters)
			}
			if n := outboxLen(t, f.rdb); n != 1 {
				t.Fatalf("outbox holds %d, want 1", n)
			}
		})
	}
}

func TestCouponCodes(t *testing.T) {
	c := engine.NewCodeSigner([]byte("k1"))
	seen := map[string]bool{}
	for range 1000 {
		code := c.NewCode()
		if len(code) != engine.CouponCodeLen || seen[code] || !c.Valid(code) {
			t.Fatalf("bad code %q", code)
		}
		seen[code] = true
		if engine.NewCodeSigner([]byte("k2")).Valid(code) {
			t.Fatalf("code %q valid under another secret", code)
		}
	}
	code := c.NewCode()
	forged := code[:engine.CouponCodeLen-1] + string("0123456789ABCDEFGHJKMNPQRSTVWXYZ"[(int(code[len(code)-1])+1)%32])
	if c.Valid(forged) {
		t.Fatalf("forged %q accepted", forged)
	}
	typed := code[:4] + "-" + code[4:8] + "-" + code[8:]
	if !c.Valid(typed) {
		t.Fatalf("a code typed with dashes %q is refused", typed)
	}
}

func TestDistanceRounding(t *testing.T) {
	f := setup(t, srvOrMini(t))
	res := f.ping(t, 99.4, engine.Options{})
	if len(res.Events) != 1 || math.Abs(float64(res.Events[0].DistanceM)-99) > 0 {
		t.Fatalf("distance_m is whole metres: %+v", res.Events)
	}
}

// Erasing a customer leaves nothing that names them: no key, no value of
// any type, not even a queued push; what they exported before was all
// there was.
func TestEraseCustomer(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			ctx := context.Background()
			f.ping(t, 10, engine.Options{}) // presence, a counter, a coupon, a queued push
			ex, err := f.cust.Export(ctx, "c-42")
			if err != nil {
				t.Fatal(err)
			}
			if ex.Profile.FirstName != "Anna" || len(ex.Devices) != 1 || len(ex.Presence) == 0 || len(ex.Counters) == 0 || len(ex.Coupons) != 1 || len(ex.QueuedPushes) != 1 {
				t.Fatalf("export misses something: %+v", ex)
			}
			if err := f.cust.Delete(ctx, "c-42"); err != nil {
				t.Fatal(err)
			}
			// One key is left, on purpose: the raised generation of the
			// customer's tokens, a number, so that a token minted before
			// the erasure stops working; it goes when the last could expire.
			tomb := "nc:{c:c-42}:tokens"
			if v, ttl := f.rdb.Get(ctx, tomb).Val(), f.rdb.PTTL(ctx, tomb).Val(); v != "2" || ttl <= 0 || ttl > engine.MaxTokenTTL {
				t.Fatalf("the tokens' generation after erasure: %q, TTL %s", v, ttl)
			}
			f.rdb.Del(ctx, tomb)
			if where := findAnywhere(t, f.rdb, "c-42"); where != "" {
				t.Fatalf("after erasure, %s still names the customer", where)
			}
			if _, err := f.cust.Get(ctx, "c-42"); !errors.Is(err, rules.ErrNotFound) {
				t.Fatalf("Get after erase: %v", err)
			}
			if err := f.cust.Delete(ctx, "c-42"); !errors.Is(err, rules.ErrNotFound) {
				t.Fatalf("erasing twice: %v", err)
			}
		})
	}
}

// findAnywhere scans every key and every value in Redis for s.
func findAnywhere(t *testing.T, rdb redis.UniversalClient, s string) string {
	keys, err := redistest.Keys(context.Background(), rdb, "*")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if where := nameOrValueHolds(t, rdb, k, s); where != "" {
			return where
		}
	}
	return ""
}

// nameOrValueHolds says where key k holds s: in its name, or in a value.
func nameOrValueHolds(t *testing.T, rdb redis.UniversalClient, k, s string) string {
	ctx := context.Background()
	if strings.Contains(k, s) {
		return "key " + k
	}
	var values []string
	switch typ := rdb.Type(ctx, k).Val(); typ {
	case "none":
		return "" // gone meanwhile
	case "string":
		values = append(values, rdb.Get(ctx, k).Val())
	case "hash":
		for f, v := range rdb.HGetAll(ctx, k).Val() {
			values = append(values, f, v)
		}
	case "set":
		values = rdb.SMembers(ctx, k).Val()
	case "zset":
		values = rdb.ZRange(ctx, k, 0, -1).Val()
	case "list":
		values = rdb.LRange(ctx, k, 0, -1).Val()
	case "stream":
		for _, m := range rdb.XRange(ctx, k, "-", "+").Val() {
			for f, v := range m.Values {
				values = append(values, f, fmt.Sprint(v))
			}
		}
	default:
		t.Fatalf("key %s of type %s is not scanned", k, typ)
	}
	for _, v := range values {
		if strings.Contains(v, s) {
			return "a value of " + k
		}
	}
	return ""
}

// settledEngine evaluates as the engine does, then waits for the work
// behind the answer (the announcement, the funnel's counts), as a reader
// of what that work writes does (Engine.Settled): the tests look at Redis
// right after a ping.
type settledEngine struct{ *engine.Engine }

func settled(e *engine.Engine) settledEngine { return settledEngine{e} }

func (s settledEngine) Evaluate(ctx context.Context, p engine.Ping, opt engine.Options) (*engine.Result, error) {
	res, err := s.Engine.Evaluate(ctx, p, opt)
	if serr := s.Settled(context.WithoutCancel(ctx)); err == nil && serr != nil {
		return nil, serr
	}
	return res, err
}

func (s settledEngine) EvaluateBatch(ctx context.Context, fixes []engine.Ping, opt engine.Options) (*engine.BatchResult, error) {
	res, err := s.Engine.EvaluateBatch(ctx, fixes, opt)
	if serr := s.Settled(context.WithoutCancel(ctx)); err == nil && serr != nil {
		return nil, serr
	}
	return res, err
}

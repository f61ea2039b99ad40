package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/fcmtest"
	"github.com/nearcast/nearcast/internal/hooktest"
	"github.com/nearcast/nearcast/internal/redistest"
)

// runCtx runs f until the test ends.
func runCtx(t *testing.T, f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// eventsFixture is a real-clock fixture whose every decision journals
// the events wanted, with a relay, a dispatcher and a ledger that do too.
type eventsFixture struct {
	*fixture
	events *engine.Events
	ledger *engine.Ledger
	double *fcmtest.Server
}

func newEventsFixture(t *testing.T, rdb redis.UniversalClient, wanted string, relay bool) *eventsFixture {
	t.Helper()
	f := setup(t, rdb)
	ev := engine.NewEvents(rdb, webhook.NewEmitter(rdb, 0), func() string { return wanted }, quiet)
	ev.SweepEvery = 0
	cfg := engine.DefaultConfig()
	cfg.QuietHours = [2]int{}
	cfg.Events = ev
	signer := engine.NewCodeSigner([]byte("k"))
	f.eng = engine.New(rdb, f.live, signer, cfg, quiet, nil)
	f.cust = f.cust.WithEvents(ev)
	if relay {
		runCtx(t, ev.Run)
	}
	double := fcmtest.New(t)
	dcfg := engine.DefaultDispatchConfig()
	dcfg.Block = 50 * time.Millisecond
	dcfg.Events = ev
	runCtx(t, engine.NewDispatcher(rdb, fcmSender(t, double), dcfg, quiet, nil).Run)
	return &eventsFixture{fixture: f, events: ev, ledger: engine.NewLedger(rdb, signer, quiet, nil).WithEvents(ev), double: double}
}

// streamEvents reads every event of the customer's shard stream, in order.
func streamEvents(t *testing.T, rdb redis.UniversalClient, customerID string) []webhook.Event {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), webhook.StreamKey(webhook.ShardOf(customerID)), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []webhook.Event
	for _, m := range msgs {
		if m.Values["customer"] != customerID {
			continue
		}
		var e webhook.Event
		if err := jsonUnmarshal(m.Values["event"].(string), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func types(events []webhook.Event) string {
	var s []string
	for _, e := range events {
		s = append(s, e.Type)
	}
	return strings.Join(s, " ")
}

// A customer's day, told to a subscriber: each fact the engine decided
// arrives once, signed, in the order it happened, naming ids and never a
// coordinate; the erasure comes last, and takes what was left of them.
func TestEventsOutOfADay(t *testing.T) {
	for _, b := range redistest.Backends(srv) {
		t.Run(b.Name, func(t *testing.T) { eventsOutOfADay(t, b.New(t)) })
	}
}

func eventsOutOfADay(t *testing.T, rdb redis.UniversalClient) {
	f := newEventsFixture(t, rdb, "*", true)
	ctx := context.Background()

	// A subscriber with a deliverer, as the server runs them.
	secret := webhook.NewSecret()
	r := hooktest.New(t, secret)
	store := webhook.NewStore(rdb)
	if _, err := store.Put(ctx, &webhook.Subscription{ID: "crm", URL: r.URL(), Events: webhook.EventTypes, Secret: secret, Enabled: true}, 0); err != nil {
		t.Fatal(err)
	}
	live := webhook.NewLive(store, quiet)
	if err := live.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx(t, webhook.NewDeliverer(rdb, live, webhook.Config{Poll: 20 * time.Millisecond, LeaseTTL: time.Second}, quiet).Run)

	o := f.realClockPing(t, "d-1") // enter, and an offer
	eventually(t, "the push", func() bool { return len(f.double.Messages()) == 1 })
	eventually(t, "push.sent out", func() bool { return strings.Contains(types(streamEvents(t, rdb, "c-42")), "push.sent") })
	if _, err := f.ledger.Opened(ctx, o.CouponCode, "c-42"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ledger.Opened(ctx, o.CouponCode, "c-42"); err != nil { // the first open counts
		t.Fatal(err)
	}
	if _, err := f.ledger.Redeem(ctx, o.CouponCode, "s-alex"); err != nil {
		t.Fatal(err)
	}
	lat, lng := north(alexLat, alexLng, 2000)
	if _, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng}, engine.Options{}); err != nil {
		t.Fatal(err)
	}
	const day = "enter offer.issued push.sent coupon.opened coupon.redeemed exit"
	eventually(t, "the day out", func() bool { return types(streamEvents(t, rdb, "c-42")) == day })
	if err := r.WaitAccepted(6, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	got := hooktest.DistinctAccepted(r.Accepted())
	if types(got) != day {
		t.Fatalf("received %q, want %q", types(got), day)
	}
	for _, q := range r.Accepted() {
		if q.VerifyErr != nil {
			t.Fatalf("%s: signature: %v", q.Event.Type, q.VerifyErr)
		}
		if where := coordinateIn(t, q.Body, alexLat, alexLng); where != "" {
			t.Fatalf("%s carries a coordinate (%s): %s", q.Event.Type, where, q.Body)
		}
	}
	for i, e := range got {
		if e.CustomerID != "c-42" || (i > 0 && e.At.Before(got[i-1].At)) {
			t.Fatalf("event %d: %+v", i, e)
		}
		switch e.Type {
		case "enter", "exit":
			if e.StoreID != "s-alex" || e.DeviceID != "d-1" {
				t.Fatalf("%+v", e)
			}
		case "offer.issued", "push.sent", "coupon.opened", "coupon.redeemed":
			if e.StoreID != "s-alex" || e.RuleID != "latte" || e.CouponCode != o.CouponCode {
				t.Fatalf("%+v", e)
			}
		}
	}
	if v, _ := got[5].Data["visit_s"].(float64); v < 0 || v > 60 {
		t.Fatalf("exit's visit_s: %+v", got[5].Data)
	}
	if exp, _ := got[1].Data["expires_at"].(string); exp != o.ExpiresAt.Format(time.RFC3339) {
		t.Fatalf("offer.issued's expires_at %q, the offer's %v", exp, o.ExpiresAt)
	}
	if journal := rdb.LLen(ctx, "nc:{c:c-42}:events").Val(); journal != 0 {
		t.Fatalf("%d facts left in the journal", journal)
	}

	// Erased: the subscriber is told, and the stream keeps nothing of them
	// but that.
	if err := f.cust.Delete(ctx, "c-42"); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitAccepted(7, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if last := hooktest.DistinctAccepted(r.Accepted())[6]; last.Type != webhook.TypeCustomerErased || last.CustomerID != "c-42" {
		t.Fatalf("last event %+v", last)
	}
	if left := types(streamEvents(t, rdb, "c-42")); left != webhook.TypeCustomerErased {
		t.Fatalf("the stream still holds %q of the erased customer", left)
	}
}

// A process that stops between a decision and its relay loses no event:
// the fact waits in the customer's journal, and the next process's sweep
// moves it, under the same event id however often it is moved.
func TestEventsSurviveTheRelayStopping(t *testing.T) {
	for _, b := range redistest.Backends(srv) {
		t.Run(b.Name, func(t *testing.T) { eventsSurviveTheRelayStopping(t, b.New(t)) })
	}
}

func eventsSurviveTheRelayStopping(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	f := newEventsFixture(t, rdb, ",enter,offer.issued,", false) // decides, never relays
	f.realClockPing(t, "d-1")
	journal := "nc:{c:c-42}:events"
	facts := rdb.LRange(ctx, journal, 0, -1).Val()
	if len(facts) != 2 {
		t.Fatalf("journal %q, want the enter and the offer", facts)
	}
	if n := len(streamEvents(t, rdb, "c-42")); n != 0 {
		t.Fatalf("%d events out with no relay running", n)
	}

	next := engine.NewEvents(rdb, webhook.NewEmitter(rdb, 0), func() string { return "*" }, quiet)
	next.SweepEvery = 0
	runCtx(t, next.Run)
	// The relay adds the facts to the stream, then takes them off the
	// journal: both, before a look.
	eventually(t, "the journal moved", func() bool {
		return len(streamEvents(t, rdb, "c-42")) == 2 && rdb.Exists(ctx, journal).Val() == 0
	})
	first := streamEvents(t, rdb, "c-42")
	if types(first) != "enter offer.issued" || rdb.Exists(ctx, journal).Val() != 0 {
		t.Fatalf("out %q, journal %d", types(first), rdb.LLen(ctx, journal).Val())
	}

	// Moved, but the process stopped before taking the facts off the
	// journal: moved again, the ids are the same.
	rdb.RPush(ctx, journal, facts[0], facts[1])
	if n, err := next.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("sweep found %d journals: %v", n, err)
	}
	eventually(t, "moved again", func() bool { return len(streamEvents(t, rdb, "c-42")) == 4 })
	again := streamEvents(t, rdb, "c-42")
	if again[2].ID != first[0].ID || again[3].ID != first[1].ID {
		t.Fatalf("ids moved again %s %s, first %s %s", again[2].ID, again[3].ID, first[0].ID, first[1].ID)
	}
}

// Nothing is journaled when no one listens, for a type no one wants, or
// for a decision that did not happen (a dry run).
func TestEventsOnlyWhatIsWanted(t *testing.T) {
	ctx := context.Background()
	journal := "nc:{c:c-42}:events"
	for _, c := range []struct{ wanted, want string }{{"", ""}, {",exit,", ""}, {",offer.issued,", "offer.issued"}} {
		t.Run(fmt.Sprintf("wanted %q", c.wanted), func(t *testing.T) {
			rdb := srv.Client(t)
			f := newEventsFixture(t, rdb, c.wanted, false)
			res, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: alexLat, Lng: alexLng}, engine.Options{DryRun: true})
			if err != nil || len(res.Offers) != 1 {
				t.Fatalf("dry run: %+v %v", res, err)
			}
			if n := rdb.LLen(ctx, journal).Val(); n != 0 {
				t.Fatalf("a dry run journaled %d facts", n)
			}
			f.realClockPing(t, "d-1")
			var got []string
			for _, raw := range rdb.LRange(ctx, journal, 0, -1).Val() {
				var fact map[string]any
				jsonUnmarshal(raw, &fact)
				got = append(got, fact["t"].(string))
			}
			if strings.Join(got, " ") != c.want {
				t.Fatalf("journaled %q, want %q", got, c.want)
			}
		})
	}
}

// coordinateIn says where an event's JSON holds a location near lat, lng,
// or "" when it holds none: a field named for one, a number within 0.1°
// of either, or a text with either in it to 0.01°. Times are not
// searched: "…T19:29:13.416Z" holds 13.41 as seconds, not degrees.
func coordinateIn(t *testing.T, body []byte, lat, lng float64) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("event %s: %v", body, err)
	}
	texts := []string{fmt.Sprintf("%.2f", lat), fmt.Sprintf("%.2f", lng)}
	var walk func(path string, v any) string
	walk = func(path string, v any) string {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				for _, name := range []string{"lat", "lng", "lon", "coord", "geo", "location", "position"} {
					if strings.Contains(strings.ToLower(k), name) {
						return path + "." + k
					}
				}
				if w := walk(path+"."+k, e); w != "" {
					return w
				}
			}
		case []any:
			for i, e := range x {
				if w := walk(fmt.Sprintf("%s[%d]", path, i), e); w != "" {
					return w
				}
			}
		case float64:
			if math.Abs(x-lat) < 0.1 || math.Abs(x-lng) < 0.1 {
				return path
			}
		case string:
			if _, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return ""
			}
			for _, c := range texts {
				if strings.Contains(x, c) {
					return path
				}
			}
		}
		return ""
	}
	return walk("", v)
}

// The check above finds a location however an event would carry one,
// and takes no time of day for one.
func TestCoordinateIn(t *testing.T) {
	for body, found := range map[string]bool{
		`{"type":"enter","lat":1,"lng":2}`:                            true,
		`{"type":"enter","where":{"x":52.5219,"y":13.4132}}`:          true,
		`{"type":"enter","note":"at 52.52, 13.41"}`:                   true,
		`{"type":"enter","points":[[13.4132,52.5219]]}`:               true,
		`{"type":"exit","store_geohash":"u33dc0"}`:                    true,
		`{"type":"exit","to":{"n":52.5399}}`:                          true,
		`{"type":"coupon.opened","at":"2026-11-30T19:29:13.416Z"}`:    false,
		`{"type":"coupon.opened","at":"2026-11-30T19:52:52.521Z"}`:    false,
		`{"type":"exit","visit_s":1341,"store_id":"s-alex","n":5252}`: false,
	} {
		if got := coordinateIn(t, []byte(body), alexLat, alexLng) != ""; got != found {
			t.Errorf("%s: found a location %v, want %v", body, got, found)
		}
	}
}

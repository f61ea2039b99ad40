package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/engine/push"
	"github.com/nearcast/nearcast/internal/fcmtest"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// runDispatcher sends the outbox to an FCM double until the test ends.
func runDispatcher(t *testing.T, f *fixture, now func() time.Time) *fcmtest.Server {
	t.Helper()
	double := fcmtest.New(t)
	runDispatcherOn(t, f, double, now)
	return double
}

// runDispatcherOn sends the outbox to double until the test ends.
func runDispatcherOn(t *testing.T, f *fixture, double *fcmtest.Server, now func() time.Time) {
	t.Helper()
	cfg := engine.DefaultDispatchConfig()
	cfg.Workers = 2
	cfg.ClaimIdle = 300 * time.Millisecond
	cfg.Block = 50 * time.Millisecond
	runCtx(t, engine.NewDispatcher(f.rdb, fcmSender(t, double), cfg, quiet, now).Run)
}

// fcmSender sends through firebase-admin-go to double.
func fcmSender(t *testing.T, double *fcmtest.Server) *push.FCM {
	t.Helper()
	sender, err := push.NewFCM(context.Background(), push.FCMConfig{ProjectID: "p", Endpoint: double.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return sender
}

// undelivered counts pushes in the outbox and waiting for a retry, read in
// one transaction: a push moving between the two is never missed.
func undelivered(t *testing.T, rdb redis.UniversalClient) int64 {
	ctx := context.Background()
	var xlen, zcard *redis.IntCmd
	if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		xlen = p.XLen(ctx, "nc:{outbox}:stream")
		zcard = p.ZCard(ctx, "nc:{outbox}:delayed")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return xlen.Val() + zcard.Val()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deadReasons lists the reasons in the dead-letter stream.
func deadReasons(t *testing.T, f *fixture) []string {
	msgs, err := f.rdb.XRange(context.Background(), "nc:{outbox}:dead", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.Values["reason"].(string))
	}
	return out
}

func (f *fixture) realClockPing(t *testing.T, deviceID string) engine.IssuedOffer {
	t.Helper()
	lat, lng := north(alexLat, alexLng, 10)
	res, err := settled(f.eng).Evaluate(context.Background(), engine.Ping{CustomerID: "c-42", DeviceID: deviceID, Lat: lat, Lng: lng}, engine.Options{})
	if err != nil || len(res.Offers) != 1 {
		t.Fatalf("ping: %+v %v", res, err)
	}
	return res.Offers[0]
}

// newRealClockFixture decides on the wall clock, with no quiet hours, so
// that it fires at any hour the tests run.
func newRealClockFixture(t *testing.T) *fixture { return newRealClockFixtureOn(t, srv.Client(t)) }

func newRealClockFixtureOn(t *testing.T, rdb redis.UniversalClient) *fixture {
	f := setup(t, rdb)
	cfg := engine.DefaultConfig()
	cfg.QuietHours = [2]int{}
	f.eng = engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, nil)
	return f
}

// A push costs its customer's keys two round trips of the dispatcher:
// the push's record read with what picks its device (consent, devices,
// when each was last seen), then the mark that it was sent. (The device
// was read in a round trip of its own before: three.)
func TestRoundTripsPerPush(t *testing.T) {
	f := newRealClockFixture(t)
	counted := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { counted.Close() })
	// As a server does at start: a script Redis does not know yet costs
	// its first call a round trip more.
	if err := engine.LoadScripts(context.Background(), counted); err != nil {
		t.Fatal(err)
	}
	trips := &roundTrips{part: "{c:c-42}"}
	counted.AddHook(trips)
	double := fcmtest.New(t)
	cfg := engine.DefaultDispatchConfig()
	cfg.Block = 50 * time.Millisecond
	runCtx(t, engine.NewDispatcher(counted, fcmSender(t, double), cfg, quiet, nil).Run)

	o := f.realClockPing(t, "d-1")
	eventually(t, "the push", func() bool { return len(double.Messages()) == 1 })
	eventually(t, "the outbox to empty", func() bool { return outboxLen(t, f.rdb) == 0 })
	if m := double.Messages()[0]; m.Token != "tok-1" || m.Data["coupon_code"] != o.CouponCode {
		t.Fatalf("push %+v for offer %+v", m, o)
	}
	if n := trips.n.Load(); n != 2 {
		t.Errorf("the push took %d round trips on its customer's keys, want 2", n)
	}
}

// A push whose code index or device the dispatcher cannot read (a key of
// the wrong type here; a Redis node away on a cluster) is neither sent
// nor dropped: it stays pending, and goes out once the key reads again.
func TestDispatcherRetriesWhatItCannotRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func(code string) string
	}{
		{"code index", func(code string) string { return "nc:code:" + code }},
		{"devices last seen", func(string) string { return "nc:{c:c-42}:device_seen" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRealClockFixture(t)
			o := f.realClockPing(t, "d-1")
			ctx := context.Background()
			key := tc.key(o.CouponCode)
			if err := f.rdb.Del(ctx, key).Err(); err != nil {
				t.Fatal(err)
			}
			if err := f.rdb.RPush(ctx, key, "not what it should be").Err(); err != nil {
				t.Fatal(err)
			}
			double := runDispatcher(t, f, nil)
			time.Sleep(700 * time.Millisecond) // past ClaimIdle: tried again meanwhile
			if n, dead := len(double.Messages()), deadReasons(t, f); n != 0 || len(dead) != 0 {
				t.Fatalf("unreadable %s: %d pushes sent, dead letters %v", key, n, dead)
			}
			if undelivered(t, f.rdb) != 1 {
				t.Fatalf("the push left the outbox: %d undelivered", undelivered(t, f.rdb))
			}
			// Readable again: a code index missing is written by the
			// dispatcher, device_seen is what older releases left.
			if err := f.rdb.Del(ctx, key).Err(); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the push", func() bool { return len(double.Messages()) == 1 })
			if m := double.Messages()[0]; m.Data["coupon_code"] != o.CouponCode || m.Token != "tok-1" {
				t.Fatalf("push %+v for offer %+v", m, o)
			}
			eventually(t, "the outbox to empty", func() bool { return outboxLen(t, f.rdb) == 0 })
		})
	}
}

func TestDispatcherSendsOnceAndAcknowledges(t *testing.T) {
	f := newRealClockFixture(t)
	double := runDispatcher(t, f, nil)
	o := f.realClockPing(t, "d-1")
	eventually(t, "the push", func() bool { return len(double.Messages()) == 1 })
	m := double.Messages()[0]
	if m.Token != "tok-1" || m.Data["coupon_code"] != o.CouponCode || m.Title != o.Title || m.Body != o.Body {
		t.Fatalf("push %+v for offer %+v", m, o)
	}
	eventually(t, "the outbox to empty", func() bool { return outboxLen(t, f.rdb) == 0 })
	time.Sleep(500 * time.Millisecond) // past ClaimIdle: nothing is sent again
	if len(double.Messages()) != 1 || len(deadReasons(t, f)) != 0 {
		t.Fatalf("%d messages, dead: %v", len(double.Messages()), deadReasons(t, f))
	}
}

func TestDispatcherPicksTheDevice(t *testing.T) {
	f := newRealClockFixture(t)
	ctx := context.Background()
	f.cust.PutDevice(ctx, "c-42", &rules.Device{ID: "d-2", FCMToken: "tok-2", Platform: "ios"})
	double := runDispatcher(t, f, nil)
	// A ping from d-2 marks it as the most recently seen device.
	lat, lng := north(alexLat, alexLng, 300)
	settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-2", Lat: lat, Lng: lng}, engine.Options{})
	// A ping naming no device: the push goes to the one seen last.
	f.realClockPing(t, "")
	eventually(t, "the push", func() bool { return len(double.Messages()) == 1 })
	if got := double.Messages()[0].Token; got != "tok-2" {
		t.Fatalf("sent to %s, want tok-2 (the device seen last)", got)
	}
}

func TestDispatcherFailures(t *testing.T) {
	tests := []struct {
		name       string
		prepare    func(f *fixture, double *fcmtest.Server)
		reason     string
		delivered  int
		deviceGone bool
	}{
		{"unregistered token is removed", func(f *fixture, d *fcmtest.Server) { d.FailToken("tok-1", "UNREGISTERED", 0) }, "unregistered", 0, true},
		{"invalid argument goes to dead letters", func(f *fixture, d *fcmtest.Server) { d.FailToken("tok-1", "INVALID_ARGUMENT", 0) }, "INVALID_ARGUMENT", 0, false},
		{"sender id mismatch goes to dead letters", func(f *fixture, d *fcmtest.Server) { d.FailToken("tok-1", "SENDER_ID_MISMATCH", 0) }, "SENDER_ID_MISMATCH", 0, false},
		{"third party auth error goes to dead letters", func(f *fixture, d *fcmtest.Server) { d.FailToken("tok-1", "THIRD_PARTY_AUTH_ERROR", 0) }, "THIRD_PARTY_AUTH_ERROR", 0, false},
		{"unavailable is retried", func(f *fixture, d *fcmtest.Server) { d.FailToken("tok-1", "UNAVAILABLE", 1) }, "", 1, false},
		{"quota exceeded is retried", func(f *fixture, d *fcmtest.Server) { d.FailToken("tok-1", "QUOTA_EXCEEDED", 1) }, "", 1, false},
		{"internal error is retried", func(f *fixture, d *fcmtest.Server) { d.FailToken("tok-1", "INTERNAL", 2) }, "", 1, false},
		{"push consent withdrawn while queued", func(f *fixture, d *fcmtest.Server) {
			anna, _ := f.cust.Get(context.Background(), "c-42")
			anna.Consent.Push = false
			f.cust.Put(context.Background(), anna)
		}, "no_consent", 0, false},
		{"device removed while queued", func(f *fixture, d *fcmtest.Server) {
			f.cust.DeleteDevice(context.Background(), "c-42", "d-1")
		}, "no_device", 0, true},
	}
	for _, be := range redistest.Backends(srv) {
		for _, tt := range tests {
			t.Run(be.Name+"/"+tt.name, func(t *testing.T) {
				dispatcherFailure(t, newRealClockFixtureOn(t, be.New(t)), tt.prepare, tt.reason, tt.delivered, tt.deviceGone)
			})
		}
	}
}

func dispatcherFailure(t *testing.T, f *fixture, prepare func(*fixture, *fcmtest.Server), reason string, delivered int, deviceGone bool) {
	f.realClockPing(t, "d-1") // queued before the dispatcher runs
	double := fcmtest.New(t)
	prepare(f, double)
	sender, _ := push.NewFCM(context.Background(), push.FCMConfig{ProjectID: "p", Endpoint: double.URL()})
	cfg := engine.DefaultDispatchConfig()
	cfg.ClaimIdle = 200 * time.Millisecond
	cfg.Block = 50 * time.Millisecond
	d := engine.NewDispatcher(f.rdb, sender, cfg, quiet, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	eventually(t, "the outbox and the retries to empty", func() bool { return undelivered(t, f.rdb) == 0 })
	if got := len(double.Messages()); got != delivered {
		t.Fatalf("delivered %d, want %d", got, delivered)
	}
	dead := deadReasons(t, f)
	if reason == "" && len(dead) != 0 || reason != "" && (len(dead) != 1 || dead[0] != reason) {
		t.Fatalf("dead letters %v, want %q", dead, reason)
	}
	n, _ := f.rdb.HLen(context.Background(), "nc:{c:c-42}:devices").Result()
	if gone := n == 0; gone != deviceGone {
		t.Fatalf("device gone: %v, want %v", gone, deviceGone)
	}
	// The rule's funnel counts the fate: sent, or failed with the reason.
	today := time.Now().UTC()
	rep, err := engine.Funnel(context.Background(), f.rdb, "latte", today, today)
	if err != nil {
		t.Fatal(err)
	}
	day := rep.Days[0]
	if reason == "" && day.Sent != delivered || reason != "" && day.Failed[reason] != 1 {
		t.Fatalf("funnel %+v for reason %q", day, reason)
	}
}

func TestDispatcherDropsExpiredPushes(t *testing.T) {
	f := newRealClockFixture(t)
	f.realClockPing(t, "d-1")
	// The dispatcher's clock is past the push TTL: the push is dropped, not sent late.
	later := func() time.Time { return time.Now().Add(engine.DefaultConfig().PushTTL + time.Second) }
	double := runDispatcher(t, f, later)
	eventually(t, "the outbox to empty", func() bool { return outboxLen(t, f.rdb) == 0 })
	if len(double.Messages()) != 0 {
		t.Fatal("an expired push was sent")
	}
	if dead := deadReasons(t, f); len(dead) != 1 || dead[0] != "expired" {
		t.Fatalf("dead letters %v", dead)
	}
}

// A worker that read a push and died leaves it pending; another worker
// takes it over after ClaimIdle.
func TestDispatcherReclaimsAbandonedPushes(t *testing.T) {
	f := newRealClockFixture(t)
	ctx := context.Background()
	f.realClockPing(t, "d-1")
	if err := f.rdb.XGroupCreateMkStream(ctx, "nc:{outbox}:stream", "senders", "0").Err(); err != nil {
		t.Fatal(err)
	}
	// The crashed worker: reads the entry and never acknowledges it.
	if _, err := f.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "senders", Consumer: "crashed", Streams: []string{"nc:{outbox}:stream", ">"}, Count: 1}).Result(); err != nil {
		t.Fatal(err)
	}
	double := runDispatcher(t, f, nil)
	eventually(t, "the reclaimed push", func() bool { return len(double.Messages()) == 1 })
	eventually(t, "the outbox to empty", func() bool { return outboxLen(t, f.rdb) == 0 })
}

// A phone that logs in as another customer leaves the first: a push
// queued for the first customer does not reach it, and the new
// customer's do.
func TestDeviceMovesToAnotherCustomer(t *testing.T) {
	f := newRealClockFixture(t)
	ctx := context.Background()
	f.realClockPing(t, "d-1") // a push for c-42, queued for d-1
	c7 := rules.Customer{ID: "c-7", Consent: rules.Consent{Location: true, Push: true}, Attributes: map[string]any{"tier": "gold"}}
	if _, err := f.cust.Put(ctx, &c7); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cust.PutDevice(ctx, "c-7", &rules.Device{ID: "d-1", FCMToken: "tok-1", Platform: "android"}); err != nil {
		t.Fatal(err)
	}
	if ds, _ := f.cust.Devices(ctx, "c-42"); len(ds) != 0 {
		t.Fatalf("c-42 still has %d devices", len(ds))
	}
	double := runDispatcher(t, f, nil)
	eventually(t, "the outbox to empty", func() bool { return outboxLen(t, f.rdb) == 0 })
	if n := len(double.Messages()); n != 0 {
		t.Fatalf("c-42's push reached the phone now logged in as c-7 (%d messages)", n)
	}
	if dead := deadReasons(t, f); len(dead) != 1 || dead[0] != "no_device" {
		t.Fatalf("dead letters %v", dead)
	}
	// c-7's own offer reaches the phone.
	lat, lng := north(alexLat, alexLng, 10)
	res, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "c-7", DeviceID: "d-1", Lat: lat, Lng: lng}, engine.Options{})
	if err != nil || len(res.Offers) != 1 {
		t.Fatalf("c-7: %+v %v", res, err)
	}
	eventually(t, "c-7's push", func() bool { return len(double.Messages()) == 1 })
	if m := double.Messages()[0]; m.Token != "tok-1" || m.Data["coupon_code"] != res.Offers[0].CouponCode {
		t.Fatalf("push %+v", m)
	}
}

// A push refused for a passing reason is tried again no sooner than the
// push service's Retry-After, and dropped as expired rather than sent late.
func TestDispatcherBacksOffAndHonoursRetryAfter(t *testing.T) {
	f := newRealClockFixture(t)
	f.realClockPing(t, "d-1")
	double := fcmtest.New(t)
	double.FailTokenRetryAfter("tok-1", "QUOTA_EXCEEDED", 1, 2)
	sender, _ := push.NewFCM(context.Background(), push.FCMConfig{ProjectID: "p", Endpoint: double.URL()})
	cfg := engine.DefaultDispatchConfig()
	cfg.Block = 50 * time.Millisecond
	d := engine.NewDispatcher(f.rdb, sender, cfg, quiet, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	eventually(t, "the retried push", func() bool { return len(double.Messages()) == 1 })
	if waited := time.Since(start); waited < 2*time.Second {
		t.Fatalf("retried after %v, before Retry-After's 2 s", waited)
	}
	if n, _ := f.rdb.ZCard(context.Background(), "nc:{outbox}:delayed").Result(); n != 0 {
		t.Fatalf("%d pushes still delayed", n)
	}
	if dead := deadReasons(t, f); len(dead) != 0 {
		t.Fatalf("dead letters %v", dead)
	}
}

func TestDispatcherDropsARetryThatWouldComeTooLate(t *testing.T) {
	f := newRealClockFixture(t)
	f.realClockPing(t, "d-1")
	double := fcmtest.New(t)
	double.FailTokenRetryAfter("tok-1", "QUOTA_EXCEEDED", 0, 3600) // past the push's 10 minutes
	sender, _ := push.NewFCM(context.Background(), push.FCMConfig{ProjectID: "p", Endpoint: double.URL()})
	cfg := engine.DefaultDispatchConfig()
	cfg.Block = 50 * time.Millisecond
	d := engine.NewDispatcher(f.rdb, sender, cfg, quiet, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	eventually(t, "the push dropped", func() bool { return len(deadReasons(t, f)) == 1 })
	if dead := deadReasons(t, f); dead[0] != "expired" || len(double.Messages()) != 0 {
		t.Fatalf("dead %v, sent %d", dead, len(double.Messages()))
	}
}

// A worker that sent a push and stopped before acknowledging it: the push
// is reclaimed, and not sent again because its coupon is marked sent.
func TestDispatcherDoesNotResendAPushMarkedSent(t *testing.T) {
	f := newRealClockFixture(t)
	ctx := context.Background()
	o := f.realClockPing(t, "d-1")
	if err := f.rdb.XGroupCreateMkStream(ctx, "nc:{outbox}:stream", "senders", "0").Err(); err != nil {
		t.Fatal(err)
	}
	// The stopped worker read the entry and FCM took the push; it marked
	// the coupon sent and stopped before the acknowledgement.
	if _, err := f.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "senders", Consumer: "stopped", Streams: []string{"nc:{outbox}:stream", ">"}, Count: 1}).Result(); err != nil {
		t.Fatal(err)
	}
	if n, err := f.rdb.HSet(ctx, engine.CouponRecordKey("c-42", o.CouponCode), "sent_at", time.Now().UnixMilli()).Result(); err != nil || n != 1 {
		t.Fatalf("mark the coupon's record sent: %d, %v", n, err)
	}
	double := runDispatcher(t, f, nil)
	eventually(t, "the outbox to empty", func() bool { return undelivered(t, f.rdb) == 0 })
	if n := len(double.Messages()); n != 0 {
		t.Fatalf("a push marked sent was sent again (%d)", n)
	}
}

// NEARCAST_PUSH_RATE: a replica sends no faster than its rate, whatever
// the backlog, and sends it all.
func TestDispatcherKeepsToItsRate(t *testing.T) {
	f := newRealClockFixture(t)
	ctx := context.Background()
	const n, perSecond = 21, 20.0
	for i := 0; i < n; i++ {
		// Queued as the engine queues: the push in its coupon's record,
		// a reference to it in the stream.
		code := fmt.Sprintf("RATE%08d", i)
		p, _ := json.Marshal(engine.Push{ID: code, CustomerID: "c-42", DeviceID: "d-1", Title: "t", Body: "b",
			Data: map[string]string{"coupon_code": code}, ExpiresAt: time.Now().Add(time.Minute), CreatedAt: time.Now()})
		ref, _ := json.Marshal(engine.Push{ID: code, CustomerID: "c-42"})
		rec := engine.CouponRecordKey("c-42", code)
		if err := f.rdb.HSet(ctx, rec, "push", string(p)).Err(); err != nil {
			t.Fatal(err)
		}
		f.rdb.Expire(ctx, rec, time.Hour)
		if err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: "nc:{outbox}:stream", Values: map[string]any{"push": string(ref)}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	double := fcmtest.New(t)
	sender, err := push.NewFCM(ctx, push.FCMConfig{ProjectID: "p", Endpoint: double.URL()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.DefaultDispatchConfig()
	cfg.Workers, cfg.Block, cfg.Rate = 4, 50*time.Millisecond, perSecond
	d := engine.NewDispatcher(f.rdb, sender, cfg, quiet, nil)
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.Run(runCtx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := time.Now()
	eventually(t, "every push", func() bool { return len(double.Messages()) == n })
	// A burst of 2, then one every 50 ms: at least 0.95 s for 21; a slow
	// machine only takes longer.
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Fatalf("%d pushes in %s: faster than %v a second", n, took, perSecond)
	}
}

// An engine that stopped after the customer's step issued an offer and
// before announcing it leaves the offer's intent behind: the dispatcher
// announces it once its deadline is past, and the push goes out once; an
// intent whose commit issued nothing is dropped. On every Redis,
// including a cluster, where the intent and the record live apart.
func TestDispatcherAnnouncesAnOfferItsEngineLeftBehind(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := newRealClockFixtureOn(t, be.New(t))
			ctx := context.Background()
			o := f.realClockPing(t, "d-1")
			// Undo the announcement, as if the engine had stopped first.
			for _, k := range []string{"nc:{outbox}:stream", "nc:code:" + o.CouponCode} {
				if err := f.rdb.Del(ctx, k).Err(); err != nil {
					t.Fatal(err)
				}
			}
			past := float64(time.Now().Add(-time.Minute).UnixMilli())
			never := engine.NewCodeSigner([]byte("k")).NewCode()
			f.rdb.ZAdd(ctx, "nc:{outbox}:intents", redis.Z{Score: past, Member: o.CouponCode + "c-42"},
				redis.Z{Score: past, Member: never + "c-42"})
			if _, err := engine.NewLedger(f.rdb, engine.NewCodeSigner([]byte("k")), nil, nil).Get(ctx, o.CouponCode); err == nil {
				t.Fatal("the coupon is found by its code before the dispatcher recovered it")
			}

			double := runDispatcher(t, f, nil)
			eventually(t, "the left-behind push to be sent", func() bool { return len(double.Messages()) >= 1 })
			eventually(t, "the intents to be settled", func() bool { return f.rdb.ZCard(ctx, "nc:{outbox}:intents").Val() == 0 })
			eventually(t, "the outbox to empty", func() bool { return undelivered(t, f.rdb) == 0 })
			msgs := double.Messages()
			if len(msgs) != 1 || msgs[0].Data["coupon_code"] != o.CouponCode {
				t.Fatalf("pushes %+v, want one for %s", msgs, o.CouponCode)
			}
			if _, err := engine.NewLedger(f.rdb, engine.NewCodeSigner([]byte("k")), nil, nil).Get(ctx, o.CouponCode); err != nil {
				t.Fatalf("the recovered coupon is not found by its code: %v", err)
			}
			// Sent: the record says so and no longer holds the push's text.
			rec := f.rdb.HGetAll(ctx, engine.CouponRecordKey("c-42", o.CouponCode)).Val()
			if rec["sent_at"] == "" || rec["push"] != "" {
				t.Fatalf("the sent coupon's record: %v", rec)
			}
		})
	}
}

// An offer announced whose code index was not written (the engine's write
// failed): the dispatcher writes the index before it sends the push, so
// the till finds the code the phone shows.
func TestDispatcherIndexesTheCodeBeforeSending(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := newRealClockFixtureOn(t, be.New(t))
			ctx := context.Background()
			o := f.realClockPing(t, "d-1")
			if err := f.rdb.Del(ctx, "nc:code:"+o.CouponCode).Err(); err != nil {
				t.Fatal(err)
			}
			double := runDispatcher(t, f, nil)
			eventually(t, "the push to be sent", func() bool { return len(double.Messages()) == 1 })
			if _, err := engine.NewLedger(f.rdb, engine.NewCodeSigner([]byte("k")), nil, nil).Get(ctx, o.CouponCode); err != nil {
				t.Fatalf("the pushed coupon is not found by its code: %v", err)
			}
		})
	}
}

// An offer's step that no replica had in time (here: a Redis with no
// replica, asked for one) is not given in the answer, which is 503; the
// coupon survived on its master, so a dispatcher announces it past the
// deadline and the push goes out once. Both for a customer's first ping,
// and for a customer seen before, whose ping inside the store writes the
// intent beside its presence step (speculate.go) and the code's index
// beside the step and its WAIT.
func TestOfferWithoutItsReplicaIsAnnouncedLater(t *testing.T) {
	t.Run("first ping", func(t *testing.T) { offerWithoutItsReplica(t, false) })
	t.Run("seen before", func(t *testing.T) { offerWithoutItsReplica(t, true) })
}

func offerWithoutItsReplica(t *testing.T, seen bool) {
	f := newRealClockFixture(t)
	cfg := engine.DefaultConfig()
	cfg.QuietHours = [2]int{}
	cfg.WaitReplicas, cfg.WaitTimeout = 1, 10*time.Millisecond
	f.eng = engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, nil)
	ctx := context.Background()
	if seen {
		lat, lng := north(alexLat, alexLng, 5000)
		if _, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng, TS: time.Now().Add(-10 * time.Minute)}, engine.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	lat, lng := north(alexLat, alexLng, 10)
	_, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng}, engine.Options{})
	if !errors.Is(err, engine.ErrUnavailable) {
		t.Fatalf("an offer no replica had: %v, want unavailable", err)
	}
	if n := f.rdb.ZCard(ctx, engine.KeyIntents).Val(); n != 1 {
		t.Fatalf("%d intents, want the offer's, left to the dispatcher", n)
	}
	double := runDispatcher(t, f, nil)
	deadline := time.Now().Add(15 * time.Second) // the commit window and the grace: about 7 s
	for len(double.Messages()) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(double.Messages()); n != 1 {
		t.Fatalf("%d pushes, want the surviving offer's one", n)
	}
}

// An engine that reserved a unit of a rule's budget and its store's daily
// cap, recorded it with its intent and died before its commit (or whose
// commit failed): past the deadline the dispatcher drops the intent and
// gives the units back, once.
func TestDispatcherGivesBackWhatAnAbandonedOfferReserved(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := newRealClockFixtureOn(t, be.New(t))
			ctx := context.Background()
			budget, storeDay := "nc:{rule:r1}:issued", "nc:{rule:r1}:store:s-alex:20261123"
			f.rdb.Set(ctx, budget, 5, 0)
			f.rdb.Set(ctx, storeDay, 2, 0)
			intent := engine.NewCodeSigner([]byte("k")).NewCode() + "c-42"
			f.rdb.ZAdd(ctx, "nc:{outbox}:intents", redis.Z{Score: float64(time.Now().Add(-time.Minute).UnixMilli()), Member: intent})
			f.rdb.HSet(ctx, "nc:{outbox}:reserved", intent, "r1\ts-alex\t"+storeDay+"\t"+budget)
			runDispatcher(t, f, nil)
			eventually(t, "the intent to be settled", func() bool { return f.rdb.ZCard(ctx, "nc:{outbox}:intents").Val() == 0 })
			eventually(t, "the units to be given back", func() bool {
				return f.rdb.Get(ctx, budget).Val() == "4" && f.rdb.Get(ctx, storeDay).Val() == "1"
			})
			if n := f.rdb.HLen(ctx, "nc:{outbox}:reserved").Val(); n != 0 {
				t.Fatalf("%d reservation records left", n)
			}
			time.Sleep(300 * time.Millisecond) // a second give-back would show by now
			if f.rdb.Get(ctx, budget).Val() != "4" {
				t.Fatalf("budget %s after the give-back, want 4", f.rdb.Get(ctx, budget).Val())
			}
		})
	}
}

package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/hooktest"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testConfig backs off in milliseconds, so that retries happen within a test.
func testConfig() webhook.Config {
	return webhook.Config{MaxAge: 20 * time.Second, BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		RetryAfterMax: 5 * time.Second, Timeout: 300 * time.Millisecond, Poll: 20 * time.Millisecond,
		Buffer: 100, LeaseTTL: time.Second}
}

// env is a Redis with a store, a live view and an emitter on it.
type env struct {
	rdb   redis.UniversalClient
	store *webhook.Store
	live  *webhook.Live
	em    *webhook.Emitter
	seq   int // numbers the events emitted, across calls
}

func newEnv(t *testing.T, rdb redis.UniversalClient) *env {
	t.Helper()
	e := &env{rdb: rdb, store: webhook.NewStore(rdb), em: webhook.NewEmitter(rdb, 10000)}
	e.live = webhook.NewLive(e.store, quiet)
	e.live.PollEvery = 100 * time.Millisecond
	if err := e.live.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	run(t, e.live.Run)
	return e
}

// run runs f until the test ends.
func run(t *testing.T, f func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f(ctx) })
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// deliver starts a deliverer until the test ends (or stop).
func (e *env) deliver(t *testing.T, cfg webhook.Config) (*webhook.Deliverer, func()) {
	d := webhook.NewDeliverer(e.rdb, e.live, cfg, quiet)
	return d, run(t, d.Run)
}

// subscribe saves an enabled subscription to r's URL for events (all when
// none) and waits until the live view has it.
func (e *env) subscribe(t *testing.T, id string, r *hooktest.Receiver, secret string, events ...string) {
	t.Helper()
	if len(events) == 0 {
		events = webhook.EventTypes
	}
	s := &webhook.Subscription{ID: id, URL: r.URL(), Events: events, Secret: secret, Enabled: true}
	if _, err := e.store.Put(context.Background(), s, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the subscription live", func() bool {
		snap := e.live.Current()
		return snap != nil && snap.Subs[id] != nil && snap.Subs[id].Version == s.Version
	})
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

// emitSeq emits n events for each customer, numbered in data.seq in the
// order emitted.
func (e *env) emitSeq(t *testing.T, customers []string, n int, typ string) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		for _, c := range customers {
			ev := webhook.Event{Type: typ, CustomerID: c, StoreID: "s-1", RuleID: "r-1",
				Data: map[string]any{"seq": e.seq}}
			e.seq++
			ev.ID = fmt.Sprintf("evt-%s-%d-%d", c, i, time.Now().UnixNano())
			if err := e.em.Emit(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, ev.ID)
		}
	}
	return ids
}

func seqOf(ev webhook.Event) int {
	v, _ := ev.Data["seq"].(float64)
	return int(v)
}

// checkOrder checks that every event of ids was accepted, each
// customer's in the order emitted (the first acceptance of each), and
// every request signed right.
func checkOrder(t *testing.T, r *hooktest.Receiver, ids []string) {
	t.Helper()
	reqs := r.Requests()
	for _, q := range reqs {
		if q.VerifyErr != nil {
			t.Errorf("request %s: signature: %v", q.ID, q.VerifyErr)
		}
	}
	got := hooktest.DistinctAccepted(reqs)
	seen := map[string]bool{}
	last := map[string]int{}
	for _, ev := range got {
		seen[ev.ID] = true
		if ev.Type == webhook.TypeCustomerErased {
			continue
		}
		if s, ok := last[ev.CustomerID]; ok && seqOf(ev) <= s {
			t.Errorf("customer %s: event %d after %d", ev.CustomerID, seqOf(ev), s)
		}
		last[ev.CustomerID] = seqOf(ev)
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("event %s never delivered", id)
		}
	}
}

func TestDeliversEveryEventInOrderSigned(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.New(t))
			secret := webhook.NewSecret()
			r := hooktest.New(t, secret)
			e.subscribe(t, "crm", r, secret)
			d, _ := e.deliver(t, testConfig())
			customers := []string{"anna", "ben", "cleo", "dev"}
			ids := e.emitSeq(t, customers, 15, webhook.TypeEnter)
			if err := r.WaitAccepted(len(ids), 10*time.Second); err != nil {
				t.Fatalf("%v: %d of %d", err, len(r.Accepted()), len(ids))
			}
			checkOrder(t, r, ids)
			eventually(t, "health", func() bool { return d.Health()["crm"].Delivered == int64(len(ids)) })
			if h := d.Health()["crm"]; h.Lag != 0 || h.Dead != 0 {
				t.Errorf("health %+v", h)
			}
		})
	}
}

func TestFailureRetriedThenDelivered(t *testing.T) {
	e := newEnv(t, srv.Client(t))
	secret := webhook.NewSecret()
	r := hooktest.New(t, secret)
	r.Then(hooktest.Fail, hooktest.Fail)
	e.subscribe(t, "crm", r, secret)
	d, _ := e.deliver(t, testConfig())
	ids := e.emitSeq(t, []string{"anna"}, 3, webhook.TypeEnter)
	if err := r.WaitAccepted(3, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, r, ids)
	reqs := r.Requests()
	if len(reqs) != 5 || reqs[0].ID != ids[0] || reqs[1].ID != ids[0] || reqs[2].ID != ids[0] {
		t.Fatalf("want the first event tried three times before the others, got %d requests", len(reqs))
	}
	if reqs[0].Status != 500 || reqs[2].Status != 200 {
		t.Errorf("statuses %d, %d", reqs[0].Status, reqs[2].Status)
	}
	eventually(t, "retries counted", func() bool { h := d.Health()["crm"]; return h.Retried == 2 && h.Delivered == 3 })
}

func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t, srv.Client(t))
	secret := webhook.NewSecret()
	r := hooktest.New(t, secret)
	r.Then(hooktest.TooMany(1))
	e.subscribe(t, "crm", r, secret)
	e.deliver(t, testConfig())
	ids := e.emitSeq(t, []string{"anna"}, 1, webhook.TypeEnter)
	if err := r.WaitAccepted(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	reqs := r.Requests()
	if len(reqs) != 2 || reqs[0].ID != ids[0] || reqs[0].Status != 429 {
		t.Fatalf("requests %+v", reqs)
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 950*time.Millisecond {
		t.Errorf("tried again after %v, before Retry-After: 1", gap)
	}
}

func TestHangingReceiverHoldsUpNoOtherSubscription(t *testing.T) {
	e := newEnv(t, srv.Client(t))
	secret := webhook.NewSecret()
	hung, ok := hooktest.New(t, secret), hooktest.New(t, secret)
	hung.Answer(hooktest.Hang)
	e.subscribe(t, "hung", hung, secret)
	e.subscribe(t, "ok", ok, secret)
	d, _ := e.deliver(t, testConfig())
	ids := e.emitSeq(t, []string{"anna", "ben", "cleo"}, 10, webhook.TypeDwell)
	start := time.Now()
	if err := ok.WaitAccepted(len(ids), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// 30 events behind a receiver that takes the whole timeout (300 ms)
	// would take 9 s one after the other.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the healthy subscription took %v", took)
	}
	checkOrder(t, ok, ids)
	if len(hung.Accepted()) != 0 {
		t.Error("the hung receiver answered")
	}
	eventually(t, "the hung subscription's lag", func() bool { return d.Health()["hung"].Lag > 0 })
}

func TestFailingCustomerHoldsBackOnlyItself(t *testing.T) {
	e := newEnv(t, srv.Client(t))
	secret := webhook.NewSecret()
	r := hooktest.New(t, secret)
	var mu sync.Mutex
	failAnna := true
	r.Decide(func(q hooktest.Request) hooktest.Answer {
		mu.Lock()
		defer mu.Unlock()
		if failAnna && q.Event.CustomerID == "anna" {
			return hooktest.Fail
		}
		return hooktest.OK
	})
	e.subscribe(t, "crm", r, secret)
	e.deliver(t, testConfig())
	annaIDs := e.emitSeq(t, []string{"anna"}, 5, webhook.TypeEnter)
	others := e.emitSeq(t, []string{"ben", "cleo"}, 5, webhook.TypeEnter)
	if err := r.WaitAccepted(len(others), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, q := range r.Requests() {
		if q.Event.CustomerID == "anna" && q.ID != annaIDs[0] {
			t.Fatalf("anna's later event %s tried while her first fails", q.ID)
		}
	}
	mu.Lock()
	failAnna = false
	mu.Unlock()
	all := append(annaIDs, others...)
	if err := r.WaitAccepted(len(all), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, r, all)
}

func TestDeadReceiverComesBackAndGetsEverything(t *testing.T) {
	e := newEnv(t, srv.Client(t))
	secret := webhook.NewSecret()
	r := hooktest.New(t, secret)
	e.subscribe(t, "crm", r, secret)
	d, _ := e.deliver(t, testConfig())
	first := e.emitSeq(t, []string{"anna", "ben"}, 3, webhook.TypeEnter)
	if err := r.WaitAccepted(len(first), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	more := e.emitSeq(t, []string{"anna", "ben", "cleo"}, 10, webhook.TypeExit)
	eventually(t, "failures counted", func() bool {
		h := d.Health()["crm"]
		return h.Retried >= 3 && h.Lag == int64(len(more))
	})
	if h := d.Health()["crm"]; h.LastStatus != 0 || h.LastError == "" || h.OldestAge <= 0 {
		t.Errorf("health while dead: %+v", h)
	}
	time.Sleep(300 * time.Millisecond)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	all := append(first, more...)
	if err := r.WaitAccepted(len(all), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, r, all)
}

func TestMaxAgeDeadLettersReplayAndDrop(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.New(t))
			secret := webhook.NewSecret()
			r := hooktest.New(t, secret)
			r.Answer(hooktest.Fail)
			e.subscribe(t, "crm", r, secret)
			cfg := testConfig()
			cfg.MaxAge = 300 * time.Millisecond
			d, _ := e.deliver(t, cfg)
			ids := e.emitSeq(t, []string{"anna", "ben"}, 2, webhook.TypeOfferIssued)
			ctx := context.Background()
			eventually(t, "dead letters", func() bool {
				_, n, _ := e.store.DeadLetters(ctx, "crm", 0, 10)
				return n == int64(len(ids))
			})
			dead, _, err := e.store.DeadLetters(ctx, "crm", 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			for _, dl := range dead {
				if dl.Attempts < 1 || dl.LastStatus != 500 || dl.Event.Type != webhook.TypeOfferIssued {
					t.Errorf("dead letter %+v", dl)
				}
			}
			// The health counts a dead letter once it is written: the last
			// one may be stored a moment before it is counted.
			eventually(t, "the health to count the dead letters", func() bool {
				h := d.Health()["crm"]
				return h.Dead == int64(len(ids)) && h.Lag == 0
			})
			r.Answer(hooktest.OK)
			n, err := e.store.ReplayDead(ctx, "crm")
			if err != nil || n != len(ids) {
				t.Fatalf("replayed %d, %v", n, err)
			}
			if err := r.WaitAccepted(len(ids), 5*time.Second); err != nil {
				t.Fatal(err)
			}
			checkOrder(t, r, ids)
			if _, n, _ := e.store.DeadLetters(ctx, "crm", 0, 10); n != 0 {
				t.Errorf("%d dead letters left after replay", n)
			}

			r.Answer(hooktest.Fail)
			more := e.emitSeq(t, []string{"cleo"}, 2, webhook.TypeOfferIssued)
			eventually(t, "more dead letters", func() bool {
				_, n, _ := e.store.DeadLetters(ctx, "crm", 0, 10)
				return n == 2
			})
			if n, err := e.store.DropDead(ctx, "crm", more[0]); err != nil || n != 1 {
				t.Fatalf("dropped %d, %v", n, err)
			}
			if n, err := e.store.DropDead(ctx, "crm"); err != nil || n != 1 {
				t.Fatalf("dropped %d, %v", n, err)
			}
		})
	}
}

func TestReplayGoesToItsSubscriptionOnly(t *testing.T) {
	e := newEnv(t, srv.Client(t))
	secret := webhook.NewSecret()
	failing, other := hooktest.New(t, secret), hooktest.New(t, secret)
	failing.Answer(hooktest.Fail)
	e.subscribe(t, "a", failing, secret)
	e.subscribe(t, "b", other, secret)
	cfg := testConfig()
	cfg.MaxAge = 200 * time.Millisecond
	e.deliver(t, cfg)
	ids := e.emitSeq(t, []string{"anna"}, 1, webhook.TypeEnter)
	ctx := context.Background()
	eventually(t, "a dead letter", func() bool { _, n, _ := e.store.DeadLetters(ctx, "a", 0, 1); return n == 1 })
	failing.Answer(hooktest.OK)
	if _, err := e.store.ReplayDead(ctx, "a", ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := failing.WaitAccepted(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(other.Requests()); n != 1 {
		t.Errorf("the other subscription got %d requests, want the event once", n)
	}
}

func TestErasureDropsUndeliveredAndTellsEveryone(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			e := newEnv(t, be.New(t))
			secret := webhook.NewSecret()
			r, narrow := hooktest.New(t, secret), hooktest.New(t, secret)
			var mu sync.Mutex
			down := true
			r.Decide(func(q hooktest.Request) hooktest.Answer {
				mu.Lock()
				defer mu.Unlock()
				if down {
					return hooktest.Fail
				}
				return hooktest.OK
			})
			e.subscribe(t, "crm", r, secret)
			// A subscription to redemptions only still hears of the erasure.
			e.subscribe(t, "till", narrow, secret, webhook.TypeCouponRedeemed)
			ctx := context.Background()
			// A dead letter of the customer, as a past failure left it.
			if err := e.rdb.LPush(ctx, "nc:{hookdead:crm}:list", `{"event":{"id":"old","type":"enter","customer_id":"anna"}}`,
				`{"event":{"id":"old2","type":"enter","customer_id":"ben"}}`).Err(); err != nil {
				t.Fatal(err)
			}
			d, _ := e.deliver(t, testConfig())
			anna := e.emitSeq(t, []string{"anna"}, 5, webhook.TypeEnter)
			ben := e.emitSeq(t, []string{"ben"}, 3, webhook.TypeEnter)
			eventually(t, "anna's first try", func() bool { return d.Health()["crm"].Retried >= 2 })
			removed, err := e.em.EraseCustomer(ctx, "anna")
			if err != nil {
				t.Fatal(err)
			}
			if removed != 6 { // 5 entries and a dead letter
				t.Errorf("removed %d, want 6", removed)
			}
			mu.Lock()
			down = false
			mu.Unlock()
			erasedTo := func(rc *hooktest.Receiver) bool {
				for _, ev := range hooktest.DistinctAccepted(rc.Requests()) {
					if ev.Type == webhook.TypeCustomerErased && ev.CustomerID == "anna" {
						return true
					}
				}
				return false
			}
			eventually(t, "customer.erased to both", func() bool { return erasedTo(r) && erasedTo(narrow) })
			if err := r.WaitAccepted(len(ben)+1, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			checkOrder(t, r, ben)
			for _, ev := range hooktest.DistinctAccepted(r.Requests()) {
				for _, id := range anna {
					if ev.ID == id {
						t.Errorf("anna's event %s delivered after her erasure", id)
					}
				}
			}
			dead, _, _ := e.store.DeadLetters(ctx, "crm", 0, 10)
			if len(dead) != 1 || dead[0].Event.CustomerID != "ben" {
				t.Errorf("dead letters after erasure: %+v", dead)
			}
			left, err := e.rdb.XRange(ctx, webhook.StreamKey(webhook.ShardOf("anna")), "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range left {
				if m.Values["customer"] == "anna" && m.Values["type"] != webhook.TypeCustomerErased {
					t.Errorf("anna's entry %s left in the stream", m.ID)
				}
			}
		})
	}
}

// A fact decided before a customer's erasure but relayed after it (the
// relay read the journal as the erasure ran) is not delivered; the
// customer's facts decided after the erasure are.
func TestFactsRelayedAfterAnErasureNotDelivered(t *testing.T) {
	e := newEnv(t, srv.Client(t))
	secret := webhook.NewSecret()
	r := hooktest.New(t, secret)
	e.subscribe(t, "crm", r, secret)
	e.deliver(t, testConfig())
	ctx := context.Background()
	erasedAt := time.Now().UTC().Truncate(time.Millisecond)
	if _, err := e.em.EraseCustomer(ctx, "anna"); err != nil {
		t.Fatal(err)
	}
	late := webhook.Event{ID: "evt_late", Type: webhook.TypeEnter, CustomerID: "anna", StoreID: "s-1", At: erasedAt.Add(-time.Second)}
	after := webhook.Event{ID: "evt_after", Type: webhook.TypeEnter, CustomerID: "anna", StoreID: "s-1", At: erasedAt.Add(time.Second)}
	if err := e.em.Emit(ctx, late, after); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitAccepted(2, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range hooktest.DistinctAccepted(r.Accepted()) {
		got = append(got, ev.Type+" "+ev.ID)
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], webhook.TypeCustomerErased) || got[1] != "enter evt_after" {
		t.Fatalf("delivered %q", got)
	}
}

func TestDelivererStoppedMidStreamLosesNothing(t *testing.T) {
	e := newEnv(t, srv.Client(t))
	secret := webhook.NewSecret()
	r := hooktest.New(t, secret)
	r.Answer(hooktest.Answer{Delay: 5 * time.Millisecond})
	e.subscribe(t, "crm", r, secret)
	_, stop := e.deliver(t, testConfig())
	customers := []string{"anna", "ben", "cleo", "dev", "eve", "finn"}
	ids := e.emitSeq(t, customers, 20, webhook.TypeCouponOpened)
	if err := r.WaitAccepted(20, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	stop() // mid-stream: requests in flight are abandoned
	before := len(hooktest.DistinctAccepted(r.Requests()))
	if before >= len(ids) {
		t.Fatalf("all %d delivered before the stop: the test shows nothing", before)
	}
	more := e.emitSeq(t, customers, 5, webhook.TypeCouponOpened)
	e.deliver(t, testConfig())
	all := append(ids, more...)
	if err := r.WaitAccepted(len(all), 10*time.Second); err != nil {
		t.Fatalf("%v: %d of %d", err, len(hooktest.DistinctAccepted(r.Requests())), len(all))
	}
	checkOrder(t, r, all)
	t.Logf("%d delivered before the stop, %d requests for %d events", before, len(r.Requests()), len(all))
}

func TestTwoDeliverersShareTheShards(t *testing.T) {
	e := newEnv(t, srv.Client(t))
	secret := webhook.NewSecret()
	r := hooktest.New(t, secret)
	e.subscribe(t, "crm", r, secret)
	e.deliver(t, testConfig())
	e.deliver(t, testConfig())
	ids := e.emitSeq(t, []string{"anna", "ben", "cleo", "dev"}, 10, webhook.TypeEnter)
	if err := r.WaitAccepted(len(ids), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, r, ids)
	if n := len(r.Requests()); n != len(ids) {
		t.Errorf("%d requests for %d events: a shard delivered twice", n, len(ids))
	}
}

func TestSubscriptionStore(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			rdb := be.New(t)
			ctx := context.Background()
			st := webhook.NewStore(rdb)
			s := &webhook.Subscription{ID: "crm", URL: "https://crm.example.com/hook", Events: []string{"exit", "enter", "enter"}, Enabled: true}
			created, err := st.Put(ctx, s, 0)
			if err != nil || !created || s.Version != 1 || s.Secret == "" {
				t.Fatalf("put: %v %v %+v", created, err, s)
			}
			if got := s.Events; len(got) != 2 || got[0] != "enter" {
				t.Errorf("events not normalized: %v", got)
			}
			s.URL = "https://crm.example.com/hook2"
			if _, err := st.Put(ctx, s, 5); !errors.Is(err, webhook.ErrConflict) {
				t.Errorf("stale If-Match: %v", err)
			}
			if created, err := st.Put(ctx, s, 1); err != nil || created || s.Version != 2 {
				t.Fatalf("second put: %v %v v%d", created, err, s.Version)
			}
			got, err := st.Get(ctx, "crm")
			if err != nil || got.URL != s.URL || got.Version != 2 {
				t.Fatalf("get: %+v %v", got, err)
			}
			all, err := st.List(ctx)
			if err != nil || len(all) != 1 {
				t.Fatalf("list: %v %v", all, err)
			}
			if err := st.Delete(ctx, "crm"); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Get(ctx, "crm"); !errors.Is(err, webhook.ErrNotFound) {
				t.Errorf("get after delete: %v", err)
			}
			if err := st.Delete(ctx, "crm"); !errors.Is(err, webhook.ErrNotFound) {
				t.Errorf("second delete: %v", err)
			}
			if _, err := st.Put(ctx, &webhook.Subscription{ID: "crm", URL: "http://example.com/", Events: []string{"enter"}}, 0); err == nil {
				t.Error("http to a public host accepted")
			}
		})
	}
}

func TestLiveFollowsChangesAcrossReplicas(t *testing.T) {
	writer := webhook.NewStore(srv.Client(t))
	other := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { other.Close() })
	live := webhook.NewLive(webhook.NewStore(other), quiet)
	live.PollEvery = time.Hour // the notice alone must do
	if err := live.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	run(t, live.Run)
	time.Sleep(100 * time.Millisecond) // subscribed
	start := time.Now()
	s := &webhook.Subscription{ID: "crm", URL: "https://crm.example.com/", Events: []string{"enter"}, Enabled: true}
	if _, err := writer.Put(context.Background(), s, 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the replica to see it", func() bool { return live.Current().Subs["crm"] != nil })
	if took := time.Since(start); took > time.Second {
		t.Errorf("took %v", took)
	}
	if err := writer.Delete(context.Background(), "crm"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the replica to drop it", func() bool { return live.Current().Subs["crm"] == nil })
}

func TestNormalize(t *testing.T) {
	secret := webhook.NewSecret()
	cases := []struct {
		name   string
		s      webhook.Subscription
		fields []string // faults expected, by field
	}{
		{"https", webhook.Subscription{ID: "a", URL: "https://x.example/h", Events: []string{"enter"}}, nil},
		{"loopback v4", webhook.Subscription{ID: "a", URL: "http://127.0.0.1:8080/h", Events: []string{"enter"}}, nil},
		{"loopback v6", webhook.Subscription{ID: "a", URL: "http://[::1]:8080/h", Events: []string{"enter"}}, nil},
		{"localhost", webhook.Subscription{ID: "a", URL: "http://localhost/h", Events: []string{"enter"}, Secret: secret}, nil},
		{"http public", webhook.Subscription{ID: "a", URL: "http://x.example/h", Events: []string{"enter"}}, []string{"url"}},
		{"http private", webhook.Subscription{ID: "a", URL: "http://10.0.0.1/h", Events: []string{"enter"}}, []string{"url"}},
		{"ftp", webhook.Subscription{ID: "a", URL: "ftp://x.example/h", Events: []string{"enter"}}, []string{"url"}},
		{"credentials", webhook.Subscription{ID: "a", URL: "https://u:p@x.example/h", Events: []string{"enter"}}, []string{"url"}},
		{"relative", webhook.Subscription{ID: "a", URL: "/h", Events: []string{"enter"}}, []string{"url"}},
		{"everything wrong", webhook.Subscription{ID: "a{b}", URL: "", Events: []string{"enter", "teleport"},
			StoreIDs: []string{"ok", "not ok"}, StoreTags: []string{""}, RuleIDs: []string{"r{1}"}, Secret: "whsec_c2hvcnQ="},
			[]string{"events[1]", "id", "rule_ids[0]", "secret", "store_ids[1]", "store_tags[0]", "url"}},
		{"no events", webhook.Subscription{ID: "a", URL: "https://x.example/h"}, []string{"events"}},
		{"secret without prefix", webhook.Subscription{ID: "a", URL: "https://x.example/h", Events: []string{"enter"}, Secret: "abc"}, []string{"secret"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.s.Normalize()
			var ve *rules.ValidationError
			if len(c.fields) == 0 {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				if c.s.Secret == "" {
					t.Error("no secret made")
				}
				return
			}
			if !errors.As(err, &ve) {
				t.Fatalf("want a ValidationError, got %v", err)
			}
			var got []string
			for _, f := range ve.Faults {
				got = append(got, f.Field)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.fields) {
				t.Errorf("faults at %v, want %v (%v)", got, c.fields, err)
			}
		})
	}
}

func TestWants(t *testing.T) {
	tags := func(store string) []string {
		if store == "s-berlin" {
			return []string{"berlin", "flagship"}
		}
		return nil
	}
	s := webhook.Subscription{Events: []string{"enter", "coupon.redeemed"}, StoreIDs: []string{"s-1"}, StoreTags: []string{"flagship"}, RuleIDs: []string{"r-1"}}
	for _, c := range []struct {
		ev   webhook.Event
		want bool
	}{
		{webhook.Event{Type: "enter", StoreID: "s-1", RuleID: "r-1"}, true},
		{webhook.Event{Type: "enter", StoreID: "s-berlin", RuleID: "r-1"}, true},
		{webhook.Event{Type: "enter", StoreID: "s-2", RuleID: "r-1"}, false},
		{webhook.Event{Type: "enter", StoreID: "s-1", RuleID: "r-2"}, false},
		{webhook.Event{Type: "exit", StoreID: "s-1", RuleID: "r-1"}, false},
		{webhook.Event{Type: "enter", RuleID: "r-1"}, false},
		{webhook.Event{Type: "customer.erased", CustomerID: "anna"}, true},
	} {
		if got := s.Wants(&c.ev, tags); got != c.want {
			t.Errorf("%+v: %v, want %v", c.ev, got, c.want)
		}
	}
}

func TestEmitRefusesCoordinatesAndUnknownTypes(t *testing.T) {
	rdb, _ := redistest.Mini(t)
	em := webhook.NewEmitter(rdb, 0)
	ctx := context.Background()
	if err := em.Emit(ctx, webhook.Event{Type: "enter", CustomerID: "anna", Data: map[string]any{"Lat": 52.5}}); err == nil {
		t.Error("coordinates accepted")
	}
	if err := em.Emit(ctx, webhook.Event{Type: "teleport", CustomerID: "anna"}); err == nil {
		t.Error("unknown type accepted")
	}
	if err := em.Emit(ctx, webhook.Event{Type: "enter", CustomerID: "an{na}"}); err == nil {
		t.Error("bad customer id accepted")
	}
	if err := em.Emit(ctx, webhook.Event{Type: "enter", CustomerID: "anna"}, webhook.Event{Type: "exit", CustomerID: "anna"}); err != nil {
		t.Fatal(err)
	}
	msgs, err := rdb.XRange(ctx, webhook.StreamKey(webhook.ShardOf("anna")), "-", "+").Result()
	if err != nil || len(msgs) != 2 || msgs[0].Values["type"] != "enter" || msgs[0].Values["id"] == "" {
		t.Fatalf("stream: %v %v", msgs, err)
	}
}

func TestSignAndVerify(t *testing.T) {
	// The Standard Webhooks reference vector.
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	at := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	sig, err := webhook.Sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", at, body)
	if err != nil {
		t.Fatal(err)
	}
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; sig != want {
		t.Errorf("signature %s, want %s", sig, want)
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	h.Set("webhook-signature", "v1,bm9wZQ== "+sig)
	if err := webhook.VerifyAt(secret, h, body, at.Add(time.Minute)); err != nil {
		t.Errorf("verify: %v", err)
	}
	if err := webhook.VerifyAt(secret, h, []byte(`{"test": 1}`), at); !errors.Is(err, webhook.ErrSignature) {
		t.Errorf("tampered body: %v", err)
	}
	if err := webhook.VerifyAt(secret, h, body, at.Add(10*time.Minute)); !errors.Is(err, webhook.ErrTimestamp) {
		t.Errorf("old timestamp: %v", err)
	}
	if err := webhook.VerifyAt(webhook.NewSecret(), h, body, at); !errors.Is(err, webhook.ErrSignature) {
		t.Errorf("other secret: %v", err)
	}
	if err := webhook.Verify(secret, http.Header{}, body); !errors.Is(err, webhook.ErrMissingHeaders) {
		t.Errorf("no headers: %v", err)
	}
}

package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// A scripted day: 40 customers walk into a store where a rule holds out
// half of them; the offers are sent, some opened and redeemed; the next
// day some customers of each group come back. The funnel counts each step
// exactly, and the holdout comparison shows the shares who returned.
func TestFunnelAfterAScriptedDay(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			r := capsRule(rules.Caps{})
			r.HoldoutPct = 50
			f := setup(t, be.New(t), r)
			f.clock.t = time.Now().UTC().Truncate(time.Second)
			day := f.clock.t.Format("2006-01-02")
			cfg := engine.DefaultConfig()
			cfg.QuietHours, cfg.MaxOffersPerDay = [2]int{}, 0
			eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("test-secret")), cfg, quiet, f.clock.Now)
			ctx := context.Background()
			const n = 40
			var codes []string
			held := map[string]bool{}
			for i := range n {
				id := fmt.Sprint("f", i)
				addCustomer(t, f, id)
				if _, err := f.cust.PutDevice(ctx, id, &rules.Device{ID: "d" + id, FCMToken: "tok-" + id, Platform: "ios"}); err != nil {
					t.Fatal(err)
				}
				la, ln := north(alexLat, alexLng, 0)
				res, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: id, Lat: la, Lng: ln, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now()}, engine.Options{})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Offers) == 1 {
					codes = append(codes, res.Offers[0].CouponCode)
				} else {
					held[id] = true
				}
				la, ln = north(alexLat, alexLng, 500) // and out again
				settled(eng).Evaluate(ctx, engine.Ping{CustomerID: id, Lat: la, Lng: ln, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now().Add(time.Minute)}, engine.Options{})
			}
			treated := n - len(held)
			if treated == 0 || len(held) == 0 {
				t.Fatalf("the 50 %% holdout split %d customers into %d and %d", n, treated, len(held))
			}
			double := runDispatcher(t, f, f.clock.Now)
			eventually(t, "every offer sent", func() bool { return len(double.Messages()) == treated })
			eventually(t, "every push acknowledged", func() bool { return undelivered(t, f.rdb) == 0 })
			ledger := engine.NewLedger(f.rdb, engine.NewCodeSigner([]byte("test-secret")), nil, f.clock.Now)
			for i, code := range codes[:3] {
				ledger.Opened(ctx, code, "")
				ledger.Opened(ctx, code, "") // the first open counts
				if i < 2 {
					if _, err := ledger.Redeem(ctx, code, "s-alex"); err != nil {
						t.Fatal(err)
					}
				}
			}
			// The next day, 4 treated and 2 held-out customers come back.
			f.clock.Advance(24 * time.Hour)
			backTreated, backHeld := 0, 0
			for i := range n {
				id := fmt.Sprint("f", i)
				if held[id] && backHeld < 2 || !held[id] && backTreated < 4 {
					if held[id] {
						backHeld++
					} else {
						backTreated++
					}
					la, ln := north(alexLat, alexLng, 0)
					settled(eng).Evaluate(ctx, engine.Ping{CustomerID: id, Lat: la, Lng: ln, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now()}, engine.Options{})
				}
			}
			from, _ := time.Parse("2006-01-02", day)
			rep, err := engine.Funnel(ctx, f.rdb, "capped", from, from)
			if err != nil {
				t.Fatal(err)
			}
			d := rep.Days[0]
			want := engine.FunnelDay{Date: day, Evaluated: n, Matched: n, Holdout: len(held), Issued: treated, Sent: treated,
				Opened: 3, Redeemed: 2, ReturnedTreated: 4, ReturnedHoldout: 2}
			if d.Evaluated != want.Evaluated || d.Matched != want.Matched || d.Holdout != want.Holdout || d.Issued != want.Issued ||
				d.Sent != want.Sent || d.Opened != want.Opened || d.Redeemed != want.Redeemed ||
				d.ReturnedTreated != want.ReturnedTreated || d.ReturnedHoldout != want.ReturnedHoldout {
				t.Fatalf("funnel %+v\nwant   %+v", d, want)
			}
			hc := rep.HoldoutComparison
			if hc.Treated != treated || hc.TreatedReturned != 4 || hc.Holdout != len(held) || hc.HoldoutReturned != 2 ||
				hc.TreatedShare != 4/float64(treated) || hc.HoldoutShare != 2/float64(len(held)) {
				t.Fatalf("holdout comparison %+v", hc)
			}
		})
	}
}

// commandsTo counts the commands a client sends whose first key holds
// part, by name (a script's own commands are Redis's, not counted).
type commandsTo struct {
	part string
	mu   sync.Mutex
	n    map[string]int
}

func (c *commandsTo) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandsTo) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add(cmd)
		return next(ctx, cmd)
	}
}
func (c *commandsTo) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.add(cmd)
		}
		return next(ctx, cmds)
	}
}
func (c *commandsTo) add(cmd redis.Cmder) {
	if args := cmd.Args(); len(args) > 1 && strings.Contains(fmt.Sprint(args[1]), c.part) {
		c.mu.Lock()
		c.n[cmd.Name()]++
		c.mu.Unlock()
	}
}
func (c *commandsTo) calls(name string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.n[name] }

// TestFunnelTallyAddsUp passes a store too fast to enter, again and
// again: each ping is told "speed" by the store's rule. A replica adds
// such counts up and writes each rule's in one command, not one a ping,
// and every one is counted: at once for a reader of the funnel on the
// replica (Settled), and soon for one elsewhere.
func TestFunnelTallyAddsUp(t *testing.T) {
	f := setup(t, srv.Client(t))
	ctx := context.Background()
	hook := &commandsTo{part: ":funnel:", n: map[string]int{}}
	counted := redis.NewClient(&redis.Options{Addr: srv.Addr})
	counted.AddHook(hook)
	t.Cleanup(func() { counted.Close() })
	eng := engine.New(counted, f.live, engine.NewCodeSigner([]byte("test-secret")), engine.DefaultConfig(), quiet, f.clock.Now)
	day := f.clock.Now()
	speed := 20.0 // m/s: a car
	lat, lng := north(alexLat, alexLng, 10)
	pass := func(id string, n int) {
		for range n {
			f.clock.Advance(time.Second)
			res, err := eng.Evaluate(ctx, engine.Ping{CustomerID: id, Lat: lat, Lng: lng, SpeedMps: &speed, TS: f.clock.Now()}, engine.Options{Explain: true})
			if err != nil || len(res.Explain) != 1 || res.Explain[0].Result != engine.ReasonSpeed {
				t.Fatalf("%s: %+v, %v; want the rule told speed", id, res, err)
			}
		}
	}
	const customers, pings = 5, 8
	for i := range customers {
		id := fmt.Sprint("car-", i)
		addCustomer(t, f, id)
		pass(id, pings)
	}
	if err := eng.Settled(ctx); err != nil {
		t.Fatal(err)
	}
	speedSkips := func() int {
		rep, err := engine.Funnel(ctx, f.rdb, "latte", day, day)
		if err != nil || len(rep.Days) != 1 {
			t.Fatalf("funnel: %+v, %v", rep, err)
		}
		return rep.Days[0].Skipped[engine.ReasonSpeed]
	}
	if got := speedSkips(); got != customers*pings {
		t.Fatalf("skip:speed %d after Settled, want %d", got, customers*pings)
	}
	// One command a write of the tally (every 100 ms, and at Settled):
	// the pings above take far less than a second even under -race.
	if n := hook.calls("hincrby"); n >= customers*pings/4 {
		t.Errorf("%d HINCRBY for %d counts of one rule and result: not added up", n, customers*pings)
	}
	// Unsettled, the tally is written within its time.
	pass("car-0", 3)
	deadline := time.Now().Add(5 * time.Second)
	for speedSkips() != customers*pings+3 {
		if time.Now().After(deadline) {
			t.Fatalf("skip:speed %d 5 s after the pings, want %d", speedSkips(), customers*pings+3)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A ping whose count joins a tally write another ping armed is answered
// while the armer has not even started its write: Settled, called after
// that answer, still waits for the write and finds the count in Redis.
func TestSettledWaitsForAJoinedTally(t *testing.T) {
	f := setup(t, srv.Client(t))
	ctx := context.Background()
	day := f.clock.Now()
	speed := 20.0
	lat, lng := north(alexLat, alexLng, 10)
	addCustomer(t, f, "car-a")
	addCustomer(t, f, "car-b")
	armed, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f.eng.HoldTallyArm(func() { once.Do(func() { close(armed); <-release }) })
	pass := func(id string) {
		f.clock.Advance(time.Second)
		res, err := f.eng.Evaluate(ctx, engine.Ping{CustomerID: id, Lat: lat, Lng: lng, SpeedMps: &speed, TS: f.clock.Now()}, engine.Options{Explain: true})
		if err != nil || len(res.Explain) != 1 || res.Explain[0].Result != engine.ReasonSpeed {
			t.Errorf("%s: %+v, %v; want the rule told speed", id, res, err)
		}
	}
	aDone := make(chan struct{})
	go func() { defer close(aDone); pass("car-a") }()
	<-armed // car-a armed the write, which has not started
	pass("car-b")
	settled := make(chan error, 1)
	go func() { settled <- f.eng.Settled(ctx) }()
	select {
	case err := <-settled:
		t.Fatalf("Settled returned (%v) before the write holding car-b's count started", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-settled; err != nil {
		t.Fatal(err)
	}
	<-aDone
	rep, err := engine.Funnel(ctx, f.rdb, "latte", day, day)
	if err != nil || len(rep.Days) != 1 || rep.Days[0].Skipped[engine.ReasonSpeed] != 2 {
		t.Fatalf("funnel after Settled: %+v, %v; want skip:speed 2", rep, err)
	}
}

// holdFunnelWrites holds every pipeline that writes a funnel counter until
// release is closed, saying so on held.
type holdFunnelWrites struct {
	held    chan struct{}
	once    sync.Once
	release chan struct{}
}

func (h *holdFunnelWrites) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *holdFunnelWrites) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *holdFunnelWrites) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			if args := c.Args(); c.Name() == "hincrby" && strings.Contains(fmt.Sprint(args[1]), ":funnel:") {
				h.once.Do(func() { close(h.held) })
				<-h.release
				break
			}
		}
		return next(ctx, cmds)
	}
}

// The tally's write goes in a pipeline of its own, not in the pings' lane
// (one, by default): while it is on the wire, held here as a slow Redis
// would, other pings are still answered.
func TestTallyKeepsOutOfThePingsLane(t *testing.T) {
	f := setup(t, srv.Client(t))
	ctx := context.Background()
	hold := &holdFunnelWrites{held: make(chan struct{}), release: make(chan struct{})}
	held := redis.NewClient(&redis.Options{Addr: srv.Addr})
	held.AddHook(hold)
	t.Cleanup(func() { held.Close() })
	cfg := engine.DefaultConfig()
	cfg.RedisLanes = 1
	eng := engine.New(held, f.live, engine.NewCodeSigner([]byte("test-secret")), cfg, quiet, f.clock.Now)
	addCustomer(t, f, "car")
	addCustomer(t, f, "walker")
	speed := 20.0
	lat, lng := north(alexLat, alexLng, 10)
	f.clock.Advance(time.Second)
	if _, err := eng.Evaluate(ctx, engine.Ping{CustomerID: "car", Lat: lat, Lng: lng, SpeedMps: &speed, TS: f.clock.Now()}, engine.Options{}); err != nil {
		t.Fatal(err)
	}
	settled := make(chan error, 1)
	go func() { settled <- eng.Settled(ctx) }() // writes the tally at once
	select {
	case <-hold.held:
	case <-time.After(5 * time.Second):
		t.Fatal("the tally's write never came")
	}
	answered := make(chan error, 1)
	go func() {
		far, farLng := north(alexLat, alexLng, 5000)
		_, err := eng.Evaluate(ctx, engine.Ping{CustomerID: "walker", Lat: far, Lng: farLng, TS: f.clock.Now()}, engine.Options{})
		answered <- err
	}()
	waited := false
	select {
	case err := <-answered:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(2 * time.Second):
		waited = true
		t.Error("a ping waited for the tally's write")
	}
	close(hold.release)
	if err := <-settled; err != nil {
		t.Fatal(err)
	}
	if waited {
		<-answered
	}
}

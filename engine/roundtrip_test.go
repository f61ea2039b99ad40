package engine_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
)

// roundTrips counts what a client sends to Redis: each command sent on
// its own and each pipeline is one round trip. With part, only those
// that name a key holding it count, once however many of their commands do.
type roundTrips struct {
	part string
	n    atomic.Int64
}

func (r *roundTrips) counts(cmds ...redis.Cmder) bool {
	if r.part == "" {
		return true
	}
	for _, c := range cmds {
		for _, a := range c.Args() {
			if s, ok := a.(string); ok && strings.Contains(s, r.part) {
				return true
			}
		}
	}
	return false
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if r.counts(cmd) {
			r.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if r.counts(cmds...) {
			r.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// The hot path's promise: a ping that fires nothing and changes no
// presence costs one Redis round trip; a ping that enters a store and
// fires an offer one more before its answer (the offer's intent and its
// code's index with the customer's atomic step, which a pipeline runs in
// order on one Redis), and one behind it (the announcement and the
// funnel's counts); leaving, one again. On Redis Cluster, which keeps the
// intent and the customer's keys in different slots, a fix surely inside
// a store with rules writes the intent beside the presence step
// (speculate.go): the offer takes 2 round trips there too, and a ping at
// the store that issues nothing takes its intent back behind its answer.
func TestRoundTripsPerPing(t *testing.T) {
	t.Run("redis-server", func(t *testing.T) {
		counted := redis.NewClient(&redis.Options{Addr: srv.Addr})
		t.Cleanup(func() { counted.Close() })
		roundTripsPerPing(t, srv.Client(t), counted, false, 0)
	})
	t.Run("redis-cluster", func(t *testing.T) {
		c := redistest.SharedCluster()
		if c == nil {
			t.Skip("no Redis Cluster: `make cluster-test` (which make test runs) starts one")
		}
		counted := c.NewClient()
		t.Cleanup(func() { counted.Close() })
		roundTripsPerPing(t, c.Client(t), counted, true, 0)
	})
}

// roundTripsPerPing walks a customer in and out of a store on an engine
// whose client, counted, counts its round trips; speculative says a ping
// surely inside the store writes an intent with its presence step.
func roundTripsPerPing(t *testing.T, rdb redis.UniversalClient, counted redis.UniversalClient, speculative bool, waitReplicas int) {
	staysBehind := int64(0)
	if speculative {
		staysBehind = 1 // the intent taken back
	}
	f := setup(t, rdb)
	rt := &roundTrips{}
	counted.AddHook(rt)
	cfg := engine.DefaultConfig()
	cfg.WaitReplicas = waitReplicas
	eng := engine.New(counted, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
	// The work behind an answer waits until the test has counted what
	// came before the answer (a goroutine may otherwise run it first, on
	// a busy machine); an answer that waited for it would wait in vain,
	// and the gate gives up after a while, so that the counts show it.
	var answered atomic.Pointer[chan struct{}]
	eng.HoldBehind(func() {
		if ch := answered.Load(); ch != nil {
			select {
			case <-*ch:
			case <-time.After(3 * time.Second):
			}
		}
	})
	ctx := context.Background()
	ping := func(northM float64, opt engine.Options, speedMps ...float64) *engine.Result {
		t.Helper()
		f.clock.Advance(time.Minute)
		lat, lng := north(alexLat, alexLng, northM)
		speed := 1.0
		if len(speedMps) > 0 {
			speed = speedMps[0]
		}
		res, err := eng.Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng, AccuracyM: 10, SpeedMps: &speed, TS: f.clock.Now()}, opt)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// Every master learns the scripts at start (as the server has them
	// do); a walk in and out the day before.
	if err := engine.LoadScripts(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	ping(5000, engine.Options{})
	if res := ping(10, engine.Options{}); len(res.Offers) != 1 {
		t.Fatalf("the day before: %+v", res)
	}
	ping(400, engine.Options{})
	if err := eng.Settled(ctx); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(24 * time.Hour)
	for _, step := range []struct {
		name     string
		northM   float64
		speedMps float64 // 0: walking
		offers   int
		trips    int64 // before the answer
		behind   int64 // after it (Engine.Settled)
	}{
		{"near no store", 5000, 0, 0, 1, 0},
		{"near no store again", 4000, 0, 0, 1, 0},
		{"enters and fires an offer", 10, 0, 1, 2, 1},
		{"stays", 20, 0, 0, 1, staysBehind},
		{"leaves", 400, 0, 0, 1, 0},
		// Its rule told "speed": the count goes to the replica's tally,
		// written behind the answer (at once here: Settled).
		{"passes too fast to enter", 10, 20, 0, 1, 1 + staysBehind},
	} {
		gate := make(chan struct{})
		answered.Store(&gate)
		before := rt.n.Load()
		speed := []float64{}
		if step.speedMps > 0 {
			speed = append(speed, step.speedMps)
		}
		res := ping(step.northM, engine.Options{}, speed...)
		trips := rt.n.Load() - before
		close(gate)
		if err := eng.Settled(ctx); err != nil {
			t.Fatal(err)
		}
		behind := rt.n.Load() - before - trips
		// No intent is left behind: the offer's was announced, and a
		// ping at the store that issued nothing took its own back.
		if n := rdb.ZCard(ctx, engine.KeyIntents).Val(); n != 0 {
			t.Errorf("%s: %d intents left", step.name, n)
		}
		if trips != step.trips || behind != step.behind || len(res.Offers) != step.offers {
			t.Errorf("%s: %d round trips before the answer and %d behind it, %d offers; want %d, %d, %d",
				step.name, trips, behind, len(res.Offers), step.trips, step.behind, step.offers)
		}
	}
}

package engine_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
)

// roundTrips counts what a client sends to Redis: each command sent on
// its own and each pipeline is one round trip.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// The hot path's promise: a ping that fires nothing and changes no
// presence costs one Redis round trip; a ping that enters a store and
// fires an offer two more on one Redis (the offer's intent with the
// customer's atomic step, which a pipeline runs in order; then the
// announcement and counts), three on Redis Cluster, which keeps their keys
// in three slots; leaving, one again.
func TestRoundTripsPerPing(t *testing.T) {
	rdb := srv.Client(t)
	f := setup(t, rdb)
	rt := &roundTrips{}
	counted := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { counted.Close() })
	counted.AddHook(rt)
	eng := engine.New(counted, f.live, engine.NewCodeSigner([]byte("k")), engine.DefaultConfig(), quiet, f.clock.Now)
	ctx := context.Background()
	speed := 1.0
	ping := func(northM float64, opt engine.Options) *engine.Result {
		t.Helper()
		f.clock.Advance(time.Minute)
		lat, lng := north(alexLat, alexLng, northM)
		res, err := eng.Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng, AccuracyM: 10, SpeedMps: &speed, TS: f.clock.Now()}, opt)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// Redis learns the scripts on their first use; a dry run changes
	// nothing else.
	ping(5000, engine.Options{})
	if res := ping(10, engine.Options{DryRun: true}); len(res.Offers) != 1 {
		t.Fatalf("dry run: %+v", res)
	}
	for _, step := range []struct {
		name   string
		northM float64
		offers int
		trips  int64
	}{
		{"near no store", 5000, 0, 1},
		{"near no store again", 4000, 0, 1},
		{"enters and fires an offer", 10, 1, 3},
		{"stays", 20, 0, 1},
		{"leaves", 400, 0, 1},
	} {
		before := rt.n.Load()
		res := ping(step.northM, engine.Options{})
		if got := rt.n.Load() - before; got != step.trips || len(res.Offers) != step.offers {
			t.Errorf("%s: %d round trips, %d offers; want %d, %d", step.name, got, len(res.Offers), step.trips, step.offers)
		}
	}
}

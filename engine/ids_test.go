package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// Whatever an id may be, it reaches no field or key the engine uses
// itself: stores named like the presence hash's own fields of before
// ("_ts" answered 503 for half an hour; "_rc" switched the customer's
// rate limit off) are stores like any other.
func TestIDsCannotReachInternalNames(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			for _, id := range []string{"_ts", "_fix", "_rc", "_rd:d-1", "n", "last", "prev", "first", "redeemed", "c", "d:d-1", "t"} {
				t.Run(id, func(t *testing.T) {
					f := setup(t, be.New(t))
					ctx := context.Background()
					st := rules.Store{ID: id, Name: "Next door", Lat: ptr(alexLat + 0.01), Lng: ptr(alexLng), RadiusM: 100, Tags: []string{"coffee"}, Timezone: "Europe/Berlin"}
					if _, err := f.live.Catalog().PutStore(ctx, &st); err != nil {
						t.Fatal(err)
					}
					if err := f.live.Refresh(ctx); err != nil {
						t.Fatal(err)
					}
					cfg := engine.DefaultConfig()
					cfg.PingsPerMinute, cfg.PingsPerMinuteDevice = 4, 0
					eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
					step := 20 * time.Second
					ping := func(metresNorth float64) (*engine.Result, error) {
						f.clock.Advance(step)
						lat, lng := north(alexLat+0.01, alexLng, metresNorth)
						return settled(eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng, AccuracyM: 5, TS: f.clock.Now()}, engine.Options{})
					}
					want := []string{"enter", "", "exit"}
					for i, m := range []float64{0, 10, 2000} {
						res, err := ping(m)
						if err != nil {
							t.Fatalf("ping %d: %v", i, err)
						}
						got := ""
						if len(res.Events) > 0 {
							got = res.Events[0].Type
							if res.Events[0].StoreID != id {
								t.Fatalf("ping %d: event at %s, want %s", i, res.Events[0].StoreID, id)
							}
						}
						if got != want[i] {
							t.Fatalf("ping %d: %+v, want %q", i, res.Events, want[i])
						}
					}
					// The customer's limit still holds (4 a minute).
					f.clock.t = f.clock.t.Truncate(time.Minute).Add(time.Minute)
					step = time.Second
					for i := 0; i < 4; i++ {
						if _, err := ping(5000); err != nil {
							t.Fatalf("ping %d of the minute: %v", i, err)
						}
					}
					var rl *engine.RateLimitError
					if _, err := ping(5000); !errors.As(err, &rl) {
						t.Fatalf("5th ping in a minute: %v, want a rate limit", err)
					}
				})
			}
		})
	}
}

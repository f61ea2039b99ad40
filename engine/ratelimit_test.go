package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
)

// Pings over a customer's or a device's limit in a minute are refused and
// change nothing; the next minute they go through. Both Redis kinds.
func TestPingRateLimits(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			cfg := engine.DefaultConfig()
			cfg.PingsPerMinute, cfg.PingsPerMinuteDevice = 5, 3
			eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
			f.clock.t = time.Date(2026, 11, 23, 9, 0, 10, 0, time.UTC)
			ctx := context.Background()
			speed := 0.5
			ping := func(device string, northM float64, opt engine.Options) (*engine.Result, error) {
				f.clock.Advance(time.Second)
				lat, lng := north(alexLat, alexLng, northM)
				return settled(eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: device, Lat: lat, Lng: lng, AccuracyM: 10, SpeedMps: &speed, TS: f.clock.Now()}, opt)
			}
			limited := func(err error) bool {
				var rl *engine.RateLimitError
				return errors.As(err, &rl) && rl.RetryAfter > 0 && rl.RetryAfter <= time.Minute
			}
			for i := 0; i < 3; i++ {
				if _, err := ping("d-1", 3000, engine.Options{}); err != nil {
					t.Fatalf("ping %d: %v", i, err)
				}
			}
			// d-1 is at its limit: at the store, nothing happens; a dry
			// run is held to the limit too.
			if _, err := ping("d-1", 0, engine.Options{}); !limited(err) {
				t.Fatalf("4th ping of d-1: %v, want a rate limit", err)
			}
			if _, err := ping("d-1", 0, engine.Options{DryRun: true}); !limited(err) {
				t.Fatalf("dry run over the limit: %v", err)
			}
			// The next minute the ping at the store enters: the refused
			// one changed nothing.
			f.clock.Advance(time.Minute)
			res, err := ping("d-1", 0, engine.Options{})
			if err != nil || len(res.Events) != 1 || res.Events[0].Type != "enter" {
				t.Fatalf("next minute: %+v %v, want an enter", res, err)
			}
			// A dry run counts, as every call does (so that a limit tells
			// nothing); the customer's limit (5) holds across their devices.
			if _, err := ping("d-2", 0, engine.Options{DryRun: true}); err != nil {
				t.Fatalf("dry run of d-2: %v", err)
			}
			for i, d := range []string{"d-1", "d-2", "d-3"} {
				if _, err := ping(d, 0, engine.Options{}); err != nil {
					t.Fatalf("ping %d from %s: %v", i, d, err)
				}
			}
			if _, err := ping("d-4", 0, engine.Options{}); !limited(err) {
				t.Fatalf("6th call for the customer: %v, want a rate limit", err)
			}
			// A customer with no profile is counted alike.
			for i := 0; i < 5; i++ {
				if _, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: "c-ghost", Lat: 1, Lng: 1}, engine.Options{}); err != nil {
					t.Fatalf("ghost ping %d: %v", i, err)
				}
			}
			if _, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: "c-ghost", Lat: 1, Lng: 1}, engine.Options{}); !limited(err) {
				t.Fatalf("6th call for an unknown customer: %v, want a rate limit", err)
			}
			// A fix too unsure to move presence is a call all the same.
			for i := 0; i < 5; i++ {
				if _, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: "c-vague", Lat: 1, Lng: 1, AccuracyM: 2000}, engine.Options{}); err != nil {
					t.Fatalf("unsure fix %d: %v", i, err)
				}
			}
			if _, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: "c-vague", Lat: 1, Lng: 1, AccuracyM: 2000}, engine.Options{}); !limited(err) {
				t.Fatalf("6th unsure fix: %v, want a rate limit", err)
			}
		})
	}
}

package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
)

// A batch of fixes is applied in time order whatever order it came in:
// an enter before the exit, durations from the fixes' own times. Two
// fixes with one time count once. A fix older than five minutes moves
// presence but fires no offer; a visit a later fix shows over gets no
// offer; a fix over a call limit stops the batch. Both Redis kinds.
func TestBatchOfFixes(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			ctx := context.Background()
			cfg := engine.DefaultConfig()
			cfg.QuietHours = [2]int{}
			cfg.PingsPerMinute, cfg.PingsPerMinuteDevice = 0, 2
			eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
			fix := func(northM float64, ago time.Duration) engine.Ping {
				lat, lng := north(alexLat, alexLng, northM)
				return engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng, AccuracyM: 10, TS: f.clock.Now().Add(-ago)}
			}
			f.clock.Advance(time.Hour)

			// Offline for twelve minutes: walked in, stayed, left. Sent out of
			// order, one fix twice. Every fix is late: presence moves, no
			// offer.
			res, err := settled(eng).EvaluateBatch(ctx, []engine.Ping{fix(400, 2*time.Minute), fix(10, 9*time.Minute), fix(400, 12*time.Minute), fix(20, 7*time.Minute), fix(10, 9*time.Minute)}, engine.Options{Explain: true})
			if err != nil {
				t.Fatal(err)
			}
			statuses := ""
			for i, fr := range res.Fixes {
				statuses += fr.Status + " "
				if i > 0 && fr.TS.Before(res.Fixes[i-1].TS) {
					t.Fatalf("fixes not in time order: %+v", res.Fixes)
				}
			}
			if statuses != "applied applied duplicate applied applied " {
				t.Fatalf("statuses %q", statuses)
			}
			if len(res.Events) != 2 || res.Events[0].Type != "enter" || res.Events[1].Type != "exit" || *res.Events[1].VisitS != 420 || len(res.Offers) != 0 {
				t.Fatalf("late batch: %+v, offers %+v", res.Events, res.Offers)
			}
			if got := res.Fixes[1].Explain; len(got) == 0 || got[0].Result != engine.ReasonLate {
				t.Fatalf("the late enter is explained %+v, want %s", got, engine.ReasonLate)
			}
			if res.Monitor == nil || res.NextPing == nil {
				t.Fatalf("no pacing from the newest fix: %+v", res)
			}

			// Fresh fixes: in, then out within the batch. The visit is over
			// by the batch's end: no coupon for a door already left.
			f.clock.Advance(time.Hour)
			res, err = settled(eng).EvaluateBatch(ctx, []engine.Ping{fix(400, 0), fix(10, 60*time.Second)}, engine.Options{Explain: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Events) != 2 || len(res.Offers) != 0 || res.Fixes[0].Explain[0].Result != engine.ReasonVisitEnded {
				t.Fatalf("in and out: %+v, offers %+v, explained %+v", res.Events, res.Offers, res.Fixes[0].Explain)
			}
			// In and still in: the coupon.
			f.clock.Advance(time.Hour)
			res, err = settled(eng).EvaluateBatch(ctx, []engine.Ping{fix(20, 0), fix(10, 30*time.Second)}, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Events) != 1 || len(res.Offers) != 1 || len(res.Fixes[0].Offers) != 1 {
				t.Fatalf("in and staying: %+v, offers %+v", res.Events, res.Offers)
			}

			// Over the device's limit for batches (2 a minute, times
			// BatchLimitFactor: 8): the fixes after it
			// change nothing; a batch whose first fix is over is refused.
			f.clock.Advance(time.Hour)
			f.clock.t = f.clock.t.Truncate(time.Minute).Add(time.Minute)
			var many []engine.Ping
			for i := range 10 {
				many = append(many, fix(1000+float64(i)*10, time.Duration(10-i)*time.Second))
			}
			res, err = settled(eng).EvaluateBatch(ctx, many, engine.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Fixes[7].Status != engine.FixApplied || res.Fixes[8].Status != engine.FixRateLimited || res.Fixes[9].Status != engine.FixRateLimited {
				t.Fatalf("over the limit: %+v", res.Fixes)
			}
			var rl *engine.RateLimitError
			if _, err := settled(eng).EvaluateBatch(ctx, many[:1], engine.Options{}); !errors.As(err, &rl) {
				t.Fatalf("a batch over the limit from its first fix: %v", err)
			}
		})
	}
}

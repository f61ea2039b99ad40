package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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

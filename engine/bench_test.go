package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
)

// BenchmarkEvaluate measures one ping's decision against redis-server on
// loopback: a ping near no store (one round trip), and a walk in and out
// of a store where the entering ping fires an offer (two round trips) and
// the leaving one records the exit (one).
func BenchmarkEvaluate(b *testing.B) {
	rdb := srv.Client(b)
	free := rules.Rule{ID: "free", Name: "Free", Trigger: rules.Trigger{On: rules.OnEnter},
		Offer: rules.Offer{Title: rules.Texts{{Lang: "en", Template: "Hi {{.customer.first_name}}"}}, Body: rules.Texts{{Lang: "en", Template: "{{.store.name}}, {{.distance_m}} m"}}}}
	f := setupTB(b, rdb, free)
	cfg := engine.DefaultConfig()
	cfg.MaxOffersPerDay = 0       // one customer, thousands of visits,
	cfg.QuietHours = [2]int{0, 0} // at every hour of the day and night
	f.eng = engine.New(rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
	ctx := context.Background()
	b.Run("near_no_store", func(b *testing.B) {
		lat, lng := north(alexLat, alexLng, 5000)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			f.clock.Advance(time.Second)
			if _, err := f.eng.Evaluate(ctx, engine.Ping{CustomerID: "c-42", Lat: lat, Lng: lng, AccuracyM: 10, TS: f.clock.Now()}, engine.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("enter_with_offer_and_exit", func(b *testing.B) {
		inLat, inLng := north(alexLat, alexLng, 10)
		outLat, outLng := north(alexLat, alexLng, 300)
		speed := 1.0
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			f.clock.Advance(10 * time.Minute)
			res, err := f.eng.Evaluate(ctx, engine.Ping{CustomerID: "c-42", Lat: inLat, Lng: inLng, AccuracyM: 10, SpeedMps: &speed, TS: f.clock.Now()}, engine.Options{})
			if err != nil || len(res.Offers) != 1 {
				b.Fatalf("enter: %+v %v", res, err)
			}
			f.clock.Advance(10 * time.Minute)
			if _, err := f.eng.Evaluate(ctx, engine.Ping{CustomerID: "c-42", Lat: outLat, Lng: outLng, AccuracyM: 10, SpeedMps: &speed, TS: f.clock.Now()}, engine.Options{}); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		rdb.Del(ctx, "nc:{outbox}:stream")
	})
}

// BenchmarkObserveArgs measures the arguments of a ping's observe step
// (its Redis script), near a store (one fence held) and near none.
func BenchmarkObserveArgs(b *testing.B) {
	f := setupTB(b, srv.Client(b))
	for name, m := range map[string]float64{"near_a_store": 10, "near_no_store": 5000} {
		b.Run(name, func(b *testing.B) {
			lat, lng := north(alexLat, alexLng, m)
			p := engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng, AccuracyM: 10, TS: f.clock.Now()}
			want := 13
			if m < 100 {
				want = 16
			}
			hits := f.eng.Hits(p)
			if n := len(f.eng.ObserveArgs(p, hits)); n < want {
				b.Fatalf("%d arguments, want at least %d", n, want)
			}
			b.ReportAllocs()
			for b.Loop() {
				f.eng.ObserveArgs(p, hits)
			}
		})
	}
}

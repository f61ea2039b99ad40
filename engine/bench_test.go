package engine_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
	"github.com/redis/go-redis/v9"
)

// BenchmarkEvaluate measures one ping's decision against redis-server on
// loopback, with the default call limits: a ping near no store and one
// that stays at a store (one round trip each: nothing changes), and a
// walk in and out of a store where the entering ping fires an offer (two
// round trips) and the leaving one records the exit (one). Each reports
// Redis's CPU per ping (redis-µs/op, from INFO commandstats).
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
	// Two seconds a ping: 30 a minute, within the device's default limit.
	quietPings := func(b *testing.B, northM float64) {
		lat, lng := north(alexLat, alexLng, northM)
		ping := func() *engine.Result {
			f.clock.Advance(2 * time.Second)
			res, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng, AccuracyM: 10, TS: f.clock.Now()}, engine.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return res
		}
		ping()
		cpu := redisCPU(b, rdb)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if res := ping(); len(res.Events) > 0 || len(res.Offers) > 0 {
				b.Fatalf("a ping that should change nothing: %+v", res)
			}
		}
		cpu.report(b)
	}
	b.Run("near_no_store", func(b *testing.B) { quietPings(b, 5000) })
	b.Run("stays_at_a_store", func(b *testing.B) { quietPings(b, 10) })
	b.Run("enter_with_offer_and_exit", func(b *testing.B) {
		inLat, inLng := north(alexLat, alexLng, 10)
		outLat, outLng := north(alexLat, alexLng, 300)
		speed := 1.0
		f.clock.Advance(time.Hour) // past any visit the benchmarks before left open
		cpu := redisCPU(b, rdb)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			f.clock.Advance(10 * time.Minute)
			res, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", Lat: inLat, Lng: inLng, AccuracyM: 10, SpeedMps: &speed, TS: f.clock.Now()}, engine.Options{})
			if err != nil || len(res.Offers) != 1 {
				b.Fatalf("enter: %+v %v", res, err)
			}
			f.clock.Advance(10 * time.Minute)
			if _, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", Lat: outLat, Lng: outLng, AccuracyM: 10, SpeedMps: &speed, TS: f.clock.Now()}, engine.Options{}); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		cpu.reportPer(b, 2)
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
			f.eng.ObserveArgs(p, hits, func(args []any) {
				if len(args) < want {
					b.Fatalf("%d arguments, want at least %d", len(args), want)
				}
			})
			b.ReportAllocs()
			for b.Loop() {
				f.eng.ObserveArgs(p, hits, func([]any) {})
			}
		})
	}
}

// redisUse is what Redis spends, from INFO: its process's CPU (commands,
// and reading and writing the connection, which a lone client's round
// trips make dear and the load bench's pipelines share) and its time in
// scripts (EVALSHA; a script's time includes its commands').
type redisUse struct {
	rdb              *redis.Client
	process, scripts float64 // µs
}

func redisCPU(b *testing.B, rdb *redis.Client) *redisUse {
	u := &redisUse{rdb: rdb}
	u.process, u.scripts = readRedisUse(b, rdb)
	return u
}

// report reports Redis's use per operation since redisCPU.
func (u *redisUse) report(b *testing.B) { u.reportPer(b, 1) }

// reportPer reports it per ping, at pings per operation.
func (u *redisUse) reportPer(b *testing.B, pings int) {
	process, scripts := readRedisUse(b, u.rdb)
	n := float64(b.N * pings)
	b.ReportMetric((process-u.process)/n, "redis-cpu-µs/ping")
	b.ReportMetric((scripts-u.scripts)/n, "redis-scripts-µs/ping")
}

func readRedisUse(b *testing.B, rdb *redis.Client) (process, scripts float64) {
	info, err := rdb.Info(context.Background(), "cpu", "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		name, value, _ := strings.Cut(line, ":")
		switch {
		case name == "used_cpu_user" || name == "used_cpu_sys":
			s, _ := strconv.ParseFloat(value, 64)
			process += s * 1e6
		case name == "cmdstat_evalsha" || name == "cmdstat_eval":
			for _, kv := range strings.Split(value, ",") {
				if us, ok := strings.CutPrefix(kv, "usec="); ok {
					v, _ := strconv.ParseFloat(us, 64)
					scripts += v
				}
			}
		}
	}
	return process, scripts
}

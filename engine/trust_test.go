package engine_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// trustOf evaluates a fix as the admin key would see it (a dry run
// changes presence too little for these tests: they write), and answers
// its trust.
type trustRun struct {
	t   *testing.T
	eng *engine.Engine
	f   *fixture
}

func (r trustRun) fix(customer string, lat, lng, acc float64, speed *float64, signals ...string) *engine.Result {
	r.t.Helper()
	res, err := settled(r.eng).Evaluate(context.Background(), engine.Ping{CustomerID: customer, DeviceID: "d-1", Lat: lat, Lng: lng, AccuracyM: acc,
		SpeedMps: speed, TS: r.f.clock.Now(), Signals: signals}, engine.Options{Explain: true})
	if err != nil {
		r.t.Fatal(err)
	}
	if res.Trust == nil {
		r.t.Fatalf("no trust in an explained answer: %+v", res)
	}
	return res
}

// honestTrack is one kind of honest movement: fixes every `every` (give
// or take a third), at speed m/s along a wandering heading, each off by a
// normal error of its reported accuracy (5 to 40 m, varying), with a gap
// of `gap` (a tunnel, a lost fix) now and then.
type honestTrack struct {
	name         string
	speed        float64
	every, gap   time.Duration
	reportsSpeed bool
}

// An honest phone is never suspicious: walking, cycling, driving in town
// and on the motorway, a train, standing with GPS noise, tunnels and
// jumps after a lost fix; 10,000 fixes, false positives reported (the aim:
// none). A scripted attacker is suspicious within three fixes: a teleport
// to the door, a mocked fix, an accuracy of exactly 0 with coordinates
// frozen while "moving"; and a teleport keeps the customer suspicious for
// minutes after. A fix whose device passed an integrity check is trusted.
func TestLocationTrust(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			ctx := context.Background()
			cust := engine.NewCustomers(f.rdb)
			cfg := engine.DefaultConfig()
			cfg.PingsPerMinute, cfg.PingsPerMinuteDevice = 0, 0
			eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
			run := trustRun{t: t, eng: eng, f: f}
			rng := rand.New(rand.NewPCG(19, 1))
			tracks := []honestTrack{
				{"walking", 1.4, 20 * time.Second, 0, false},
				{"cycling", 5, 15 * time.Second, 0, true},
				{"driving in town", 14, 10 * time.Second, 0, true},
				{"motorway", 36, 30 * time.Second, 0, true},
				{"train", 80, 60 * time.Second, 0, false},
				{"standing", 0, 30 * time.Second, 0, false},
				{"tunnels", 20, 10 * time.Second, 3 * time.Minute, true},
				{"lost fix", 1.4, 60 * time.Second, 20 * time.Minute, false},
			}
			fixes, suspicious := 0, 0
			for ti, tr := range tracks {
				id := fmt.Sprintf("c-honest-%d", ti)
				if _, err := cust.Put(ctx, &rules.Customer{ID: id, Consent: rules.Consent{Location: true, Push: true}}); err != nil {
					t.Fatal(err)
				}
				lat, lng, heading := 52.40+rng.Float64()*0.2, 13.30+rng.Float64()*0.2, rng.Float64()*2*math.Pi
				n := 10000 / len(tracks)
				if be.Name == "miniredis" {
					n /= 5 // the same tracks, shorter: miniredis runs Lua slowly
				}
				for i := range n {
					step := time.Duration(float64(tr.every) * (0.67 + 0.67*rng.Float64()))
					if tr.gap > 0 && i%40 == 39 {
						step = tr.gap
					}
					f.clock.Advance(step)
					heading += rng.NormFloat64() * 0.3
					lat, lng = north(lat, lng, tr.speed*step.Seconds()*math.Cos(heading))
					lng += tr.speed * step.Seconds() * math.Sin(heading) / (111195 * math.Cos(lat*math.Pi/180))
					acc := 5 + rng.Float64()*35
					if tr.speed == 0 && rng.IntN(4) == 0 {
						acc = 65 // a phone on Wi-Fi positioning repeats its accuracy
					}
					fLat, fLng := north(lat, lng, rng.NormFloat64()*acc*0.66)
					fLng += rng.NormFloat64() * acc * 0.66 / (111195 * math.Cos(fLat*math.Pi/180))
					var speed *float64
					if tr.reportsSpeed {
						s := math.Max(0, tr.speed+rng.NormFloat64())
						speed = &s
					}
					res := run.fix(id, fLat, fLng, math.Round(acc*10)/10, speed)
					fixes++
					if res.Trust.Level == engine.TrustSuspicious {
						suspicious++
						t.Errorf("%s, fix %d: an honest phone taken for suspicious (%v)", tr.name, i, res.Trust.Signals)
					}
				}
			}
			t.Logf("honest fixes: %d, suspicious: %d (%.1f per 10,000; the aim: 0)", fixes, suspicious, float64(suspicious)*10000/float64(fixes))

			// The attackers.
			for i, a := range []struct {
				name  string
				fixes func(i int) *engine.Result
			}{
				{"teleport to the door", func(i int) *engine.Result {
					if i == 0 {
						return run.fix("c-thief-0", 52.60, 13.60, 10, nil) // 12 km off
					}
					return run.fix("c-thief-0", alexLat, alexLng, 10, nil)
				}},
				{"a mocked fix", func(int) *engine.Result {
					return run.fix("c-thief-1", alexLat, alexLng, 10, nil, engine.SignalMocked)
				}},
				{"accuracy 0, frozen while moving", func(int) *engine.Result {
					speed := 1.2
					return run.fix("c-thief-2", alexLat, alexLng, 0, &speed, engine.SignalZeroAccuracy)
				}},
			} {
				if _, err := cust.Put(ctx, &rules.Customer{ID: fmt.Sprintf("c-thief-%d", i), Consent: rules.Consent{Location: true, Push: true}}); err != nil {
					t.Fatal(err)
				}
				caught := -1
				for k := 0; k < 3 && caught < 0; k++ {
					f.clock.Advance(20 * time.Second)
					if res := a.fixes(k); res.Trust.Level == engine.TrustSuspicious {
						caught = k
						if len(res.Offers) != 0 {
							t.Fatalf("%s is offered %+v", a.name, res.Offers)
						}
					}
				}
				if caught < 0 {
					t.Errorf("%s: not suspicious within three fixes", a.name)
				}
			}
			// Five minutes after the teleport, entering at the door: still
			// suspicious, no coupon; an hour on, unverified again.
			f.clock.Advance(5 * time.Minute)
			if res := run.fix("c-thief-0", alexLat, alexLng+0.0001, 12, nil); res.Trust.Level != engine.TrustSuspicious ||
				len(res.Events) != 1 || len(res.Offers) != 0 || res.Explain[0].Result != engine.ReasonUntrusted {
				t.Fatalf("five minutes after a teleport: %+v, events %+v, offers %+v, explained %+v", res.Trust, res.Events, res.Offers, res.Explain)
			}
			f.clock.Advance(time.Hour)
			if res := run.fix("c-thief-0", alexLat, alexLng+0.0002, 12, nil); res.Trust.Level != engine.TrustUnverified {
				t.Fatalf("an hour after a teleport: %+v", res.Trust)
			}
			// A device that passed an integrity check, and nothing else said.
			f.clock.Advance(time.Minute)
			if res := run.fix("c-42", alexLat+0.01, alexLng, 10, nil, engine.SignalIntegrityOK); res.Trust.Level != engine.TrustTrusted {
				t.Fatalf("integrity passed: %+v", res.Trust)
			}
			if res := run.fix("c-42", alexLat+0.01, alexLng, 10, nil, "integrity_device"); res.Trust.Level != engine.TrustSuspicious {
				t.Fatalf("integrity failed: %+v", res.Trust)
			}
		})
	}
}

// A rule's offer.min_trust: "trusted" offers only to a device that passed
// an integrity check, "any" even to a suspicious fix; the default keeps
// suspicious fixes out.
func TestMinTrust(t *testing.T) {
	rdb := srv.Client(t)
	valuable := rules.Rule{ID: "valuable", Name: "Valuable", Priority: 20,
		Trigger: rules.Trigger{On: rules.OnEnter, Stores: &rules.StoreSelector{Tags: []string{"coffee"}}},
		Offer:   rules.Offer{Title: rules.Texts{{Lang: "en", Template: "A big one"}}, Body: rules.Texts{{Lang: "en", Template: "x"}}, MinTrust: rules.TrustTrusted}}
	f := setup(t, rdb, valuable)
	cfg := engine.DefaultConfig()
	cfg.QuietHours = [2]int{}
	eng := engine.New(rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
	run := trustRun{t: t, eng: eng, f: f}
	f.clock.Advance(time.Hour)
	res := run.fix("c-42", alexLat, alexLng, 10, nil)
	if len(res.Offers) != 1 || res.Offers[0].RuleID != "latte" || res.Explain[0].RuleID != "valuable" || res.Explain[0].Result != engine.ReasonUntrusted {
		t.Fatalf("unverified: %+v, explained %+v", res.Offers, res.Explain)
	}
	f.clock.Advance(time.Hour)
	run.fix("c-42", alexLat+0.01, alexLng, 10, nil, engine.SignalIntegrityOK)
	f.clock.Advance(time.Hour)
	if res := run.fix("c-42", alexLat, alexLng, 10, nil, engine.SignalIntegrityOK); len(res.Offers) != 1 || res.Offers[0].RuleID != "valuable" {
		t.Fatalf("trusted: %+v, explained %+v", res.Offers, res.Explain)
	}
	if _, err := rules.Compile(&rules.Rule{ID: "r", Name: "R", Trigger: rules.Trigger{On: rules.OnEnter},
		Offer: rules.Offer{Title: rules.Texts{{Lang: "en", Template: "x"}}, Body: rules.Texts{{Lang: "en", Template: "x"}}, MinTrust: "suspicious"}}); err == nil {
		t.Fatal("min_trust suspicious accepted")
	}
}

// Each signal on its own, as the admin key sees it: the level and the
// signals of the last fix of a few. Both backends (and the cluster under
// make cluster-test).
func TestTrustSignals(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			ctx := context.Background()
			cust := engine.NewCustomers(f.rdb)
			cfg := engine.DefaultConfig()
			cfg.PingsPerMinute, cfg.PingsPerMinuteDevice = 0, 0
			eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
			moving := 1.5
			type fix struct {
				northM, acc float64
				speed       *float64
				ts          time.Duration // from the clock's now (after a 20 s step)
				signals     []string
			}
			walk := func(n int, acc float64) []fix {
				var out []fix
				for i := range n {
					out = append(out, fix{northM: float64(i) * 30, acc: acc, speed: &moving})
				}
				return out
			}
			for i, c := range []struct {
				name    string
				fixes   []fix
				level   string
				signals []string
			}{
				{"nothing said", walk(3, 12), engine.TrustUnverified, nil},
				{"mocked", []fix{{acc: 10, signals: []string{engine.SignalMocked}}}, engine.TrustSuspicious, []string{"mocked"}},
				{"impossible travel", []fix{{acc: 10}, {northM: 20000, acc: 10}}, engine.TrustSuspicious, []string{"impossible_travel"}},
				{"fast travel: a train", []fix{{acc: 10}, {northM: 1600, acc: 10}}, engine.TrustUnverified, []string{"fast_travel"}},
				{"accuracy 0", []fix{{acc: 0, signals: []string{engine.SignalZeroAccuracy}}}, engine.TrustUnverified, []string{"zero_accuracy"}},
				{"frozen while moving", []fix{{acc: 10, speed: &moving}, {acc: 10, speed: &moving}}, engine.TrustUnverified, []string{"frozen_fix"}},
				{"accuracy 0 and frozen", []fix{{acc: 0, speed: &moving, signals: []string{engine.SignalZeroAccuracy}}, {acc: 0, speed: &moving, signals: []string{engine.SignalZeroAccuracy}}},
					engine.TrustSuspicious, []string{"zero_accuracy", "frozen_fix"}},
				{"from the future", []fix{{acc: 10, ts: 10 * time.Minute}}, engine.TrustUnverified, []string{"future_fix"}},
				{"a day old", []fix{{acc: 10, ts: -30 * time.Hour}}, engine.TrustUnverified, []string{"old_fix"}},
				{"the same accuracy nine times while moving", walk(10, 17), engine.TrustUnverified, []string{"constant_accuracy"}},
				{"integrity passed", []fix{{acc: 10, signals: []string{engine.SignalIntegrityOK}}}, engine.TrustTrusted, nil},
				{"integrity failed", []fix{{acc: 10, signals: []string{"integrity_device"}}}, engine.TrustSuspicious, []string{"integrity_device"}},
			} {
				id := fmt.Sprintf("c-signal-%d", i)
				if _, err := cust.Put(ctx, &rules.Customer{ID: id, Consent: rules.Consent{Location: true, Push: true}}); err != nil {
					t.Fatal(err)
				}
				var res *engine.Result
				for _, fx := range c.fixes {
					f.clock.Advance(20 * time.Second)
					lat, lng := north(52.45, 13.30, fx.northM)
					var err error
					res, err = settled(eng).Evaluate(ctx, engine.Ping{CustomerID: id, DeviceID: "d-1", Lat: lat, Lng: lng, AccuracyM: fx.acc, SpeedMps: fx.speed,
						TS: f.clock.Now().Add(fx.ts), Signals: fx.signals}, engine.Options{Explain: true})
					if err != nil {
						t.Fatal(err)
					}
				}
				if res.Trust == nil || res.Trust.Level != c.level || fmt.Sprint(res.Trust.Signals) != fmt.Sprint(append([]string{}, c.signals...)) {
					t.Errorf("%s: %+v, want %s %v", c.name, res.Trust, c.level, c.signals)
				}
			}
		})
	}
}

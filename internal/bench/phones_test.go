package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// denseCity is a small city where walks meet stores: shops of 50 to
// 150 m within 1.5 km of the centre, and the bench's kinds of rules.
func denseCity(seed uint64, stores, ruleCount int) *City {
	c := &City{CenterLat: 52.52, CenterLng: 13.405, RadiusM: 1500, Customers: 100, Seed: seed}
	rng := rand.New(rand.NewPCG(seed, 9))
	for len(c.Stores) < stores {
		lat, lng := c.place(rng, 0, 0)
		cat := categories[rng.IntN(len(categories))]
		c.Stores = append(c.Stores, &rules.Store{ID: fmt.Sprintf("s-%05d", len(c.Stores)), Name: cat, Timezone: "Europe/Berlin",
			Lat: &lat, Lng: &lng, RadiusM: math.Round(50 + 100*rng.Float64()), Tags: []string{cat, brandTag(cat, rng.IntN(brandsPer))}})
	}
	c.Rules = append(c.Rules, welcome())
	for i := 1; i < ruleCount; i++ {
		c.Rules = append(c.Rules, c.rule(rng, i))
	}
	return c
}

// The comparison, tiny, on miniredis: on the same walks, monitored phones
// ping less than polling ones; with exact fixes every enter of the engine
// falls in a true visit of its store, no detection comes before the
// crossing, and each mode's figures add up.
func TestPhonesCompareModes(t *testing.T) {
	for _, exact := range []bool{true, false} {
		t.Run(map[bool]string{true: "exact fixes", false: "fixes with errors"}[exact], func(t *testing.T) {
			rdb, _ := redistest.Mini(t)
			ctx := context.Background()
			city := denseCity(4, 150, 30)
			if err := loadCatalog(ctx, rdb, city); err != nil {
				t.Fatal(err)
			}
			pc := DefaultPhonesConfig()
			pc.Phones, pc.Walk, pc.Workers = 5, 12*time.Minute, 2
			if exact {
				pc.AccuracyM = [2]float64{}
			}
			rep, err := RunPhones(ctx, rdb, city, pc)
			if err != nil {
				t.Fatal(err)
			}
			poll, mon := rep.Mode(ModePolling), rep.Mode(ModeMonitored)
			if poll == nil || mon == nil {
				t.Fatalf("modes %+v", rep.Modes)
			}
			seconds := int(pc.Walk / time.Second)
			if want := int64(pc.Phones * ((seconds + 14) / 15)); poll.Pings != want {
				t.Errorf("polling sent %d pings, want one each 15 s: %d", poll.Pings, want)
			}
			if mon.Pings == 0 || mon.Pings >= poll.Pings {
				t.Errorf("monitored phones sent %d pings, polling ones %d", mon.Pings, poll.Pings)
			}
			if rep.Visits == 0 || poll.Enters == 0 {
				t.Fatalf("the walks visited %d stores, polling saw %d enters: nothing to compare", rep.Visits, poll.Enters)
			}
			for _, m := range rep.Modes {
				if m.Detected+m.Missed != rep.Visits || m.MissedHeld > m.Missed {
					t.Errorf("%s: %d detected + %d missed of %d visits", m.Name, m.Detected, m.Missed, rep.Visits)
				}
				if d := m.DelayS; d.P50 < 0 || d.P50 > d.P95 || d.P95 > d.Max {
					t.Errorf("%s: delays %+v", m.Name, d)
				}
				if m.PingsPerCustomerHour <= 0 || math.Abs(m.PingsPerCustomerHour-float64(m.Pings)/(5*pc.Walk.Hours())) > 1e-9 {
					t.Errorf("%s: %.1f pings per customer-hour of %d pings", m.Name, m.PingsPerCustomerHour, m.Pings)
				}
			}
			if len(rep.runs) != 2*pc.Phones {
				t.Fatalf("%d runs for %d phones", len(rep.runs), pc.Phones)
			}
			for k := 0; k < len(rep.runs); k += 2 {
				p, m := rep.runs[k], rep.runs[k+1]
				if p.mode != ModePolling || m.mode != ModeMonitored || p.phone != m.phone || !slices.Equal(p.visits, m.visits) {
					t.Fatalf("runs %d: %s phone %d, %s phone %d: not the same walk", k, p.mode, p.phone, m.mode, m.phone)
				}
			}
			for _, r := range rep.runs {
				for _, e := range r.enters {
					in := slices.ContainsFunc(r.visits, func(v trueVisit) bool { return v.store == e.store && v.start <= e.t && e.t <= v.end })
					if exact && !in {
						t.Errorf("%s phone %d: enter of %s at %d s in no true visit of it %v", r.mode, r.phone, e.store, e.t, r.visits)
					}
				}
				for i, v := range r.visits {
					first := -1
					for _, e := range r.enters {
						if e.store == v.store && e.t >= v.start && e.t <= v.end {
							first = e.t
							break
						}
					}
					if d := r.detected[i]; d >= 0 && exact && d != first-v.start {
						t.Errorf("%s phone %d: visit %+v detected after %d s, its first enter at %d s", r.mode, r.phone, v, d, first)
					}
					if r.detected[i] < -2 {
						t.Errorf("%s phone %d: visit %+v: %d", r.mode, r.phone, v, r.detected[i])
					}
				}
				if exact && (r.early != 0 || r.withoutVisit != 0) {
					t.Errorf("%s phone %d: with exact fixes %d early detections, %d enters without a visit", r.mode, r.phone, r.early, r.withoutVisit)
				}
				for i := 1; i < len(r.pings); i++ {
					if r.pings[i] <= r.pings[i-1] {
						t.Fatalf("%s phone %d: pings at %v", r.mode, r.phone, r.pings)
					}
				}
			}
			if n := mon.WakeCauses[wakeStart]; n != int64(pc.Phones) {
				t.Errorf("monitored pings by cause %v: want one start per phone", mon.WakeCauses)
			}

			// The report carries the comparison and its aims.
			full := &Report{Phones: rep}
			full.judge()
			var txt strings.Builder
			full.WriteText(&txt)
			for _, want := range []string{"phones: 5 phones", ModePolling, ModeMonitored, "monitored pings per customer-hour", "monitored p95 enter-detection delay", "enters polling caught, monitoring missed"} {
				if !strings.Contains(txt.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, txt.String())
				}
			}
		})
	}
}

// A walk is the same for a seed, whoever replays it, and moves on foot.
func TestPhoneWalksRepeat(t *testing.T) {
	rdb, _ := redistest.Mini(t)
	ctx := context.Background()
	city := denseCity(5, 100, 5)
	if err := loadCatalog(ctx, rdb, city); err != nil {
		t.Fatal(err)
	}
	live := rules.NewLive(rdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := live.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	snap := live.Current()
	a := walkTrack(city, snap, 1, 3, 1800, nil)
	b := walkTrack(city, snap, 1, 3, 1800, nil)
	if !slices.Equal(a, b) || len(a) != 1800 {
		t.Fatalf("two replays of one walk differ (%d and %d seconds)", len(a), len(b))
	}
	if c := walkTrack(city, snap, 1, 4, 1800, nil); slices.Equal(a, c) {
		t.Error("two phones walk alike")
	}
	for i := 1; i < len(a); i++ {
		if d := planarM(a[i-1].lat, a[i-1].lng, a[i].lat, a[i].lng); d > 1.8 {
			t.Fatalf("second %d: moved %.1f m", i, d)
		}
	}
}

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

	"github.com/nearcast/nearcast/engine"
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

// ringedCity is a small city of two areas: denseCity's centre (stores
// within 1.5 km), and outskirts of 2.5 to 4 km with few stores, some 4
// a km².
func ringedCity(seed uint64, ring, ruleCount int) (*City, []PhoneArea) {
	c := denseCity(seed, 150, ruleCount)
	c.RadiusM = 4000
	rng := rand.New(rand.NewPCG(seed, 10))
	for n := 0; n < ring; n++ {
		r, a := math.Sqrt(2500*2500+(4000*4000-2500*2500)*rng.Float64()), 2*math.Pi*rng.Float64()
		lat, lng := offset(c.CenterLat, c.CenterLng, r*math.Cos(a), r*math.Sin(a))
		cat := categories[rng.IntN(len(categories))]
		c.Stores = append(c.Stores, &rules.Store{ID: fmt.Sprintf("s-%05d", len(c.Stores)), Name: cat, Timezone: "Europe/Berlin",
			Lat: &lat, Lng: &lng, RadiusM: math.Round(50 + 100*rng.Float64()), Tags: []string{cat, brandTag(cat, rng.IntN(brandsPer))}})
	}
	return c, []PhoneArea{{Name: AreaCentre, InnerM: 0, OuterM: 1500}, {Name: AreaOutskirts, InnerM: 2500, OuterM: 4000}}
}

// The comparison, tiny, on miniredis, in a dense centre and in sparse
// outskirts: on the same walks, monitored phones ping less than polling
// ones; with exact fixes every enter of the engine falls in a true visit
// of its store, no detection comes before the crossing, and each mode's
// figures add up, with each area's stores and time in fences; each area
// is judged on its own.
func TestPhonesCompareModes(t *testing.T) {
	for _, exact := range []bool{true, false} {
		t.Run(map[bool]string{true: "exact fixes", false: "fixes with errors"}[exact], func(t *testing.T) {
			rdb, _ := redistest.Mini(t)
			ctx := context.Background()
			city, areas := ringedCity(4, 120, 30)
			if err := loadCatalog(ctx, rdb, city); err != nil {
				t.Fatal(err)
			}
			pc := DefaultPhonesConfig()
			pc.Phones, pc.Walk, pc.Workers, pc.Areas = 5, 12*time.Minute, 2, areas
			if exact {
				pc.AccuracyM = [2]float64{}
			}
			rep, err := RunPhones(ctx, rdb, city, pc)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Areas) != 2 || rep.Areas[0].Name != AreaCentre || rep.Areas[1].Name != AreaOutskirts {
				t.Fatalf("areas %+v", rep.Areas)
			}
			for _, area := range rep.Areas {
				checkPhoneArea(t, area, pc, exact)
			}
			centre, out := rep.Areas[0], rep.Areas[1]
			// 150 stores in 7.1 km², 120 in 30.6 km².
			if math.Abs(centre.StoresPerKm2-150/(math.Pi*1.5*1.5)) > 0.1 || math.Abs(out.StoresPerKm2-120/(math.Pi*(16-6.25))) > 0.1 {
				t.Errorf("stores per km²: centre %.1f, outskirts %.1f", centre.StoresPerKm2, out.StoresPerKm2)
			}
			// (The time in fences is the walks': an errand leads into a
			// store wherever one is near.)
			if !(0 < centre.InFencePct && centre.InFencePct <= centre.NearFencePct && centre.NearFencePct <= 100 &&
				0 < out.InFencePct && out.InFencePct <= out.NearFencePct && out.NearFencePct <= 100) {
				t.Errorf("time in fences: centre %.1f%% (near %.1f%%), outskirts %.1f%% (near %.1f%%)",
					centre.InFencePct, centre.NearFencePct, out.InFencePct, out.NearFencePct)
			}

			// The report carries each area's comparison and its aims.
			full := &Report{Phones: rep}
			full.judge()
			if len(full.Aims) != 2+2*3 {
				t.Errorf("aims: %+v", full.Aims)
			}
			var txt strings.Builder
			full.WriteText(&txt)
			for _, want := range []string{"phones: 5 phones (ios) in each of 2 areas", ModePolling, ModeMonitored, "stores/km²", "errands/h",
				"monitored pings per customer-hour (centre)", "monitored p95 enter-detection delay (centre)", "enters polling caught, monitoring missed (centre)",
				"monitored pings per customer-hour (outskirts)", "monitored p95 enter-detection delay (outskirts)", "enters polling caught, monitoring missed (outskirts)"} {
				if !strings.Contains(txt.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, txt.String())
				}
			}
		})
	}
}

// checkPhoneArea checks one area's comparison.
func checkPhoneArea(t *testing.T, area *PhoneAreaReport, pc PhonesConfig, exact bool) {
	t.Helper()
	poll, mon := area.Mode(ModePolling), area.Mode(ModeMonitored)
	if poll == nil || mon == nil {
		t.Fatalf("%s: modes %+v", area.Name, area.Modes)
	}
	seconds := int(pc.Walk / time.Second)
	if want := int64(pc.Phones * ((seconds + 14) / 15)); poll.Pings != want {
		t.Errorf("%s: polling sent %d pings, want one each 15 s: %d", area.Name, poll.Pings, want)
	}
	if mon.Pings == 0 || mon.Pings >= poll.Pings {
		t.Errorf("%s: monitored phones sent %d pings, polling ones %d", area.Name, mon.Pings, poll.Pings)
	}
	// These phones are honest: none is taken for a spoofer.
	for _, m := range []*PhoneMode{poll, mon} {
		if n := m.Trust[engine.TrustSuspicious]; n != 0 || m.Trust[engine.TrustUnverified] == 0 {
			t.Errorf("%s, %s: fixes by trust %v: an honest phone taken for suspicious", area.Name, m.Name, m.Trust)
		}
	}
	if area.Visits == 0 || poll.Enters == 0 {
		t.Fatalf("%s: the walks visited %d stores, polling saw %d enters: nothing to compare", area.Name, area.Visits, poll.Enters)
	}
	hours := float64(pc.Phones) * pc.Walk.Hours()
	if area.ErrandsPerHour <= 0 || math.Abs(area.VisitsPerHour-float64(area.Visits)/hours) > 1e-9 || area.StoresPerKm2 <= 0 {
		t.Errorf("%s: %.2f errands per hour, %.2f visits per hour of %d, %.1f stores per km²", area.Name, area.ErrandsPerHour, area.VisitsPerHour, area.Visits, area.StoresPerKm2)
	}
	for _, m := range area.Modes {
		if m.Detected+m.Missed != area.Visits || m.MissedHeld > m.Missed {
			t.Errorf("%s %s: %d detected + %d missed of %d visits", area.Name, m.Name, m.Detected, m.Missed, area.Visits)
		}
		if d := m.DelayS; d.P50 < 0 || d.P50 > d.P95 || d.P95 > d.Max {
			t.Errorf("%s %s: delays %+v", area.Name, m.Name, d)
		}
		if m.PingsPerCustomerHour <= 0 || math.Abs(m.PingsPerCustomerHour-float64(m.Pings)/hours) > 1e-9 {
			t.Errorf("%s %s: %.1f pings per customer-hour of %d pings", area.Name, m.Name, m.PingsPerCustomerHour, m.Pings)
		}
	}
	if len(area.runs) != 2*pc.Phones {
		t.Fatalf("%s: %d runs for %d phones", area.Name, len(area.runs), pc.Phones)
	}
	for k := 0; k < len(area.runs); k += 2 {
		p, m := area.runs[k], area.runs[k+1]
		if p.mode != ModePolling || m.mode != ModeMonitored || p.phone != m.phone || !slices.Equal(p.visits, m.visits) || p.area != area.Name || m.area != area.Name {
			t.Fatalf("%s: runs %d: %s phone %d in %s, %s phone %d in %s: not the same walk", area.Name, k, p.mode, p.phone, p.area, m.mode, m.phone, m.area)
		}
	}
	for _, r := range area.runs {
		for _, e := range r.enters {
			in := slices.ContainsFunc(r.visits, func(v trueVisit) bool { return v.store == e.store && v.start <= e.t && e.t <= v.end })
			if exact && !in {
				t.Errorf("%s %s phone %d: enter of %s at %d s in no true visit of it %v", area.Name, r.mode, r.phone, e.store, e.t, r.visits)
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
				t.Errorf("%s %s phone %d: visit %+v detected after %d s, its first enter at %d s", area.Name, r.mode, r.phone, v, d, first)
			}
			if r.detected[i] < -2 {
				t.Errorf("%s %s phone %d: visit %+v: %d", area.Name, r.mode, r.phone, v, r.detected[i])
			}
		}
		if exact && (r.early != 0 || r.withoutVisit != 0) {
			t.Errorf("%s %s phone %d: with exact fixes %d early detections, %d enters without a visit", area.Name, r.mode, r.phone, r.early, r.withoutVisit)
		}
		for i := 1; i < len(r.pings); i++ {
			if r.pings[i] <= r.pings[i-1] {
				t.Fatalf("%s %s phone %d: pings at %v", area.Name, r.mode, r.phone, r.pings)
			}
		}
	}
	if n := mon.WakeCauses[wakeStart]; n != int64(pc.Phones) {
		t.Errorf("%s: monitored pings by cause %v: want one start per phone", area.Name, mon.WakeCauses)
	}
}

// A walk is the same for a seed, whoever replays it, moves on foot and
// keeps to its area: it starts in the ring, strays no further beyond its
// edges than a few steps, and its errands lead to the area's stores.
func TestPhoneWalksRepeat(t *testing.T) {
	rdb, _ := redistest.Mini(t)
	ctx := context.Background()
	city, areas := ringedCity(5, 120, 5)
	if err := loadCatalog(ctx, rdb, city); err != nil {
		t.Fatal(err)
	}
	live := rules.NewLive(rdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := live.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	snap := live.Current()
	for i, area := range areas {
		area.seq = i
		a, errands := walkTrack(city, snap, area, 1, 3, 1800, nil)
		b, _ := walkTrack(city, snap, area, 1, 3, 1800, nil)
		if !slices.Equal(a, b) || len(a) != 1800 {
			t.Fatalf("%s: two replays of one walk differ (%d and %d seconds)", area.Name, len(a), len(b))
		}
		if c, _ := walkTrack(city, snap, area, 1, 4, 1800, nil); slices.Equal(a, c) {
			t.Errorf("%s: two phones walk alike", area.Name)
		}
		other := areas[1-i]
		other.seq = 1 - i
		if c, _ := walkTrack(city, snap, other, 1, 3, 1800, nil); slices.Equal(a, c) {
			t.Errorf("%s: phone 3 walks alike in both areas", area.Name)
		}
		for i := 1; i < len(a); i++ {
			if d := planarM(a[i-1].lat, a[i-1].lng, a[i].lat, a[i].lng); d > 1.8 {
				t.Fatalf("%s: second %d: moved %.1f m", area.Name, i, d)
			}
		}
		w := &walker{centerLat: city.CenterLat, centerLng: city.CenterLng}
		for n := 0; n < 20; n++ {
			track, _ := walkTrack(city, snap, area, 1, n, 3600, nil)
			if d := w.fromCentreM(track[0].lat, track[0].lng); !area.holds(d) {
				t.Errorf("%s: phone %d starts %.0f m from the centre", area.Name, n, d)
			}
			for s, p := range track {
				// A stroll turns back within a step; the way to an
				// errand's store of the area may cut a ring's inner
				// edge by a little.
				if d := w.fromCentreM(p.lat, p.lng); d < area.InnerM-50 || d > area.OuterM+2 {
					t.Fatalf("%s: phone %d at second %d is %.0f m from the centre", area.Name, n, s, d)
				}
			}
		}
		if errands == 0 {
			t.Logf("%s: phone 3 ran no errand in 30 minutes", area.Name)
		}
	}
}

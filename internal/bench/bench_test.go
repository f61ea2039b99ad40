package bench

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/geo"
)

// One phone sends one ping at a time: no two shards hold one customer,
// whatever the number of shards.
func TestShardsNeverShareACustomer(t *testing.T) {
	city := NewCity(1, 200, 10, 5000)
	for _, shards := range []int{1, 7, 64} {
		owner := map[int]int{}
		for i, sh := range newShards(city, 1, shards, 2000, 10) {
			for k := 0; k < 500; k++ {
				p := sh.nextPing()
				if o, ok := owner[p.customer]; ok && o != i {
					t.Fatalf("%d shards: customer %d in shards %d and %d", shards, p.customer, o, i)
				}
				owner[p.customer] = i
				if p.customer < 0 || p.customer >= city.Customers {
					t.Fatalf("customer %d of %d", p.customer, city.Customers)
				}
			}
		}
	}
}

// Customers move as their mode says between two pings 15 s apart, and a
// customer on an errand reaches the store and stays inside its fence.
func TestWalksMoveAtTheirSpeed(t *testing.T) {
	city := NewCity(2, 300, 10, 1000)
	sh := newMovers(city, 2, 0, 1, 400, 30)
	reached := 0
	for i := range sh.all {
		v := &sh.all[i]
		for step := 0; step < 30 && v.steps > 1; step++ {
			before, mode, speed := *v, v.mode, v.speed
			sh.step(v)
			if v.customer != before.customer {
				break // a new path
			}
			d := geo.DistanceM(before.lat, before.lng, v.lat, v.lng)
			switch mode {
			case standing:
				if d > 30 {
					t.Fatalf("standing customer moved %.0f m", d)
				}
			case errand:
				if d > speed*stepS+30 {
					t.Fatalf("errand: %.0f m in one step at %.1f m/s", d, speed)
				}
				if geo.DistanceM(v.lat, v.lng, v.goalLat, v.goalLng) < 25 {
					reached++
				}
			default:
				if math.Abs(d-speed*stepS) > 1 {
					t.Fatalf("%s at %.1f m/s moved %.1f m in %d s", modeNames[mode], speed, d, stepS)
				}
			}
		}
	}
	if reached == 0 {
		t.Error("no errand reached its store")
	}
}

func TestSummarize(t *testing.T) {
	var lat []time.Duration
	for i := 1; i <= 1000; i++ {
		lat = append(lat, time.Duration(i)*time.Millisecond/10) // 0.1 .. 100 ms
	}
	l, hist := summarize(lat)
	if l.P50 != 50.1 || l.P90 != 90.1 || l.P99 != 99.1 || l.P999 != 100 || l.Max != 100 {
		t.Errorf("percentiles %+v", l)
	}
	n := int64(0)
	prev := 0.0
	for _, b := range hist {
		n += b.Count
		if b.UpToMs <= prev {
			t.Fatalf("bands not rising: %v", hist)
		}
		prev = b.UpToMs
	}
	if n != 1000 || prev < 100 {
		t.Errorf("histogram holds %d pings up to %.1f ms", n, prev)
	}
}

// TestArrivals: a fixed rate's pings come as from many independent
// phones: a Poisson process, whose gaps are exponential (as many shorter
// than the mean as 1-1/e, a spread equal to the mean), not evenly spaced
// and not in bursts; the same seed gives the same times.
func TestArrivals(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	end := t0.Add(100 * time.Second)
	const rate = 1000.0
	a := newArrivals(t0, end, rate, 7)
	var gaps []float64
	var first time.Time
	prev := t0
	for {
		at, ok := a.at()
		if !ok {
			break
		}
		if first.IsZero() {
			first = at
		}
		if at.Before(prev) || !at.Before(end) {
			t.Fatalf("arrival %v after %v, or past the end", at, prev)
		}
		gaps = append(gaps, float64(at.Sub(prev))/float64(time.Millisecond))
		prev = at
	}
	// 100,000 expected; a Poisson count's spread is its square root, 316.
	if n := len(gaps); n < 98_500 || n > 101_500 {
		t.Fatalf("%d arrivals in 100 s at %.0f per s", n, rate)
	}
	var sum, short float64
	for _, g := range gaps {
		sum += g
		if g < 1 {
			short++
		}
	}
	mean := sum / float64(len(gaps))
	var sq float64
	for _, g := range gaps {
		sq += (g - mean) * (g - mean)
	}
	sd := math.Sqrt(sq / float64(len(gaps)))
	if math.Abs(mean-1) > 0.015 || math.Abs(sd/mean-1) > 0.03 {
		t.Errorf("gaps of mean %.4f ms, spread %.4f: want 1 ms and a spread equal to the mean", mean, sd)
	}
	if f := short / float64(len(gaps)); math.Abs(f-(1-1/math.E)) > 0.01 {
		t.Errorf("%.3f of the gaps shorter than the mean, want %.3f", f, 1-1/math.E)
	}
	b, c := newArrivals(t0, end, rate, 7), newArrivals(t0, end, rate, 8)
	x, _ := b.at()
	y, _ := c.at()
	if !x.Equal(first) || y.Equal(x) {
		t.Errorf("seed 7 starts at %v, then %v; seed 8 at %v", first, x, y)
	}
}

// TestPaceNeverEarly: the pacer hands out every arrival in order, each
// as its own time (from which the ping's latency counts, so that a late
// pacer or a busy bench cannot hide its wait), none before that time,
// and closes the slots after the last.
func TestPaceNeverEarly(t *testing.T) {
	start := time.Now()
	end := start.Add(200 * time.Millisecond)
	want := newArrivals(start, end, 5000, 3)
	slots := make(chan slot, 1<<12)
	go pace(context.Background(), newArrivals(start, end, 5000, 3), slots)
	n := 0
	for s := range slots {
		got := time.Now()
		at, ok := want.at()
		if !ok || !s.at.Equal(at) {
			t.Fatalf("slot %d is for %v, want the arrival at %v (%v)", n, s.at.Sub(start), at.Sub(start), ok)
		}
		if s.out.Before(at) || got.Before(at) {
			t.Fatalf("arrival at %v handed out %v early", at.Sub(start), at.Sub(s.out))
		}
		n++
	}
	if _, more := want.at(); more || n == 0 {
		t.Errorf("the pacer stopped after %d arrivals, before the last", n)
	}
}

// TestPaceStopsWhenCancelled: cancelled while it waits for an arrival's
// time, or while no one takes the arrivals that are due, the pacer stops
// and closes its slots.
func TestPaceStopsWhenCancelled(t *testing.T) {
	now := time.Now()
	for name, arr := range map[string]*arrivals{
		"waiting for a time":  newArrivals(now.Add(time.Hour), now.Add(2*time.Hour), 1, 3),
		"no one taking slots": newArrivals(now.Add(-time.Second), now.Add(time.Hour), 1000, 3),
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			slots := make(chan slot) // unbuffered, and never read
			done := make(chan struct{})
			go func() { pace(ctx, arr, slots); close(done) }()
			time.Sleep(10 * time.Millisecond) // let it reach its wait
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("a cancelled pacer did not stop")
			}
			if _, open := <-slots; open {
				t.Error("a stopped pacer left its slots open")
			}
		})
	}
}

func TestJudge(t *testing.T) {
	r := &Report{
		Phases: []*Phase{
			{Name: PhaseBaseline, Throughput: 1000},
			{Name: PhasePeak, Throughput: 1200},
			{Name: PhaseAt80, Throughput: 960, Latency: Latency{P99: 12}},
		},
		Memory: Memory{RedisBytesPerCustomerAfterRun: 900, IndexBytesPerCircle: 104},
	}
	r.judge()
	met := map[string]bool{}
	for _, a := range r.Aims {
		met[a.Name] = a.Met
	}
	want := map[string]bool{
		"decisions per second vs bare GEOSEARCH": true, "p99 at 80% of the peak rate": false,
		"Redis memory per customer": true, "geo index per circular store": true, "duplicate offers": true, "errors": true,
	}
	for k, v := range want {
		if got, ok := met[k]; !ok || got != v {
			t.Errorf("%s: met %v (listed %v), want %v", k, got, ok, v)
		}
	}
}

// The floor is what the two reference phases together allow: a machine
// busy with GEOSEARCHes at 80,000/s and round trips at 100,000/s would do
// 44,444 of both a second, 0.56x the GEOSEARCHes; by their CPU, 22 + 18
// µs on 2 CPUs, 50,000 (0.625x), the phases having kept 88% and 90% of
// the CPUs busy. Without both phases there is none.
func TestFloor(t *testing.T) {
	r := &Report{Machine: Machine{CPUs: 2}, Phases: []*Phase{
		{Name: PhaseBaseline, Throughput: 80000, CPUPerPingUs: map[string]float64{"bench": 12, "redis": 10}},
		{Name: PhaseHTTP, Throughput: 100000, CPUPerPingUs: map[string]float64{"bench": 9, "server": 9, "redis": 0}},
		{Name: PhasePeak, Throughput: 20000, CPUPerPingUs: map[string]float64{"bench": 19, "server": 42, "redis": 22}},
	}}
	r.judge()
	f := r.Floor
	if f == nil {
		t.Fatal("no floor with both reference phases")
	}
	if math.Abs(f.Throughput-44444.44) > 0.01 || math.Abs(f.VsGeosearch-0.5556) > 0.0001 || f.CPUUs != 40 || f.DecisionCPUUs != 83 {
		t.Errorf("floor %+v, want 44,444/s, 0.5556x, 40 and 83 µs", *f)
	}
	if math.Abs(f.CPUThroughput-50000) > 0.01 || math.Abs(f.CPUVsGeosearch-0.625) > 0.0001 || math.Abs(f.GeosearchBusy-0.88) > 1e-9 || math.Abs(f.HTTPBusy-0.9) > 1e-9 {
		t.Errorf("floor by CPU %+v, want 50,000/s, 0.625x, 88%% and 90%% busy", *f)
	}
	var b strings.Builder
	r.WriteText(&b)
	if want := "floor, estimated: an HTTP round trip and a GEOSEARCH, with no other work, 44444 per s by the two phases' rates (0.56x bare GEOSEARCH), 50000 per s with every CPU busy (0.62x; the phases kept 88% and 90% busy); they cost 40 µs of CPU, a full decision 83"; !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
	// The aim's line says what the floor leaves it.
	if want := "0.25x (20000 vs 80000 per s; the floor 0.56x by rate, 0.62x by CPU)"; !strings.Contains(b.String(), want) {
		t.Errorf("the aim's line lacks %q:\n%s", want, b.String())
	}
	// Without the CPU count, the floor by rate alone.
	r.Machine.CPUs = 0
	r.judge()
	b.Reset()
	r.WriteText(&b)
	if want := "0.25x (20000 vs 80000 per s; the floor 0.56x by rate)"; !strings.Contains(b.String(), want) {
		t.Errorf("without the CPU count, the aim's line lacks %q:\n%s", want, b.String())
	}
	r.Phases = r.Phases[1:] // no GEOSEARCH phase (--baseline http)
	r.judge()
	if r.Floor != nil {
		t.Errorf("a floor without the GEOSEARCH phase: %+v", *r.Floor)
	}
}

package geo

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/uber/h3-go/v4"
)

// bruteWatch is every fence as a watched circle, nearest first.
func bruteWatch(fences []Fence, lat, lng, minR float64) []Region {
	out := make([]Region, 0, len(fences))
	for i, f := range fences {
		cLat, cLng, size := f.Lat, f.Lng, f.RadiusM
		if f.Polygon != nil {
			cLat, cLng, size = boundingCircle(NormalizeRing(f.Polygon))
		}
		r := math.Max(size, minR)
		out = append(out, Region{Fence: int32(i), Lat: cLat, Lng: cLng, RadiusM: r, EdgeM: math.Max(0, DistanceM(lat, lng, cLat, cLng)-r)})
	}
	slices.SortFunc(out, func(a, b Region) int { return cmp.Compare(a.EdgeM, b.EdgeM) })
	return out
}

// The circles watched are the nearest ones, and the wake circle reaches
// no circle left out: a phone cannot come to a fence it does not watch
// without leaving the wake circle first. Against brute force, over
// cities, a mall of 200 small shops, polygons, big fences and empty land,
// at the platforms' limits.
func TestWatchIsNearestAndWakeReachesNoneLeftOut(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 5000
	}
	rng := rand.New(rand.NewPCG(17, 19))
	fences := randomFences(rng, n)
	ix, err := NewIndex(fences)
	if err != nil {
		t.Fatal(err)
	}
	points := 400
	sum := map[int]float64{}
	for p := range points {
		var lat, lng float64
		switch {
		case p%4 == 0:
			lat, lng = rng.Float64()*170-85, rng.Float64()*360-180
		case p%4 == 1: // the mall
			lat, lng = offset(52.5096, 13.3759, rng.Float64()*400, rng.Float64()*2*math.Pi)
		default:
			f := fences[rng.IntN(len(fences))]
			lat, lng = offset(f.Lat, f.Lng, rng.Float64()*3000, rng.Float64()*2*math.Pi)
		}
		all := bruteWatch(fences, lat, lng, 100)
		for _, k := range []int{0, 19, 99} {
			got, wake := ix.Watch(lat, lng, k, 100, nil)
			if len(got) > k || wake < 0 || wake > MaxWakeM {
				t.Fatalf("point %d, k %d: %d circles, wake %.0f", p, k, len(got), wake)
			}
			in := map[int32]bool{}
			for i, r := range got {
				in[r.Fence] = true
				if want := all[i].EdgeM; math.Abs(r.EdgeM-want) > 1e-6 {
					t.Fatalf("point %d (%f,%f), k %d: circle %d is %.1f m away, the %dth nearest %.1f m", p, lat, lng, k, i, r.EdgeM, i+1, want)
				}
				if r.RadiusM < 100 {
					t.Fatalf("a circle of %.0f m: the platforms' minimum is 100", r.RadiusM)
				}
			}
			// Fewer than k only when none is left within the wake circle's
			// greatest reach.
			if len(got) < k && len(all) > len(got) && all[len(got)].EdgeM < wake {
				t.Fatalf("point %d, k %d: %d circles, yet the next is %.0f m away within the wake of %.0f m", p, k, len(got), all[len(got)].EdgeM, wake)
			}
			for _, r := range all {
				if !in[r.Fence] && r.EdgeM < wake {
					t.Fatalf("point %d (%f,%f), k %d: wake %.0f m reaches fence %d, %.0f m away, not watched", p, lat, lng, k, wake, r.Fence, r.EdgeM)
				}
			}
			sum[k] += wake
		}
	}
	t.Logf("mean wake radius: %.0f m with none watched, %.0f m with 19, %.0f m with 99", sum[0]/float64(points), sum[19]/float64(points), sum[99]/float64(points))
}

// A polygon is watched as its enclosing circle; a small fence as a
// circle of the platform's minimum; far from every fence the wake circle
// is as wide as a search reaches.
func TestWatchShapes(t *testing.T) {
	ring := [][2]float64{{52.5200, 13.4000}, {52.5200, 13.4100}, {52.5260, 13.4100}, {52.5260, 13.4000}}
	fences := []Fence{
		{ID: "poly", Lat: 52.523, Lng: 13.405, Polygon: ring},
		{ID: "kiosk", Lat: 52.5300, Lng: 13.4050, RadiusM: 15},
	}
	ix, err := NewIndex(fences)
	if err != nil {
		t.Fatal(err)
	}
	got, wake := ix.Watch(52.523, 13.405, 19, 100, nil)
	if len(got) != 2 || got[0].Fence != 0 || got[0].EdgeM != 0 || got[1].RadiusM != 100 {
		t.Fatalf("watched %+v", got)
	}
	bLat, bLng, bR := boundingCircle(NormalizeRing(ring))
	if got[0].Lat != bLat || got[0].Lng != bLng || got[0].RadiusM != bR || bR < DistanceM(52.52, 13.40, bLat, bLng) {
		t.Fatalf("the polygon as %+v, want its enclosing circle (%f,%f) %.0f m", got[0], bLat, bLng, bR)
	}
	if wake != MaxWakeM {
		t.Fatalf("wake %.0f with every fence watched, want %d", wake, MaxWakeM)
	}
	// Watching one: the wake circle stops at the other's circle.
	got, wake = ix.Watch(52.523, 13.405, 1, 100, nil)
	if len(got) != 1 || math.Abs(wake-(DistanceM(52.523, 13.405, 52.53, 13.405)-100)) > 1e-6 {
		t.Fatalf("watching one: %+v, wake %.0f", got, wake)
	}
	// In the middle of the ocean.
	if got, wake := ix.Watch(-40, -120, 19, 100, nil); len(got) != 0 || wake != MaxWakeM {
		t.Fatalf("far from every fence: %+v, wake %.0f", got, wake)
	}
}

// BenchmarkWatch reports the cost of choosing what a phone watches (19
// circles, as on iOS), in the bench's metro and far from every store;
// with landmarks, a metro with some fences wider than a shop's (stations,
// stadiums: 800 to 1,500 m), as the load bench's city has.
func BenchmarkWatch(b *testing.B) {
	for _, n := range []int{1000, 100000, -100000} {
		m := max(n, -n)
		fences := benchFences(m)
		if n < 0 {
			rng := rand.New(rand.NewPCG(7, 8))
			for i := range 50 {
				lat, lng := offset(52.52, 13.405, math.Sqrt(rng.Float64())*benchSpreadM(m), rng.Float64()*2*math.Pi)
				fences = append(fences, Fence{ID: fmt.Sprint("landmark", i), Lat: lat, Lng: lng, RadiusM: 800 + rng.Float64()*700})
			}
		}
		ix, err := NewIndex(fences)
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprint(m, "_fences")
		if n < 0 {
			name += "_with_landmarks"
		}
		rng := rand.New(rand.NewPCG(5, 6))
		pts := make([][2]float64, 4096)
		for i := range pts {
			pts[i][0], pts[i][1] = offset(52.52, 13.405, math.Sqrt(rng.Float64())*benchSpreadM(m), rng.Float64()*2*math.Pi)
		}
		dst := make([]Region, 0, 256)
		runtime.GC()
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				p := pts[i%len(pts)]
				dst, _ = ix.Watch(p[0], p[1], 19, 100, dst[:0])
			}
		})
		// The engine's second search for an Android phone, where 19
		// regions leave a wake circle of 1 km or more: up to 99 regions,
		// into room for 100 (each ping's own). Here at every point.
		room := make([]Region, 0, 100)
		b.Run(name+"_99_regions", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				p := pts[i%len(pts)]
				if got, _ := ix.Watch(p[0], p[1], 99, 100, room[:0]); len(got) > 99 {
					b.Fatalf("%d regions", len(got))
				}
			}
		})
		b.Run(name+"_far_from_all", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				dst, _ = ix.Watch(48.0, 2.0, 19, 100, dst[:0])
			}
		})
	}
}

// TestDiskIsH3s: the rings a search reads into its own buffers are
// h3-go's GridDiskDistances, ring by ring in the same order, at each
// resolution and size a search uses, and beside a pentagon, where H3
// leaves cells empty.
func TestDiskIsH3s(t *testing.T) {
	var d disk
	origins := []h3.Cell{cellAt(52.52, 13.41, 8), cellAt(52.52, 13.41, 6), cellAt(-33.9, 151.2, 6), cellAt(0, 0, 8)}
	for _, res := range []int{6, 8} {
		origins = append(origins, h3.Pentagons(res)[3])
	}
	for _, o := range origins {
		for k := 0; k < watchRings; k++ {
			want := h3.GridDiskDistances(o, k)
			d.fill(o, k)
			for r := 0; r <= k; r++ {
				w := slices.DeleteFunc(slices.Clone(want[r]), func(c h3.Cell) bool { return c == 0 })
				if got := d.ring(r); !slices.Equal(got, w) {
					t.Fatalf("cell %v (pentagon %v), k=%d, ring %d: %v, want %v", o, o.IsPentagon(), k, r, got, w)
				}
			}
			if k > 0 && o.IsPentagon() && len(d.ring(1)) != 5 {
				t.Fatalf("pentagon %v: %d neighbours, want 5", o, len(d.ring(1)))
			}
		}
	}
}

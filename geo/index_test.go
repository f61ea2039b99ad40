package geo

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/uber/h3-go/v4"
)

func TestDistanceM(t *testing.T) {
	tests := []struct {
		name                   string
		lat1, lng1, lat2, lng2 float64
		want, tol              float64
	}{
		{"same point", 52.52, 13.41, 52.52, 13.41, 0, 1e-9},
		{"one degree of latitude", 0, 0, 1, 0, 111195, 1},
		{"Berlin Alexanderplatz to Hamburg Hbf", 52.5219, 13.4132, 53.5530, 10.0069, 255300, 1000},
		{"across the antimeridian", 0, 179.9995, 0, -179.9995, 111.2, 0.5},
		{"antipodes", 0, 0, 0, 180, math.Pi * EarthRadiusM, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DistanceM(tt.lat1, tt.lng1, tt.lat2, tt.lng2)
			if math.Abs(got-tt.want) > tt.tol {
				t.Fatalf("DistanceM = %.3f, want %.3f ± %.3f", got, tt.want, tt.tol)
			}
			// h3 uses the same sphere: both must agree to the millimetre.
			h := h3.GreatCircleDistanceM(h3.LatLng{Lat: tt.lat1, Lng: tt.lng1}, h3.LatLng{Lat: tt.lat2, Lng: tt.lng2})
			if math.Abs(got-h) > 1e-3 {
				t.Fatalf("DistanceM = %.6f, h3 says %.6f", got, h)
			}
		})
	}
}

func TestParentCellMatchesH3(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		ll := h3.LatLng{Lat: rng.Float64()*180 - 90, Lng: rng.Float64()*360 - 180}
		c := h3.LatLngToCell(ll, finestRes)
		for r := 0; r <= finestRes; r++ {
			if got, want := parentCell(c, r), c.Parent(r); got != want {
				t.Fatalf("parentCell(%v, %d) = %v, want %v", c, r, got, want)
			}
		}
	}
}

// bruteNear is the obviously right answer the index must reproduce.
func bruteNear(fences []Fence, lat, lng float64) []Hit {
	var out []Hit
	for i, f := range fences {
		d := DistanceM(lat, lng, f.Lat, f.Lng)
		if d <= f.RadiusM+ExitMarginM(f.RadiusM) {
			out = append(out, Hit{Fence: int32(i), DistanceM: d, Inside: d <= f.RadiusM})
		}
	}
	return out
}

func sortHits(h []Hit) []Hit {
	slices.SortFunc(h, func(a, b Hit) int { return int(a.Fence - b.Fence) })
	return h
}

// randomRadius draws radii log-uniformly over the whole allowed range, so
// 10 m fences are as common as 10 km ones.
func randomRadius(rng *rand.Rand) float64 {
	return math.Exp(rng.Float64()*(math.Log(MaxRadiusM)-math.Log(MinRadiusM)) + math.Log(MinRadiusM))
}

// offset moves a point by a distance (metres) on a bearing; good enough
// for placing test points, which are then measured exactly.
func offset(lat, lng, distM, bearing float64) (float64, float64) {
	δ := distM / EarthRadiusM
	φ1 := lat * math.Pi / 180
	λ1 := lng * math.Pi / 180
	φ2 := math.Asin(math.Sin(φ1)*math.Cos(δ) + math.Cos(φ1)*math.Sin(δ)*math.Cos(bearing))
	λ2 := λ1 + math.Atan2(math.Sin(bearing)*math.Sin(δ)*math.Cos(φ1), math.Cos(δ)-math.Sin(φ1)*math.Sin(φ2))
	lng2 := math.Mod(λ2*180/math.Pi+540, 360) - 180
	return φ2 * 180 / math.Pi, lng2
}

func TestIndexMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	var fences []Fence
	// Clusters of fences (a mall, a station) around a few city centres,
	// plus fences anywhere on Earth, including near the poles and the
	// antimeridian.
	centres := [][2]float64{{52.52, 13.405}, {53.55, 9.99}, {-33.87, 151.21}, {64.1, -21.9}, {0, 179.99}, {-0, -179.99}}
	for i := range 1500 {
		var lat, lng float64
		if i%3 == 0 {
			lat, lng = rng.Float64()*170-85, rng.Float64()*360-180
		} else {
			c := centres[rng.IntN(len(centres))]
			lat, lng = offset(c[0], c[1], rng.Float64()*5000, rng.Float64()*2*math.Pi)
		}
		fences = append(fences, Fence{ID: fmt.Sprint("f", i), Lat: lat, Lng: lng, RadiusM: randomRadius(rng)})
	}
	ix, err := NewIndex(fences)
	if err != nil {
		t.Fatal(err)
	}
	checked, hits := 0, 0
	for range 50000 {
		// Points near a fence's edge are where an index goes wrong.
		f := fences[rng.IntN(len(fences))]
		reach := f.RadiusM + ExitMarginM(f.RadiusM)
		lat, lng := offset(f.Lat, f.Lng, reach*(0.8+rng.Float64()*0.4), rng.Float64()*2*math.Pi)
		got := sortHits(ix.Near(lat, lng, nil))
		want := bruteNear(fences, lat, lng)
		if len(got) != len(want) {
			t.Fatalf("point (%f,%f): index found %d fences, brute force %d: %v vs %v", lat, lng, len(got), len(want), got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("point (%f,%f): hit %d = %+v, want %+v", lat, lng, i, got[i], want[i])
			}
		}
		checked++
		hits += len(got)
	}
	t.Logf("%d points, %d hits", checked, hits)
}

func TestIndexRadiusExtremes(t *testing.T) {
	for _, r := range []float64{MinRadiusM, 100, 1000, MaxRadiusM} {
		t.Run(fmt.Sprint(r, "m"), func(t *testing.T) {
			f := Fence{ID: "s", Lat: 52.5219, Lng: 13.4132, RadiusM: r}
			ix, err := NewIndex([]Fence{f})
			if err != nil {
				t.Fatal(err)
			}
			for b := 0.0; b < 2*math.Pi; b += math.Pi / 8 {
				lat, lng := offset(f.Lat, f.Lng, r*0.999, b)
				if h := ix.Near(lat, lng, nil); len(h) != 1 || !h[0].Inside {
					t.Fatalf("just inside at bearing %.2f: %+v", b, h)
				}
				lat, lng = offset(f.Lat, f.Lng, r*1.001+0.01, b)
				if h := ix.Near(lat, lng, nil); len(h) != 1 || h[0].Inside {
					t.Fatalf("just outside at bearing %.2f: %+v", b, h)
				}
				lat, lng = offset(f.Lat, f.Lng, (r+ExitMarginM(r))*1.001+0.01, b)
				if h := ix.Near(lat, lng, nil); len(h) != 0 {
					t.Fatalf("beyond the exit margin at bearing %.2f: %+v", b, h)
				}
			}
		})
	}
}

func TestNewIndexRefusesBadFences(t *testing.T) {
	tests := []struct {
		name string
		f    Fence
	}{
		{"radius too small", Fence{ID: "a", Lat: 1, Lng: 1, RadiusM: 9}},
		{"radius too large", Fence{ID: "a", Lat: 1, Lng: 1, RadiusM: 50001}},
		{"latitude out of range", Fence{ID: "a", Lat: 91, Lng: 1, RadiusM: 100}},
		{"longitude NaN", Fence{ID: "a", Lat: 1, Lng: math.NaN(), RadiusM: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewIndex([]Fence{tt.f}); err == nil {
				t.Fatal("NewIndex accepted a bad fence")
			}
		})
	}
}

func benchFences(n int) []Fence {
	rng := rand.New(rand.NewPCG(3, 4))
	fences := make([]Fence, n)
	for i := range fences {
		// A metro area of about 60 x 60 km, Starbucks-like radii.
		lat, lng := offset(52.52, 13.405, math.Sqrt(rng.Float64())*30000, rng.Float64()*2*math.Pi)
		fences[i] = Fence{ID: fmt.Sprint("s", i), Lat: lat, Lng: lng, RadiusM: 50 + rng.Float64()*250}
	}
	return fences
}

func BenchmarkIndexNear(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprint(n, "_fences"), func(b *testing.B) {
			fences := benchFences(n)
			ix, err := NewIndex(fences)
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(5, 6))
			pts := make([][2]float64, 1024)
			for i := range pts {
				pts[i][0], pts[i][1] = offset(52.52, 13.405, math.Sqrt(rng.Float64())*30000, rng.Float64()*2*math.Pi)
			}
			dst := make([]Hit, 0, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p := pts[i%len(pts)]
				dst = ix.Near(p[0], p[1], dst[:0])
			}
		})
	}
}

func BenchmarkNewIndex(b *testing.B) {
	fences := benchFences(10000)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := NewIndex(fences); err != nil {
			b.Fatal(err)
		}
	}
}

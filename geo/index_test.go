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
		if h, ok := CheckFence(f, lat, lng); ok {
			h.Fence = int32(i)
			out = append(out, h)
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

// randomPolygon is a star-shaped ring around a centre (simple by
// construction: vertices at increasing angles), of 3 to 12 points.
func randomPolygon(rng *rand.Rand, lat, lng, size float64) [][2]float64 {
	n := 3 + rng.IntN(10)
	ring := make([][2]float64, n)
	for i := range ring {
		a := (float64(i) + 0.2 + 0.6*rng.Float64()) / float64(n) * 2 * math.Pi
		ring[i][0], ring[i][1] = offset(lat, lng, size*(0.3+0.7*rng.Float64()), a)
	}
	return ring
}

// randomFences makes n fences: clusters around city centres (and a mall:
// many small overlapping fences), circles of every radius and polygons,
// some far from any city, near the poles or the antimeridian.
func randomFences(rng *rand.Rand, n int) []Fence {
	centres := [][2]float64{{52.52, 13.405}, {53.55, 9.99}, {-33.87, 151.21}, {64.1, -21.9}, {0, 179.9}, {1, -179.9}, {40.71, -74.0}, {35.68, 139.69}}
	fences := make([]Fence, n)
	for i := range fences {
		var lat, lng float64
		switch {
		case i%10 == 0:
			lat, lng = rng.Float64()*170-85, rng.Float64()*340-170
		case i%500 == 1: // the mall: 200 shops within a few hundred metres
			lat, lng = offset(52.5096, 13.3759, rng.Float64()*300, rng.Float64()*2*math.Pi)
		default:
			c := centres[rng.IntN(len(centres))]
			lat, lng = offset(c[0], c[1], math.Sqrt(rng.Float64())*30000, rng.Float64()*2*math.Pi)
		}
		r := randomRadius(rng)
		if i%10 != 0 { // city stores: up to 500 m; the big ones are out of town
			r = math.Min(r, 10+math.Mod(r, 500))
		}
		if i%500 == 1 {
			r = 10 + rng.Float64()*40
		}
		f := Fence{ID: fmt.Sprint("f", i), Lat: lat, Lng: lng, RadiusM: r}
		if i%4 == 3 {
			ring := randomPolygon(rng, lat, lng, math.Min(r, MaxRadiusM/1.5))
			if ValidatePolygon(ring) == nil { // not across the antimeridian
				f.Polygon, f.RadiusM = ring, 0
			}
		}
		fences[i] = f
	}
	return fences
}

// bandScan is a brute-force scan made fast enough for 100,000 × 100,000:
// fences sorted by latitude, and for each point every fence whose reach
// could include it by latitude and longitude alone, each then measured
// with CheckFence. It shares nothing with the index but CheckFence.
type bandScan struct {
	fences []Fence
	order  []int32   // by latitude
	lats   []float64 // sorted
	reachD []float64 // reach in degrees of latitude, per fence
	maxD   float64
}

func newBandScan(fences []Fence) *bandScan {
	b := &bandScan{fences: fences, reachD: make([]float64, len(fences))}
	for i, f := range fences {
		size := f.RadiusM
		if f.Polygon != nil {
			_, _, size = boundingCircle(NormalizeRing(f.Polygon))
			size += DistanceM(f.Lat, f.Lng, f.Polygon[0][0], f.Polygon[0][1]) // store point may sit off the ring's centre
		}
		b.reachD[i] = (size*1.01 + 1 + slackM(size)) / 111000
		b.maxD = math.Max(b.maxD, b.reachD[i])
		b.order = append(b.order, int32(i))
	}
	slices.SortFunc(b.order, func(x, y int32) int { return cmp.Compare(fences[x].Lat, fences[y].Lat) })
	for _, i := range b.order {
		b.lats = append(b.lats, fences[i].Lat)
	}
	return b
}

func (b *bandScan) near(lat, lng float64) []Hit {
	lo, _ := slices.BinarySearch(b.lats, lat-b.maxD)
	var out []Hit
	for k := lo; k < len(b.lats) && b.lats[k] <= lat+b.maxD; k++ {
		i := b.order[k]
		f := b.fences[i]
		if math.Abs(f.Lat-lat) > b.reachD[i] {
			continue
		}
		dl := math.Abs(f.Lng - lng)
		if dl > 180 {
			dl = 360 - dl
		}
		if dl*math.Cos(math.Min(89.9, math.Abs(lat)+b.reachD[i])*math.Pi/180) > b.reachD[i] {
			continue
		}
		if h, ok := CheckFence(f, lat, lng); ok {
			h.Fence = i
			out = append(out, h)
		}
	}
	return sortHits(out)
}

func TestBandScanIsBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	fences := randomFences(rng, 2000)
	b := newBandScan(fences)
	for range 3000 {
		f := fences[rng.IntN(len(fences))]
		lat, lng := offset(f.Lat, f.Lng, rng.Float64()*3*math.Max(f.RadiusM, 100), rng.Float64()*2*math.Pi)
		if got, want := b.near(lat, lng), bruteNear(fences, lat, lng); !slices.Equal(got, want) {
			t.Fatalf("band scan %v, brute force %v", got, want)
		}
	}
}

// The index against brute force: 100,000 fences of every kind and size,
// 100,000 points, most of them near some fence's edge. No mismatch.
func TestIndexMatchesBruteForce(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 10000
	}
	rng := rand.New(rand.NewPCG(7, 11))
	fences := randomFences(rng, n)
	ix, err := NewIndex(fences)
	if err != nil {
		t.Fatal(err)
	}
	brute := newBandScan(fences)
	hits, inside := 0, 0
	for p := range n {
		var lat, lng float64
		if p%5 == 0 {
			lat, lng = rng.Float64()*170-85, rng.Float64()*360-180
		} else {
			f := fences[rng.IntN(len(fences))]
			size := f.RadiusM
			if f.Polygon != nil {
				size = 100
				v := f.Polygon[rng.IntN(len(f.Polygon))]
				lat, lng = v[0], v[1]
			} else {
				lat, lng = f.Lat, f.Lng
			}
			lat, lng = offset(lat, lng, (size+slackM(size))*rng.Float64()*1.2, rng.Float64()*2*math.Pi)
		}
		got := sortHits(ix.Near(lat, lng, nil))
		want := brute.near(lat, lng)
		if !slices.Equal(got, want) {
			t.Fatalf("point %d (%f,%f): index %+v, brute force %+v", p, lat, lng, got, want)
		}
		hits += len(got)
		for _, h := range got {
			if h.Inside {
				inside++
			}
		}
	}
	t.Logf("%d fences, %d points: %d hits, %d inside; index %d bytes (%.0f per fence)", n, n, hits, inside, ix.Bytes(), float64(ix.Bytes())/float64(n))
	if inside < n/10 {
		t.Fatalf("only %d points fell inside a fence: the test would not catch a miss", inside)
	}
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
				lat, lng = offset(f.Lat, f.Lng, (r+slackM(r))*1.001+0.01, b)
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

// benchSpreadM is the radius of the area n bench stores cover: 20,000
// stores in a metro area 30 km across, and more stores over a wider area
// at the same density (a million reach 210 km: a country's worth).
func benchSpreadM(n int) float64 { return 30000 * math.Sqrt(float64(n)/20000) }

// benchFences spreads n Starbucks-like stores (50 to 300 m) at a metro's
// density: most pings land near no store, as in life.
func benchFences(n int) []Fence {
	rng := rand.New(rand.NewPCG(3, 4))
	fences := make([]Fence, n)
	spread := benchSpreadM(n)
	for i := range fences {
		lat, lng := offset(52.52, 13.405, math.Sqrt(rng.Float64())*spread, rng.Float64()*2*math.Pi)
		fences[i] = Fence{ID: fmt.Sprint("s", i), Lat: lat, Lng: lng, RadiusM: 50 + rng.Float64()*250}
	}
	return fences
}

var benchSizes = []int{1000, 100000, 1000000}

// BenchmarkIndexNear reports a lookup's time and allocations, and the
// index's size per fence.
func BenchmarkIndexNear(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n, "_fences"), func(b *testing.B) {
			ix, err := NewIndex(benchFences(n))
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(5, 6))
			pts := make([][2]float64, 4096)
			for i := range pts {
				pts[i][0], pts[i][1] = offset(52.52, 13.405, math.Sqrt(rng.Float64())*benchSpreadM(n), rng.Float64()*2*math.Pi)
			}
			dst := make([]Hit, 0, 64)
			runtime.GC() // the build's garbage is not the lookup's cost
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p := pts[i%len(pts)]
				dst = ix.Near(p[0], p[1], dst[:0])
			}
			b.ReportMetric(float64(ix.Bytes())/float64(n), "index-bytes/fence")
		})
	}
}

// BenchmarkNewIndex reports the time to build the index.
func BenchmarkNewIndex(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n, "_fences"), func(b *testing.B) {
			fences := benchFences(n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := NewIndex(fences); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestCellAtMatchesH3(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for range 5000 {
		lat, lng := rng.Float64()*180-90, rng.Float64()*360-180
		res := rng.IntN(16)
		if got, want := cellAt(lat, lng, res), h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, res); got != want {
			t.Fatalf("cellAt(%f, %f, %d) = %v, want %v", lat, lng, res, got, want)
		}
	}
}

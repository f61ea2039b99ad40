package geo

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/uber/h3-go/v4"
)

// Resolution bounds of the cells a fence is indexed with. A fence is put
// on the finest resolution whose average cell edge is at least two thirds
// of its reach, so every fence costs about ten cells whatever its size:
// a 50 km fence a few coarse cells, a 10 m fence a few fine ones.
const (
	coarsestRes = 2
	finestRes   = 13
)

// Hit is a fence near a point.
type Hit struct {
	// Fence is the position of the fence in the slice the index was built from.
	Fence int32
	// DistanceM is the great-circle distance from the point to the
	// fence's store point (a circle's centre).
	DistanceM float64
	// OutsideM is how far the point lies beyond the fence's edge; 0 inside.
	OutsideM float64
	// Inside is true when the fence contains the point.
	Inside bool
	// SizeM is the fence's radius, or a polygon's bounding radius.
	SizeM float64
}

// Held reports whether a customer at this hit, with a fix of the given
// accuracy, may still be inside: not clearly beyond the edge.
func (h Hit) Held(accuracyM float64) bool {
	return h.OutsideM <= ExitMarginM(h.SizeM)+accuracyM
}

// slackM is how far beyond its edge a fence is still reported by Near: the
// exit margin plus the worst accuracy a fix may have and still count.
func slackM(sizeM float64) float64 { return ExitMarginM(sizeM) + MaxAccuracyM }

type fence struct {
	lat, lng float64 // store point
	size     float64 // radius, or polygon bounding radius
	poly     int32   // index into Index.polys; -1 for a circle
}

type polygon struct {
	ring       [][2]float64
	bLat, bLng float64 // bounding circle centre
}

// level holds the cells of one resolution, sorted, each with the fence it
// covers; a cell covering several fences appears once per fence.
type level struct {
	res    int
	cells  []h3.Cell
	fences []int32
}

// Index answers which fences hold or are near a point. It is immutable
// once built and safe for concurrent use.
type Index struct {
	fences []fence
	polys  []polygon
	levels []level // finest first
	watch  watchGrid
}

// NewIndex builds the index of fences. A fence's position in fences is
// the Hit.Fence that names it. Fences are checked: a bad one is an error
// naming it.
func NewIndex(fences []Fence) (*Index, error) {
	ix := &Index{fences: make([]fence, len(fences))}
	type coverJob struct {
		lat, lng, reach float64
	}
	jobs := make([]coverJob, len(fences))
	for i, f := range fences {
		if err := ValidPoint(f.Lat, f.Lng); err != nil {
			return nil, fmt.Errorf("fence %q: %w", f.ID, err)
		}
		if f.Polygon != nil {
			ring := NormalizeRing(f.Polygon)
			if err := ValidatePolygon(ring); err != nil {
				return nil, fmt.Errorf("fence %q: %w", f.ID, err)
			}
			bLat, bLng, bR := boundingCircle(ring)
			ix.fences[i] = fence{lat: f.Lat, lng: f.Lng, size: bR, poly: int32(len(ix.polys))}
			ix.polys = append(ix.polys, polygon{ring: slices.Clone(ring), bLat: bLat, bLng: bLng})
			// Straight edges between points inside the bounding circle stay
			// inside it to within a fraction of a percent at these sizes.
			jobs[i] = coverJob{bLat, bLng, bR*1.005 + 1 + slackM(bR)}
			continue
		}
		if f.RadiusM < MinRadiusM || f.RadiusM > MaxRadiusM || math.IsNaN(f.RadiusM) {
			return nil, fmt.Errorf("fence %q: radius_m must be between %d and %d", f.ID, MinRadiusM, MaxRadiusM)
		}
		ix.fences[i] = fence{lat: f.Lat, lng: f.Lng, size: f.RadiusM, poly: -1}
		jobs[i] = coverJob{f.Lat, f.Lng, f.RadiusM + slackM(f.RadiusM)}
	}

	// Covering is the costly part (cgo calls into H3): share it out.
	type pair struct {
		cell  h3.Cell
		fence int32
	}
	workers := runtime.GOMAXPROCS(0)
	parts := make([][]pair, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var out []pair
			for i := w; i < len(jobs); i += workers {
				j := jobs[i]
				for _, c := range cover(j.lat, j.lng, j.reach) {
					out = append(out, pair{c, int32(i)})
				}
			}
			parts[w] = out
		}(w)
	}
	wg.Wait()

	byRes := map[int][]pair{}
	for _, part := range parts {
		for _, p := range part {
			r := p.cell.Resolution()
			byRes[r] = append(byRes[r], p)
		}
	}
	for r, ps := range byRes {
		slices.SortFunc(ps, func(a, b pair) int {
			if c := cmp.Compare(a.cell, b.cell); c != 0 {
				return c
			}
			return cmp.Compare(a.fence, b.fence)
		})
		lv := level{res: r, cells: make([]h3.Cell, len(ps)), fences: make([]int32, len(ps))}
		for i, p := range ps {
			lv.cells[i], lv.fences[i] = p.cell, p.fence
		}
		ix.levels = append(ix.levels, lv)
	}
	slices.SortFunc(ix.levels, func(a, b level) int { return b.res - a.res })
	ix.watch = newWatchGrid(ix.fences, ix.polys)
	return ix, nil
}

// Len is the number of fences in the index.
func (ix *Index) Len() int { return len(ix.fences) }

// Bytes estimates the memory the index holds.
func (ix *Index) Bytes() int {
	n := len(ix.fences) * 32
	for _, p := range ix.polys {
		n += 40 + len(p.ring)*16
	}
	for _, lv := range ix.levels {
		n += len(lv.cells)*8 + len(lv.fences)*4
	}
	return n + ix.watch.bytes()
}

// Near appends to dst every fence that holds the point or whose edge is
// within its exit margin plus MaxAccuracyM of it, and returns dst. It
// allocates nothing when dst has room.
func (ix *Index) Near(lat, lng float64, dst []Hit) []Hit {
	if len(ix.levels) == 0 || ValidPoint(lat, lng) != nil {
		return dst
	}
	finest := cellAt(lat, lng, ix.levels[0].res)
	pre := newPrefilter(lat, lng)
	for li := range ix.levels {
		lv := &ix.levels[li]
		key := parentCell(finest, lv.res)
		i, _ := slices.BinarySearch(lv.cells, key)
		for ; i < len(lv.cells) && lv.cells[i] == key; i++ {
			if h, ok := ix.check(lv.fences[i], lat, lng, &pre); ok {
				dst = append(dst, h)
			}
		}
	}
	return dst
}

// prefilter rejects a far candidate without trigonometry. Fences within
// reach lie within half a degree of latitude of the point (reach is under
// 56 km), so measuring longitude with the cosine half a degree poleward
// underestimates every distance: a candidate this says is out of reach is.
type prefilter struct {
	lat, lng, mPerDegLng float64
}

const mPerDeg = EarthRadiusM * math.Pi / 180

func newPrefilter(lat, lng float64) prefilter {
	return prefilter{lat: lat, lng: lng, mPerDegLng: mPerDeg * math.Cos(math.Min(90, math.Abs(lat)+0.5)*math.Pi/180)}
}

// beyond reports whether (lat, lng) is surely farther than reachM away.
func (p *prefilter) beyond(lat, lng, reachM float64) bool {
	dy := (lat - p.lat) * mPerDeg
	dl := math.Abs(lng - p.lng)
	if dl > 180 {
		dl = 360 - dl
	}
	dx := dl * p.mPerDegLng
	r := reachM*1.01 + 1
	return dx*dx+dy*dy > r*r
}

// check measures one fence exactly.
func (ix *Index) check(i int32, lat, lng float64, pre *prefilter) (Hit, bool) {
	f := &ix.fences[i]
	slack := slackM(f.size)
	if f.poly < 0 {
		if pre != nil && pre.beyond(f.lat, f.lng, f.size+slack) {
			return Hit{}, false
		}
		d := DistanceM(lat, lng, f.lat, f.lng)
		out := math.Max(0, d-f.size)
		return Hit{Fence: i, DistanceM: d, OutsideM: out, Inside: d <= f.size, SizeM: f.size}, out <= slack
	}
	p := &ix.polys[f.poly]
	if pre != nil && pre.beyond(p.bLat, p.bLng, f.size*1.005+1+slack) || DistanceM(lat, lng, p.bLat, p.bLng) > f.size*1.005+1+slack {
		return Hit{}, false
	}
	h := Hit{Fence: i, DistanceM: DistanceM(lat, lng, f.lat, f.lng), SizeM: f.size}
	if containsPoint(p.ring, lat, lng) {
		h.Inside = true
		return h, true
	}
	h.OutsideM = distanceToRingM(p.ring, lat, lng)
	return h, h.OutsideM <= slack
}

// CheckFence measures a point against one fence directly, without the
// index: the brute-force answer the index must agree with.
func CheckFence(f Fence, lat, lng float64) (Hit, bool) {
	ix := &Index{fences: []fence{{lat: f.Lat, lng: f.Lng, size: f.RadiusM, poly: -1}}}
	if f.Polygon != nil {
		ring := NormalizeRing(f.Polygon)
		bLat, bLng, bR := boundingCircle(ring)
		ix.fences[0] = fence{lat: f.Lat, lng: f.Lng, size: bR, poly: 0}
		ix.polys = []polygon{{ring: ring, bLat: bLat, bLng: bLng}}
	}
	return ix.check(0, lat, lng, nil)
}

// resolutionFor picks the finest resolution whose average cell edge is at
// least two thirds of reach.
func resolutionFor(reachM float64) int {
	for r := finestRes; r > coarsestRes; r-- {
		if h3.HexagonEdgeLengthAvgM(r) >= reachM/1.5 {
			return r
		}
	}
	return coarsestRes
}

// cover returns cells that together hold every point within reachM of the
// centre. A point p within reach of c lies in a cell whose centre is within
// reach + circumradius of c; so every cell with its centre that close is
// kept. They form a connected patch, found by flooding out from c's cell.
// Cell sizes vary by about a factor of two across the globe at one
// resolution, hence the generous bound on the circumradius.
func cover(lat, lng, reachM float64) []h3.Cell {
	res := resolutionFor(reachM)
	limit := reachM + 1.6*h3.HexagonEdgeLengthAvgM(res)
	start := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, res)
	seen := map[h3.Cell]bool{start: true}
	out := []h3.Cell{start}
	for q := 0; q < len(out); q++ {
		for _, n := range h3.GridDisk(out[q], 1) {
			if n == 0 || seen[n] {
				continue
			}
			seen[n] = true
			ll := h3.CellToLatLng(n)
			if DistanceM(lat, lng, ll.Lat, ll.Lng) <= limit {
				out = append(out, n)
			}
		}
	}
	return out
}

// parentCell is h3's cellToParent done with bit operations, so that a
// lookup makes one cgo call rather than one per resolution. An H3 cell
// index keeps its resolution in bits 52..55 and one 3-bit digit per
// resolution; digits past the resolution are all ones.
func parentCell(c h3.Cell, res int) h3.Cell {
	const resShift = 52
	const resMask = uint64(0xF) << resShift
	v := uint64(c)
	cur := int((v & resMask) >> resShift)
	if res >= cur {
		return c
	}
	v = v&^resMask | uint64(res)<<resShift
	for r := res + 1; r <= cur; r++ {
		v |= uint64(7) << ((15 - r) * 3)
	}
	return h3.Cell(v)
}

// Within lists the fences whose edge lies within radiusM of the point
// (0 when the point is inside), nearest first. It scans every fence, with
// a cheap latitude test first: it serves people browsing stores, not pings.
func (ix *Index) Within(lat, lng, radiusM float64) []Hit {
	var out []Hit
	for i := range ix.fences {
		f := &ix.fences[i]
		if math.Abs(f.lat-lat)*111000 > radiusM+f.size*2.1+1000 {
			continue
		}
		var h Hit
		if f.poly < 0 {
			d := DistanceM(lat, lng, f.lat, f.lng)
			h = Hit{Fence: int32(i), DistanceM: d, OutsideM: math.Max(0, d-f.size), Inside: d <= f.size, SizeM: f.size}
		} else {
			p := &ix.polys[f.poly]
			h = Hit{Fence: int32(i), DistanceM: DistanceM(lat, lng, f.lat, f.lng), SizeM: f.size}
			if containsPoint(p.ring, lat, lng) {
				h.Inside = true
			} else {
				h.OutsideM = distanceToRingM(p.ring, lat, lng)
			}
		}
		if h.OutsideM <= radiusM {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b Hit) int {
		if c := cmp.Compare(a.OutsideM, b.OutsideM); c != 0 {
			return c
		}
		return cmp.Compare(a.DistanceM, b.DistanceM)
	})
	return out
}

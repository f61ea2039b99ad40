package geo

import (
	"cmp"
	"math"
	"slices"
	"sync"

	"github.com/uber/h3-go/v4"
)

// A phone does not ping every few seconds: its operating system watches
// a few circles (iOS at most 20 per app, Android 100) and wakes the app
// when it crosses one. Watch picks those circles: the fences nearest a
// point, and a wake circle around the point that reaches no fence left
// out, so that the phone cannot come to a fence it does not watch
// without first leaving the wake circle and asking again.

// Region is a fence as the circle an operating system watches: a
// circle's own centre and radius, a polygon's enclosing circle, never
// smaller than the smallest radius asked for.
type Region struct {
	// Fence is the fence's position in the slice the index was built from.
	Fence    int32
	Lat, Lng float64
	RadiusM  float64
	// EdgeM is how far the point lies outside the circle; 0 inside.
	EdgeM float64
}

// flat measures distances on a plane tangent at the point: within the
// ~90 km a search reads, below 70° of latitude, it errs by under 4% (the
// cosine of latitude changes over the span), so bounds of ±5% and a metre
// hold. Nearer the poles every distance is measured exactly.
type flat struct {
	lat, lng, mLat, mLng float64
	exact                bool
}

const flatErr = 0.05

func newFlat(lat, lng float64) flat {
	m := EarthRadiusM * math.Pi / 180
	return flat{lat: lat, lng: lng, mLat: m, mLng: m * math.Cos(lat*math.Pi/180), exact: math.Abs(lat) > 70}
}

// The watch grid keeps fences under the cell of their centre at two
// resolutions: small ones at res 8 (cells about 0.9 km across), where a
// city's stores are found in a few rings, and every fence up to
// watchBigM at res 6 (about 6 km across), for the medium ones and for
// the empty land between cities; wider fences in a list every search
// reads whole (there are few).
const (
	watchSmallM = 400
	watchBigM   = 3000
	// watchRings is how many rings around a point's res-6 cell a search
	// reads at most: past (watchRings-1)·ringM - watchBigM (27 km) it
	// stops, and the wake circle ends there.
	watchRings = 11
	// watchFineRings is how many rings of res-8 cells a search reads
	// before it turns to res 6.
	watchFineRings = 6
	// MaxWakeM is the largest wake circle Watch gives.
	MaxWakeM = (watchRings-1)*3000 - watchBigM
)

// watchLevel is one resolution's fences, sorted by the cell of their
// centre. ringM is a lower bound of how far each ring of cells around a
// point reaches beyond the one before (the narrowest cells, however H3
// distorts them, are wider than that).
type watchLevel struct {
	res    int
	ringM  float64
	cells  []h3.Cell
	fences []int32
	near   []watchNear // beside cells: what ranking a fence needs, read in order
}

// watchNear is a fence's centre and radius to a few decimetres (float32):
// enough to rank, while the nearest are measured exactly.
type watchNear struct{ lat, lng, size float32 }

type watchGrid struct {
	fine, coarse watchLevel
	// medium is coarse's fences that fine has not (wider than
	// watchSmallM), for a search in a city, which reads the small ones at
	// res 8: among a city's thousands of shops a res-6 cell holds
	// hundreds, and a search read them all to find the few that are not.
	medium watchLevel
	big    []int32
}

func newWatchGrid(fs []fence, polys []polygon) watchGrid {
	g := watchGrid{fine: watchLevel{res: 8, ringM: 500}, coarse: watchLevel{res: 6, ringM: 3000}, medium: watchLevel{res: 6, ringM: 3000}}
	type pair struct {
		cell  h3.Cell
		fence int32
	}
	var fine, coarse, medium []pair
	for i := range fs {
		if fs[i].size > watchBigM {
			g.big = append(g.big, int32(i))
			continue
		}
		lat, lng := watchCentre(&fs[i], polys)
		coarse = append(coarse, pair{cellAt(lat, lng, g.coarse.res), int32(i)})
		if fs[i].size <= watchSmallM {
			fine = append(fine, pair{cellAt(lat, lng, g.fine.res), int32(i)})
		} else {
			medium = append(medium, coarse[len(coarse)-1])
		}
	}
	for _, lv := range []struct {
		ps []pair
		to *watchLevel
	}{{fine, &g.fine}, {coarse, &g.coarse}, {medium, &g.medium}} {
		slices.SortFunc(lv.ps, func(a, b pair) int { return cmp.Compare(a.cell, b.cell) })
		lv.to.cells, lv.to.fences, lv.to.near = make([]h3.Cell, len(lv.ps)), make([]int32, len(lv.ps)), make([]watchNear, len(lv.ps))
		for i, p := range lv.ps {
			lv.to.cells[i], lv.to.fences[i] = p.cell, p.fence
			lat, lng := watchCentre(&fs[p.fence], polys)
			lv.to.near[i] = watchNear{float32(lat), float32(lng), float32(fs[p.fence].size)}
		}
	}
	return g
}

// anyNear tells whether any fence of the grid has its centre in the
// point's res-6 cell or those around it: if none does, the search at
// res 8 would read its rings for nothing.
func (g *watchGrid) anyNear(lat, lng float64, d *disk) bool {
	d.fill(cellAt(lat, lng, g.coarse.res), 1)
	for _, c := range d.byRing[:d.start[2]] {
		if _, found := slices.BinarySearch(g.coarse.cells, c); found {
			return true
		}
	}
	return false
}

func (g *watchGrid) bytes() int {
	return (len(g.fine.cells)+len(g.coarse.cells)+len(g.medium.cells))*24 + len(g.big)*4
}

// watchCentre is the centre of the circle a fence is watched as: a
// circle's own, a polygon's enclosing circle's.
func watchCentre(f *fence, polys []polygon) (lat, lng float64) {
	if f.poly >= 0 {
		p := &polys[f.poly]
		return p.bLat, p.bLng
	}
	return f.lat, f.lng
}

// Watch appends to dst the k fences nearest the point, by how far the
// point lies outside each one's circle (no smaller than minRadiusM),
// nearest first, and returns them with the wake radius: how far the point
// may move and still be outside every circle left out. The wake radius is
// at most MaxWakeM; with k = 0 it is the distance to the nearest circle.
// It reads a few dozen cells in a city and a few hundred where no fence
// is within tens of kilometres, ranks what it reads by a flat measure and
// measures only the nearest exactly.
func (ix *Index) Watch(lat, lng float64, k int, minRadiusM float64, dst []Region) ([]Region, float64) {
	if ValidPoint(lat, lng) != nil || len(ix.fences) == 0 {
		return dst, MaxWakeM
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	cs := sc.cs[:0]
	defer func() { sc.cs = cs[:0] }() // keep what the search grew to
	for _, i := range ix.watch.big {  // a big fence may lie anywhere: measured
		cs = append(cs, ix.measured(i, lat, lng, minRadiusM))
	}
	g := &ix.watch
	fl := newFlat(lat, lng)
	// In a city: the small fences ring by ring at res 8 until k+1 of them
	// are known nearest; then the medium ones at res 6, as far as the
	// (k+1)th small one.
	withBig := len(cs)
	fine, ok := 0.0, false
	if g.anyNear(lat, lng, &sc.disk) {
		cs, fine, ok = fl.rings(&g.fine, 1, watchFineRings, k, minRadiusM, 0, cs, &sc.disk)
	}
	if ok {
		if len(g.medium.cells) == 0 {
			return ix.watched(dst, cs, k, fine, lat, lng, minRadiusM, sc)
		}
		var coarse float64
		cs, coarse, _ = fl.rings(&g.medium, 0, watchRings-1, -1, minRadiusM, sc.kthHigh(cs[withBig:], k), cs, &sc.disk)
		return ix.watched(dst, cs, k, math.Min(fine, coarse), lat, lng, minRadiusM, sc)
	}
	// Elsewhere: every fence up to watchBigM at res 6.
	cs, coarse, _ := fl.rings(&g.coarse, 1, watchRings-1, k, minRadiusM, 0, cs[:withBig], &sc.disk)
	return ix.watched(dst, cs, k, math.Max(coarse, 0), lat, lng, minRadiusM, sc)
}

// scratch is what one search works in: the candidates it reads (a few
// hundred in a city, thousands for a hundred regions) and their bounds to
// select from. Searches run on every ping that leaves its block, so they
// reuse these rather than allocate them.
type scratch struct {
	cs   []cand
	his  []float32
	regs []Region // the candidates measured, before the k nearest go to the caller
	disk disk
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{cs: make([]cand, 0, 512), his: make([]float32, 0, 512), regs: make([]Region, 0, 256)}
}}

// cand is a fence a search read, with bounds of how far the point lies
// outside its circle.
type cand struct {
	fence  int32
	lo, hi float32
}

// rings appends the fences of lv,
// ring by ring around the point's cell (the first `first` rings at once,
// then up to last), until k+1 circles read lie no farther than every
// circle not read yet (k < 0: until that bound reaches `reach`). It
// answers the bound: every fence of lv not read lies at least that far
// outside its circle.
func (fl *flat) rings(lv *watchLevel, first, last, k int, minRadiusM, reach float64, cs []cand, dk *disk) ([]cand, float64, bool) {
	origin := cellAt(fl.lat, fl.lng, lv.res)
	base := len(cs)
	covered := math.Inf(-1)
	slack := watchBigM
	if lv.ringM < 1000 { // the fine level holds the small fences only
		slack = watchSmallM
	}
	// Rings are computed up to first, then twice as far each time.
	for from, upTo := 0, first; from <= last; from, upTo = upTo+1, min(2*upTo+1, last) {
		dk.fill(origin, upTo)
		for d := from; d <= upTo; d++ {
			for _, c := range dk.ring(d) {
				i, _ := slices.BinarySearch(lv.cells, c)
				for ; i < len(lv.cells) && lv.cells[i] == c; i++ {
					cs = append(cs, fl.bound(lv.fences[i], &lv.near[i], minRadiusM))
				}
			}
			covered = float64(d)*lv.ringM - math.Max(float64(slack), minRadiusM)
			if k < 0 && covered >= reach || k >= 0 && enough(cs[base:], k, covered) {
				return cs, covered, true
			}
		}
	}
	return cs, covered, false
}

// enough tells whether the k+1 nearest circles are known: k+1 of those
// read lie no farther than every circle not read yet.
func enough(cs []cand, k int, covered float64) bool {
	if covered <= 0 {
		return false
	}
	n := 0
	for i := range cs {
		if float64(cs[i].hi) <= covered {
			n++
			if n > k {
				return true
			}
		}
	}
	return false
}

// kthHigh is the (k+1)th smallest upper bound of the candidates' edges
// (quickselect: the order of the rest does not matter).
func (sc *scratch) kthHigh(cs []cand, k int) float64 {
	his := sc.his[:0]
	for i := range cs {
		his = append(his, cs[i].hi)
	}
	sc.his = his[:0]
	lo, hi := 0, len(his)-1
	for lo < hi {
		pivot := his[(lo+hi)/2]
		i, j := lo, hi
		for i <= j {
			for his[i] < pivot {
				i++
			}
			for his[j] > pivot {
				j--
			}
			if i <= j {
				his[i], his[j] = his[j], his[i]
				i, j = i+1, j-1
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return float64(his[k])
		}
	}
	return float64(his[k])
}

// watched appends to dst the k nearest candidates that lie within
// covered (a circle farther off may have a nearer one not read) and
// answers the wake radius: the edge of the nearest circle left out, and
// no more than covered. Only the candidates that may be among the k+1
// nearest (their lower bound under the (k+1)th upper bound) are measured:
// those left out are farther than every one kept.
func (ix *Index) watched(dst []Region, cs []cand, k int, covered, lat, lng, minRadiusM float64, sc *scratch) ([]Region, float64) {
	t := math.Inf(1)
	if len(cs) > k+1 {
		t = sc.kthHigh(cs, k)
	}
	// Measured in the search's own room, not in dst: in a dense city more
	// candidates may lie under t than dst has room for (a hundred regions
	// for Android), and only k of them go to dst.
	found := sc.regs[:0]
	for _, c := range cs {
		if float64(c.lo) <= t {
			found = append(found, ix.region(c.fence, lat, lng, minRadiusM))
		}
	}
	sc.regs = found[:0] // keep what the search grew to
	slices.SortFunc(found, func(a, b Region) int {
		if c := cmp.Compare(a.EdgeM, b.EdgeM); c != 0 {
			return c
		}
		return cmp.Compare(a.Fence, b.Fence)
	})
	wake := math.Min(covered, MaxWakeM)
	if len(found) > k {
		wake = math.Min(wake, found[k].EdgeM)
		found = found[:k]
	}
	for len(found) > 0 && found[len(found)-1].EdgeM > wake {
		found = found[:len(found)-1]
	}
	return append(dst, found...), wake
}

// region is fence i as a circle of at least minRadiusM, measured.
func (ix *Index) region(i int32, lat, lng, minRadiusM float64) Region {
	f := &ix.fences[i]
	cLat, cLng := watchCentre(f, ix.polys)
	r := math.Max(f.size, minRadiusM)
	return Region{Fence: i, Lat: cLat, Lng: cLng, RadiusM: r, EdgeM: math.Max(0, DistanceM(lat, lng, cLat, cLng)-r)}
}

// measured is fence i as a candidate with its edge measured exactly.
func (ix *Index) measured(i int32, lat, lng, minRadiusM float64) cand {
	e := float32(ix.region(i, lat, lng, minRadiusM).EdgeM)
	return cand{fence: i, lo: e * (1 - 1e-6), hi: e*(1+1e-6) + 1}
}

// bound is a fence of a watch level as a candidate, its edge bounded by
// the flat measure (or measured, near the poles). The float32 centre,
// radius and bounds err by a few decimetres: 4 m more slack.
func (fl *flat) bound(i int32, n *watchNear, minRadiusM float64) cand {
	lat, lng := float64(n.lat), float64(n.lng)
	r := math.Max(float64(n.size), minRadiusM)
	var d, err float64
	if fl.exact {
		d = DistanceM(fl.lat, fl.lng, lat, lng)
	} else {
		dLng := lng - fl.lng
		if dLng > 180 {
			dLng -= 360
		} else if dLng < -180 {
			dLng += 360
		}
		dx, dy := dLng*fl.mLng, (lat-fl.lat)*fl.mLat
		d, err = math.Sqrt(dx*dx+dy*dy), flatErr
	}
	return cand{fence: i, lo: float32(math.Max(0, d/(1+err)-4-r)), hi: float32(math.Max(0, d/(1-err)+4-r))}
}

// WatchCell is the res-10 cell (about 65 m across an edge) of a point, a
// key under which what a point watches may be kept for its neighbours
// (the wake circle shrinks by how far they are from the point it was
// measured at).
func WatchCell(lat, lng float64) uint64 { return uint64(cellAt(lat, lng, 10)) }

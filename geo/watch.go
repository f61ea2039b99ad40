package geo

import (
	"cmp"
	"math"
	"slices"

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
}

type watchGrid struct {
	fine, coarse watchLevel
	medium       int // fences in coarse and not in fine
	big          []int32
}

func newWatchGrid(fs []fence, polys []polygon) watchGrid {
	g := watchGrid{fine: watchLevel{res: 8, ringM: 500}, coarse: watchLevel{res: 6, ringM: 3000}}
	type pair struct {
		cell  h3.Cell
		fence int32
	}
	var fine, coarse []pair
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
			g.medium++
		}
	}
	for _, lv := range []struct {
		ps []pair
		to *watchLevel
	}{{fine, &g.fine}, {coarse, &g.coarse}} {
		slices.SortFunc(lv.ps, func(a, b pair) int { return cmp.Compare(a.cell, b.cell) })
		lv.to.cells, lv.to.fences = make([]h3.Cell, len(lv.ps)), make([]int32, len(lv.ps))
		for i, p := range lv.ps {
			lv.to.cells[i], lv.to.fences[i] = p.cell, p.fence
		}
	}
	return g
}

func (g *watchGrid) bytes() int {
	return (len(g.fine.cells)+len(g.coarse.cells))*12 + len(g.big)*4
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
// is within tens of kilometres, and allocates only the rings of cells it
// reads (and dst when it is short).
func (ix *Index) Watch(lat, lng float64, k int, minRadiusM float64, dst []Region) ([]Region, float64) {
	if ValidPoint(lat, lng) != nil || len(ix.fences) == 0 {
		return dst, MaxWakeM
	}
	base := len(dst)
	for _, i := range ix.watch.big {
		dst = append(dst, ix.region(i, lat, lng, minRadiusM))
	}
	g := &ix.watch
	// In a city: the small fences ring by ring at res 8 until k+1 of them
	// are known nearest; then the medium ones at res 6, as far as the
	// (k+1)th small one.
	withBig := len(dst)
	dst, fine, ok := ix.rings(&g.fine, lat, lng, 1, watchFineRings, k, minRadiusM, 0, dst, func(int32) bool { return true })
	if ok {
		if g.medium == 0 {
			return watched(dst, base, k, fine)
		}
		reach := kthEdge(dst[withBig:], k)
		var coarse float64
		dst, coarse, _ = ix.rings(&g.coarse, lat, lng, 0, watchRings-1, -1, minRadiusM, reach, dst, func(i int32) bool { return ix.fences[i].size > watchSmallM })
		return watched(dst, base, k, math.Min(fine, coarse))
	}
	// Elsewhere: every fence up to watchBigM at res 6.
	dst = dst[:withBig]
	dst, coarse, _ := ix.rings(&g.coarse, lat, lng, 1, watchRings-1, k, minRadiusM, 0, dst, func(int32) bool { return true })
	return watched(dst, base, k, math.Max(coarse, 0))
}

// rings appends the fences of lv that keep, ring by ring around the
// point's cell (the first `first` rings at once, then up to last), until
// k+1 circles read lie no farther than every circle not read yet (k < 0:
// until that bound reaches `reach`). It answers the bound: every fence of
// lv not read lies at least that far outside its circle.
func (ix *Index) rings(lv *watchLevel, lat, lng float64, first, last, k int, minRadiusM, reach float64, dst []Region, keep func(int32) bool) ([]Region, float64, bool) {
	origin := cellAt(lat, lng, lv.res)
	base := len(dst)
	covered := math.Inf(-1)
	// Rings are computed up to first, then twice as far each time.
	for from, upTo := 0, first; from <= last; from, upTo = upTo+1, min(2*upTo+1, last) {
		rings := h3.GridDiskDistances(origin, upTo)
		for d := from; d < len(rings); d++ {
			for _, c := range rings[d] {
				i, _ := slices.BinarySearch(lv.cells, c)
				for ; i < len(lv.cells) && lv.cells[i] == c; i++ {
					if f := lv.fences[i]; keep(f) {
						dst = append(dst, ix.region(f, lat, lng, minRadiusM))
					}
				}
			}
			covered = float64(d)*lv.ringM - math.Max(watchBigM, minRadiusM)
			if lv.res == ix.watch.fine.res {
				covered = float64(d)*lv.ringM - math.Max(watchSmallM, minRadiusM)
			}
			if k < 0 && covered >= reach || k >= 0 && enough(dst[base:], k, covered) {
				return dst, covered, true
			}
		}
	}
	return dst, covered, false
}

// kthEdge is the edge of the (k+1)th nearest circle of found.
func kthEdge(found []Region, k int) float64 {
	edges := make([]float64, len(found))
	for i := range found {
		edges[i] = found[i].EdgeM
	}
	slices.Sort(edges)
	return edges[k]
}

// enough tells whether the k+1 nearest circles are known: k+1 of those
// read lie no farther than every circle not read yet.
func enough(found []Region, k int, covered float64) bool {
	if covered <= 0 {
		return false
	}
	n := 0
	for i := range found {
		if found[i].EdgeM <= covered {
			n++
			if n > k {
				return true
			}
		}
	}
	return false
}

// watched keeps the k nearest of dst[base:] that lie within covered (a
// circle farther off may have a nearer one not read) and answers the
// wake radius: the edge of the nearest circle left out, and no more than
// covered.
func watched(dst []Region, base, k int, covered float64) ([]Region, float64) {
	found := dst[base:]
	if len(found) > 2*(k+1) { // only the k+1 nearest matter: sort those alone
		t, n := kthEdge(found, k), 0
		for _, r := range found {
			if r.EdgeM <= t {
				found[n] = r
				n++
			}
		}
		found = found[:n]
	}
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
	return dst[:base+len(found)], wake
}

func (ix *Index) region(i int32, lat, lng, minRadiusM float64) Region {
	f := &ix.fences[i]
	cLat, cLng := watchCentre(f, ix.polys)
	r := math.Max(f.size, minRadiusM)
	return Region{Fence: i, Lat: cLat, Lng: cLng, RadiusM: r, EdgeM: math.Max(0, DistanceM(lat, lng, cLat, cLng)-r)}
}

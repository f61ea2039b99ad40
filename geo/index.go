package geo

import (
	"fmt"
	"math"
	"slices"

	"github.com/uber/h3-go/v4"
)

// Resolution bounds of the cells a fence is indexed with. A fence is put
// on the finest resolution whose cells are at least a third of its reach,
// so every fence costs a few dozen cells whatever its radius.
const (
	coarsestRes = 3
	finestRes   = 13
)

// Hit is a fence near a point.
type Hit struct {
	// Fence is the position of the fence in the slice the index was built from.
	Fence int32
	// DistanceM is the great-circle distance from the point to the fence centre.
	DistanceM float64
	// Inside is true when DistanceM is at most the fence's radius. A hit
	// that is not Inside lies within the fence's exit margin.
	Inside bool
}

// Index answers which fences contain a point, or are close enough to it
// that a customer there has not yet left. It is immutable once built and
// safe for concurrent use.
type Index struct {
	fences []Fence
	reach  []float64 // radius plus exit margin, per fence
	cells  map[h3.Cell][]int32
	res    []int // resolutions in use, finest first
}

// NewIndex builds the index of fences. A fence's position in fences is
// the Hit.Fence that names it.
func NewIndex(fences []Fence) (*Index, error) {
	ix := &Index{
		fences: slices.Clone(fences),
		reach:  make([]float64, len(fences)),
		cells:  make(map[h3.Cell][]int32, len(fences)*8),
	}
	used := map[int]bool{}
	for i, f := range ix.fences {
		if err := ValidPoint(f.Lat, f.Lng); err != nil {
			return nil, fmt.Errorf("fence %q: %w", f.ID, err)
		}
		if f.RadiusM < MinRadiusM || f.RadiusM > MaxRadiusM || math.IsNaN(f.RadiusM) {
			return nil, fmt.Errorf("fence %q: radius_m must be between %d and %d", f.ID, MinRadiusM, MaxRadiusM)
		}
		reach := f.RadiusM + ExitMarginM(f.RadiusM)
		ix.reach[i] = reach
		res := resolutionFor(reach)
		used[res] = true
		for _, c := range cover(f.Lat, f.Lng, reach, res) {
			ix.cells[c] = append(ix.cells[c], int32(i))
		}
	}
	for r := range used {
		ix.res = append(ix.res, r)
	}
	slices.SortFunc(ix.res, func(a, b int) int { return b - a })
	return ix, nil
}

// Len is the number of fences in the index.
func (ix *Index) Len() int { return len(ix.fences) }

// Fence returns the fence at position i.
func (ix *Index) Fence(i int32) Fence { return ix.fences[i] }

// Near appends to dst every fence whose centre is within its radius plus
// exit margin of the point, with the exact distance, and returns dst.
func (ix *Index) Near(lat, lng float64, dst []Hit) []Hit {
	if len(ix.res) == 0 || ValidPoint(lat, lng) != nil {
		return dst
	}
	finest := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, ix.res[0])
	for _, r := range ix.res {
		for _, i := range ix.cells[parentCell(finest, r)] {
			f := &ix.fences[i]
			d := DistanceM(lat, lng, f.Lat, f.Lng)
			if d <= ix.reach[i] {
				dst = append(dst, Hit{Fence: i, DistanceM: d, Inside: d <= f.RadiusM})
			}
		}
	}
	return dst
}

// resolutionFor picks the finest resolution whose average cell edge is at
// least a third of reach.
func resolutionFor(reachM float64) int {
	for r := finestRes; r > coarsestRes; r-- {
		if h3.HexagonEdgeLengthAvgM(r) >= reachM/3 {
			return r
		}
	}
	return coarsestRes
}

// cover returns cells at res that together hold every point within reachM
// of the centre. A point p within reach of c lies in a cell whose centre
// is within reach + circumradius of c, so keeping the cells whose centres
// are that close keeps every cell p can be in. Cell sizes vary by about a
// factor of two across the globe at one resolution, hence the generous
// bounds on the circumradius and on the spacing of cell centres.
func cover(lat, lng, reachM float64, res int) []h3.Cell {
	edge := h3.HexagonEdgeLengthAvgM(res)
	circumradius := 1.6 * edge
	minSpacing := math.Sqrt(3) * edge * 0.6
	k := int(math.Ceil((reachM+circumradius)/minSpacing)) + 1
	centre := h3.LatLngToCell(h3.LatLng{Lat: lat, Lng: lng}, res)
	disk := h3.GridDisk(centre, k)
	out := disk[:0]
	for _, c := range disk {
		ll := h3.CellToLatLng(c)
		if DistanceM(lat, lng, ll.Lat, ll.Lng) <= reachM+circumradius {
			out = append(out, c)
		}
	}
	return out
}

// parentCell is h3's cellToParent done with bit operations, so that the
// hot path makes one cgo call per lookup rather than one per resolution.
// An H3 cell index keeps its resolution in bits 52..55 and one 3-bit digit
// per resolution below it; digits past the resolution are all ones.
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

package geo

/*
#include <stdint.h>

// The H3 library's own C code, which h3-go links into the binary.
typedef struct { double lat; double lng; } ncLatLng;
extern uint32_t latLngToCell(const ncLatLng *g, int res, uint64_t *out);
extern uint32_t gridDiskDistances(uint64_t origin, int k, uint64_t *out, int *distances);

// nc_cell passes plain numbers across cgo, so no Go memory escapes to C
// and a lookup allocates nothing (h3-go's wrapper allocates twice).
static uint64_t nc_cell(double latRad, double lngRad, int res) {
	ncLatLng g = {latRad, lngRad};
	uint64_t out = 0;
	if (latLngToCell(&g, res, &out) != 0) return 0;
	return out;
}
*/
import "C"

import (
	"math"
	"unsafe"

	"github.com/uber/h3-go/v4"
)

// cellAt is h3.LatLngToCell without its allocations.
func cellAt(lat, lng float64, res int) h3.Cell {
	return h3.Cell(C.nc_cell(C.double(lat*math.Pi/180), C.double(lng*math.Pi/180), C.int(res)))
}

// diskMax is how many cells lie within watchRings-1 rings of one, the
// most a search asks for: 3k(k+1)+1.
const diskMax = 3*(watchRings-1)*watchRings + 1

// disk is h3.GridDiskDistances into buffers a search reuses: a search
// reads rings on every ping that leaves its block, and h3-go's wrapper
// allocates two buffers and a slice per ring each time.
type disk struct {
	cells  [diskMax]h3.Cell
	dists  [diskMax]C.int
	byRing [diskMax]h3.Cell
	start  [watchRings + 1]int32 // ring d is byRing[start[d]:start[d+1]]
}

// fill computes the cells within k rings of origin (k < watchRings),
// grouped by ring, each ring in the order H3 gives it, as h3-go does.
// The cells H3 leaves empty (next to a pentagon) are left out.
func (d *disk) fill(origin h3.Cell, k int) {
	n := 3*k*(k+1) + 1
	clear(d.cells[:n])
	clear(d.dists[:n])
	C.gridDiskDistances(C.uint64_t(origin), C.int(k), (*C.uint64_t)(unsafe.Pointer(&d.cells[0])), &d.dists[0])
	var count [watchRings + 1]int32
	for i := range n {
		if d.cells[i] != 0 {
			count[d.dists[i]+1]++
		}
	}
	for r := 1; r <= k+1; r++ {
		count[r] += count[r-1]
	}
	d.start = count
	for i := range n {
		if c := d.cells[i]; c != 0 {
			r := d.dists[i]
			d.byRing[count[r]] = c
			count[r]++
		}
	}
}

// ring is the cells at grid distance r (r at most the k filled).
func (d *disk) ring(r int) []h3.Cell { return d.byRing[d.start[r]:d.start[r+1]] }

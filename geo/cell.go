package geo

/*
#include <stdint.h>

// The H3 library's own C code, which h3-go links into the binary.
typedef struct { double lat; double lng; } ncLatLng;
extern uint32_t latLngToCell(const ncLatLng *g, int res, uint64_t *out);

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

	"github.com/uber/h3-go/v4"
)

// cellAt is h3.LatLngToCell without its allocations.
func cellAt(lat, lng float64, res int) h3.Cell {
	return h3.Cell(C.nc_cell(C.double(lat*math.Pi/180), C.double(lng*math.Pi/180), C.int(res)))
}

package geo

import "github.com/uber/h3-go/v4"

// Cells lists the H3 cells the index files a fence under (its position in
// the slice the index was built from), coarsest first. It scans the whole
// index: it serves people looking at a map, not pings.
func (ix *Index) Cells(fence int32) []h3.Cell {
	var out []h3.Cell
	for i := len(ix.levels) - 1; i >= 0; i-- {
		lv := &ix.levels[i]
		for j, f := range lv.fences {
			if f == fence {
				out = append(out, lv.cells[j])
			}
		}
	}
	return out
}

// CellBoundary is a cell's outline as (lat, lng) pairs in decimal
// degrees, not closed.
func CellBoundary(c h3.Cell) [][2]float64 {
	b := c.Boundary()
	out := make([][2]float64, len(b))
	for i, p := range b {
		out[i] = [2]float64{p.Lat, p.Lng}
	}
	return out
}

package geo

import (
	"fmt"
	"math"
)

// Polygon edges are straight lines in latitude and longitude, as in
// GeoJSON; at store sizes (up to 50 km) that is what a marketer drawing
// on a map means. Containment and edge tests are done in that plane, and
// distances to an edge in a local projection around the point, so the
// index and its brute-force check agree exactly.

// PolygonError names the point of a ring that is at fault.
type PolygonError struct {
	Point int // index into the ring; -1 for the ring as a whole
	Msg   string
}

func (e *PolygonError) Error() string {
	if e.Point < 0 {
		return e.Msg
	}
	return fmt.Sprintf("polygon[%d]: %s", e.Point, e.Msg)
}

// NormalizeRing drops a closing point equal to the first.
func NormalizeRing(ring [][2]float64) [][2]float64 {
	if n := len(ring); n > 1 && ring[0] == ring[n-1] {
		return ring[:n-1]
	}
	return ring
}

// ValidatePolygon checks a ring (after NormalizeRing): 3 to 1000 points in
// range, no edge across the antimeridian, no repeated point, no edges that
// cross or touch, some area, and within MaxRadiusM of its centre.
func ValidatePolygon(ring [][2]float64) error {
	n := len(ring)
	if n < 3 || n > MaxPolygonPoints {
		return &PolygonError{-1, fmt.Sprintf("a polygon has 3 to %d points, not %d", MaxPolygonPoints, n)}
	}
	for i, p := range ring {
		if err := ValidPoint(p[0], p[1]); err != nil {
			return &PolygonError{i, err.Error()}
		}
	}
	for i := range ring {
		j := (i + 1) % n
		if ring[i] == ring[j] {
			return &PolygonError{j, "repeats the point before it"}
		}
		if math.Abs(ring[i][1]-ring[j][1]) > 180 {
			return &PolygonError{i, fmt.Sprintf("the edge to polygon[%d] crosses the antimeridian; split the store in two", j)}
		}
	}
	for i := 0; i < n; i++ {
		a1, a2 := ring[i], ring[(i+1)%n]
		for j := i + 1; j < n; j++ {
			if j == i+1 || (i == 0 && j == n-1) {
				continue // adjacent edges share a point
			}
			if segmentsTouch(a1, a2, ring[j], ring[(j+1)%n]) {
				return &PolygonError{j, fmt.Sprintf("the edge from here crosses the edge from polygon[%d]; the ring must not intersect itself", i)}
			}
		}
	}
	if ringArea(ring) == 0 {
		return &PolygonError{-1, "the polygon has no area"}
	}
	lat, lng, r := boundingCircle(ring)
	if r > MaxRadiusM {
		return &PolygonError{-1, fmt.Sprintf("the polygon reaches %.0f m from its centre (%.5f, %.5f); the limit is %d m", r, lat, lng, MaxRadiusM)}
	}
	return nil
}

func cross(o, a, b [2]float64) float64 {
	return (a[1]-o[1])*(b[0]-o[0]) - (a[0]-o[0])*(b[1]-o[1])
}

func onSegment(p, q, r [2]float64) bool {
	return math.Min(p[0], r[0]) <= q[0] && q[0] <= math.Max(p[0], r[0]) &&
		math.Min(p[1], r[1]) <= q[1] && q[1] <= math.Max(p[1], r[1])
}

// segmentsTouch reports whether segments p1p2 and q1q2 share any point.
func segmentsTouch(p1, p2, q1, q2 [2]float64) bool {
	d1, d2 := cross(q1, q2, p1), cross(q1, q2, p2)
	d3, d4 := cross(p1, p2, q1), cross(p1, p2, q2)
	if ((d1 > 0 && d2 < 0) || (d1 < 0 && d2 > 0)) && ((d3 > 0 && d4 < 0) || (d3 < 0 && d4 > 0)) {
		return true
	}
	return d1 == 0 && onSegment(q1, p1, q2) || d2 == 0 && onSegment(q1, p2, q2) ||
		d3 == 0 && onSegment(p1, q1, p2) || d4 == 0 && onSegment(p1, q2, p2)
}

func ringArea(ring [][2]float64) float64 {
	var a float64
	for i := range ring {
		j := (i + 1) % len(ring)
		a += ring[i][1]*ring[j][0] - ring[j][1]*ring[i][0]
	}
	return math.Abs(a) / 2
}

// boundingCircle is the vertices' mean and the farthest vertex from it:
// a circle that holds the whole ring (edges are straight between vertices
// that all lie inside it, to within the flattening of a 50 km circle,
// which the cover's margin absorbs).
func boundingCircle(ring [][2]float64) (lat, lng, r float64) {
	for _, p := range ring {
		lat += p[0]
		lng += p[1]
	}
	lat /= float64(len(ring))
	lng /= float64(len(ring))
	for _, p := range ring {
		r = math.Max(r, DistanceM(lat, lng, p[0], p[1]))
	}
	return lat, lng, r
}

// Centroid is a reasonable store point for a polygon given without one.
func Centroid(ring [][2]float64) (lat, lng float64) {
	lat, lng, _ = boundingCircle(ring)
	return lat, lng
}

// containsPoint is the even-odd ray test in the lat/lng plane.
func containsPoint(ring [][2]float64, lat, lng float64) bool {
	in := false
	n := len(ring)
	for i, j := 0, n-1; i < n; j, i = i, i+1 {
		yi, xi := ring[i][0], ring[i][1]
		yj, xj := ring[j][0], ring[j][1]
		if (yi > lat) != (yj > lat) && lng < (xj-xi)*(lat-yi)/(yj-yi)+xi {
			in = !in
		}
	}
	return in
}

// distanceToRingM is the distance from a point to the ring's nearest edge,
// in a local equirectangular projection around the point.
func distanceToRingM(ring [][2]float64, lat, lng float64) float64 {
	const rad = math.Pi / 180
	kx := math.Cos(lat*rad) * rad * EarthRadiusM
	ky := rad * EarthRadiusM
	best := math.Inf(1)
	n := len(ring)
	for i := 0; i < n; i++ {
		a, b := ring[i], ring[(i+1)%n]
		ax, ay := (a[1]-lng)*kx, (a[0]-lat)*ky
		bx, by := (b[1]-lng)*kx, (b[0]-lat)*ky
		dx, dy := bx-ax, by-ay
		t := 0.0
		if l := dx*dx + dy*dy; l > 0 {
			t = math.Max(0, math.Min(1, -(ax*dx+ay*dy)/l))
		}
		px, py := ax+t*dx, ay+t*dy
		best = math.Min(best, math.Hypot(px, py))
	}
	return best
}

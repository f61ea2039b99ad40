// Package geo holds the geofence shapes (circles and polygons) and the
// in-memory index that answers, for one point, which fences contain it or
// lie close enough that a customer there has not yet left. The index is
// built on Uber's H3 grid and answered exactly. It knows nothing of Redis,
// HTTP or rules.
package geo

import (
	"fmt"
	"math"
)

// EarthRadiusM is the mean Earth radius the H3 library uses too.
const EarthRadiusM = 6371007.180918475

// Limits of a fence, in metres.
const (
	MinRadiusM = 10
	MaxRadiusM = 50000
	// MaxAccuracyM is the worst fix accuracy that still counts: a fix less
	// sure than this neither enters nor leaves any fence.
	MaxAccuracyM = 100
	// MaxPolygonPoints bounds a polygon's ring.
	MaxPolygonPoints = 1000
)

// DistanceM is the great-circle (haversine) distance in metres between two
// points given in decimal degrees.
func DistanceM(lat1, lng1, lat2, lng2 float64) float64 {
	const rad = math.Pi / 180
	φ1, φ2 := lat1*rad, lat2*rad
	s1 := math.Sin((lat2 - lat1) * rad / 2)
	s2 := math.Sin((lng2 - lng1) * rad / 2)
	h := s1*s1 + math.Cos(φ1)*math.Cos(φ2)*s2*s2
	if h > 1 {
		h = 1
	}
	return 2 * EarthRadiusM * math.Asin(math.Sqrt(h))
}

// ValidPoint reports whether lat and lng are WGS 84 decimal degrees.
func ValidPoint(lat, lng float64) error {
	switch {
	case math.IsNaN(lat) || lat < -90 || lat > 90:
		return fmt.Errorf("lat must be between -90 and 90")
	case math.IsNaN(lng) || lng < -180 || lng > 180:
		return fmt.Errorf("lng must be between -180 and 180")
	}
	return nil
}

// ExitMarginM is how far beyond its edge a fence of the given size (a
// radius, or a polygon's bounding radius) a customer must be, on top of
// their fix's accuracy, before the fence counts them as gone. It keeps a
// fix that jitters around the edge from turning one visit into several.
func ExitMarginM(sizeM float64) float64 {
	return 20 + 0.1*sizeM
}

// Fence is a store's geofence: a circle of RadiusM around (Lat, Lng), or,
// when Polygon is set, that simple ring (lat, lng pairs, not closed). For
// a polygon, (Lat, Lng) is the store's own point, which distances are
// measured to.
type Fence struct {
	ID      string
	Lat     float64
	Lng     float64
	RadiusM float64
	Polygon [][2]float64
}

// Package geo holds the geofence shapes and the in-memory index that
// answers, for one point, which fences contain it and how far away their
// centres are. The index is built on Uber's H3 grid and answered exactly
// with a great-circle check. It knows nothing of Redis, HTTP or rules.
package geo

import (
	"fmt"
	"math"
)

// EarthRadiusM is the mean Earth radius (IUGG), the one H3 uses too.
const EarthRadiusM = 6371007.180918475

// Radius limits of a circular fence, in metres.
const (
	MinRadiusM = 10
	MaxRadiusM = 50000
)

// DistanceM is the great-circle (haversine) distance in metres between two
// points given in decimal degrees.
func DistanceM(lat1, lng1, lat2, lng2 float64) float64 {
	const rad = math.Pi / 180
	φ1, φ2 := lat1*rad, lat2*rad
	dφ := (lat2 - lat1) * rad
	dλ := (lng2 - lng1) * rad
	s1 := math.Sin(dφ / 2)
	s2 := math.Sin(dλ / 2)
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

// ExitMarginM is how far beyond its radius a customer must be before a
// fence counts them as gone. It keeps a GPS fix that jitters around the
// edge from turning one visit into several.
func ExitMarginM(radiusM float64) float64 {
	return 20 + 0.1*radiusM
}

// Fence is a circular geofence around a store.
type Fence struct {
	ID      string
	Lat     float64
	Lng     float64
	RadiusM float64
}

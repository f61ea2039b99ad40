package bench

import (
	"math"
	"math/rand/v2"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// A phone's walk, second by second, for the comparison of how apps ping
// (phones.go). Unlike the load phases' movers (walk.go), which jump to a
// new place at each new path and move 15 s at a time, a phone's owner
// walks on continuously: every crossing of a fence (or of a circle the OS
// watches) on the way is a real one.

// spot is where a phone's owner truly is in one second of the walk.
type spot struct {
	lat, lng float64
	speed    float64 // m/s, as the OS reports it
	// accuracy is a fix's (0 for a true position).
	accuracy float64
}

// Kinds of a walk's legs.
const (
	legStroll = iota // walking on, turning now and then
	legStand         // waiting in one spot
	legErrand        // to a store nearby, staying some minutes inside
)

// walker makes one phone's walk.
type walker struct {
	snap *rules.Snapshot
	rng  *rand.Rand
	// area bounds the walk: the city's centre, and the ring the walker
	// keeps to.
	centerLat, centerLng float64
	area                 PhoneArea
	lat                  float64
	lng                  float64
	// heading in radians from north, speed in m/s
	heading, speed float64
	leg            int
	left           int // seconds left on this leg (stroll, stand, stay)
	// An errand: the store's point; arrived once there, then left counts
	// the stay.
	goalLat, goalLng float64
	arrived          bool
	// anchor is the spot a stay wanders around.
	anchorLat, anchorLng float64
	// errands set out on.
	errands int
}

// walkTrack is phone n's walk of the given seconds in an area of the
// city, the same for a seed whichever app behaviour it is replayed with:
// people walking at 1.1 to 1.7 m/s, now and then standing, and on errands
// into a store of the area 60 to 500 m away where they stay 2 to 12
// minutes. The walk starts where the load phases' people are (City.place)
// within the area's ring, and turns back at its edges. It returns the
// track and the errands set out on.
func walkTrack(city *City, snap *rules.Snapshot, area PhoneArea, seed uint64, n, seconds int, dst []spot) ([]spot, int) {
	w := &walker{snap: snap, rng: rand.New(rand.NewPCG(seed, uint64(n)+3<<40+uint64(area.seq)<<44)),
		centerLat: city.CenterLat, centerLng: city.CenterLng, area: area}
	w.lat, w.lng = w.start(city)
	w.heading = w.rng.Float64() * 2 * math.Pi
	w.nextLeg()
	dst = dst[:0]
	for t := 0; t < seconds; t++ {
		dst = append(dst, spot{lat: w.lat, lng: w.lng, speed: w.reported()})
		w.step()
	}
	return dst, w.errands
}

// start is where the walk begins: where the load phases' people are
// (half crowding the centre, half spread evenly), within the area's ring;
// evenly in the ring if the city puts next to nobody there.
func (w *walker) start(city *City) (float64, float64) {
	for try := 0; try < 10000; try++ {
		lat, lng := city.place(w.rng, 50, 6000)
		if w.area.holds(w.fromCentreM(lat, lng)) {
			return lat, lng
		}
	}
	lo, hi := w.area.InnerM, w.area.OuterM
	r := math.Sqrt(lo*lo + (hi*hi-lo*lo)*w.rng.Float64())
	a := w.rng.Float64() * 2 * math.Pi
	return offset(city.CenterLat, city.CenterLng, r*math.Cos(a), r*math.Sin(a))
}

// fromCentreM is how far a point lies from the city's centre.
func (w *walker) fromCentreM(lat, lng float64) float64 {
	return geo.DistanceM(w.centerLat, w.centerLng, lat, lng)
}

// nextLeg picks what the walker does next.
func (w *walker) nextLeg() {
	k := w.rng.IntN(100)
	switch {
	case k < 35 && w.errand():
	case k < 55:
		w.leg, w.speed, w.left = legStand, 0, 60+w.rng.IntN(240)
	default:
		w.leg, w.speed, w.left = legStroll, 1.1+0.6*w.rng.Float64(), 120+w.rng.IntN(480)
		w.heading += w.rng.NormFloat64()
	}
}

// errand sets out for a store of the area 60 to 500 m away, if there is one.
func (w *walker) errand() bool {
	var near []geo.Hit
	for _, h := range w.snap.Index.Within(w.lat, w.lng, 500) {
		if h.OutsideM < 60 {
			continue
		}
		if s := w.snap.Stores[h.Fence]; w.area.holds(w.fromCentreM(*s.Lat, *s.Lng)) {
			near = append(near, h)
		}
	}
	if len(near) == 0 {
		return false
	}
	s := w.snap.Stores[near[w.rng.IntN(len(near))].Fence]
	w.leg, w.speed, w.arrived = legErrand, 1.1+0.6*w.rng.Float64(), false
	w.goalLat, w.goalLng = *s.Lat, *s.Lng
	w.errands++
	return true
}

// keepToArea turns a stroller who has stepped beyond the area's ring,
// heading further out of it, back in: the heading mirrored on the ring.
func (w *walker) keepToArea() {
	d := w.fromCentreM(w.lat, w.lng)
	if w.area.holds(d) {
		return
	}
	n, e := northEast(w.centerLat, w.centerLng, w.lat, w.lng)
	out := math.Atan2(e, n) // the bearing away from the centre
	if away := math.Cos(w.heading - out); (d > w.area.OuterM && away > 0) || (d < w.area.InnerM && away < 0) {
		w.heading = 2*out + math.Pi - w.heading
	}
}

// reported is the speed the phone's OS reports.
func (w *walker) reported() float64 {
	if w.leg == legErrand && w.arrived {
		return 0.2 // browsing the shelves
	}
	return math.Round(w.speed*10) / 10
}

// step moves the walker on by one second.
func (w *walker) step() {
	switch w.leg {
	case legStand:
		if w.left--; w.left <= 0 {
			w.nextLeg()
		}
	case legStroll:
		w.heading += w.rng.NormFloat64() * 0.08
		w.lat, w.lng = offset(w.lat, w.lng, w.speed*math.Cos(w.heading), w.speed*math.Sin(w.heading))
		w.keepToArea()
		if w.left--; w.left <= 0 {
			w.nextLeg()
		}
	case legErrand:
		if w.arrived {
			// A slow wander within a few metres of the store's point.
			n, e := northEast(w.anchorLat, w.anchorLng, w.lat, w.lng)
			n += 0.3*w.rng.NormFloat64() - 0.05*n
			e += 0.3*w.rng.NormFloat64() - 0.05*e
			w.lat, w.lng = offset(w.anchorLat, w.anchorLng, n, e)
			if w.left--; w.left <= 0 {
				w.heading = w.rng.Float64() * 2 * math.Pi // leave in a new direction
				w.leg, w.speed, w.left = legStroll, 1.1+0.6*w.rng.Float64(), 120+w.rng.IntN(480)
			}
			return
		}
		n, e := northEast(w.lat, w.lng, w.goalLat, w.goalLng)
		d := math.Hypot(n, e)
		if d <= w.speed {
			w.lat, w.lng = w.goalLat, w.goalLng
			w.anchorLat, w.anchorLng = w.goalLat, w.goalLng
			w.arrived, w.left = true, 120+w.rng.IntN(600)
			return
		}
		w.heading = math.Atan2(e, n)
		w.lat, w.lng = offset(w.lat, w.lng, w.speed*n/d, w.speed*e/d)
	}
}

// trueVisit is a stretch of a walk inside one store's fence: from the
// first second inside until the first second clearly out: beyond the
// fence's exit margin (geo.ExitMarginM) plus the least sure fix's
// accuracy, where the engine lets no fix hold the visit (geo.Hit.Held),
// so that hugging an edge, or stepping out and back, is one visit.
type trueVisit struct {
	store      string
	start, end int // seconds into the walk; end is the walk's end for a visit still open
	open       bool
}

// nearFenceM is how close to a fence's edge a walker counts as near it.
const nearFenceM = 100

// fenceTime is how many seconds of a walk were spent inside any fence,
// and within nearFenceM of one (inside included).
type fenceTime struct{ inside, near int }

// trueVisits finds the visits of a walk from the true positions, with
// the snapshot's index, and the time spent in and near fences; slackM is
// the worst fix accuracy.
func trueVisits(snap *rules.Snapshot, track []spot, slackM float64) ([]trueVisit, fenceTime) {
	var out []trueVisit
	var ft fenceTime
	open := map[int32]int{} // fence → position in out
	var buf [32]geo.Hit
	for t, p := range track {
		hits := snap.Index.Near(p.lat, p.lng, buf[:0])
		in, near := false, false
		for _, h := range hits {
			// Near reports every fence up to geo.MaxAccuracyM beyond its
			// edge, so all those within nearFenceM.
			in, near = in || h.Inside, near || h.OutsideM <= nearFenceM
		}
		if in {
			ft.inside++
		}
		if near {
			ft.near++
		}
		for f, i := range open {
			gone := true
			for _, h := range hits {
				if h.Fence == f {
					gone = !h.Held(slackM)
					break
				}
			}
			if gone {
				out[i].end, out[i].open = t, false
				delete(open, f)
			}
		}
		for _, h := range hits {
			if _, ok := open[h.Fence]; h.Inside && !ok {
				open[h.Fence] = len(out)
				out = append(out, trueVisit{store: snap.Stores[h.Fence].ID, start: t, end: len(track) - 1, open: true})
			}
		}
	}
	return out, ft
}

// planarM is the distance in metres between two points close together.
func planarM(lat1, lng1, lat2, lng2 float64) float64 {
	n, e := northEast(lat1, lng1, lat2, lng2)
	return math.Hypot(n, e)
}

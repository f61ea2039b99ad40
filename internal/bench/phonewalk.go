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
	lat  float64
	lng  float64
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
}

// walkTrack is phone n's walk of the given seconds, the same for a seed
// whichever app behaviour it is replayed with: people walking at 1.1 to
// 1.7 m/s, now and then standing, and on errands into a store 60 to 500 m
// away where they stay 2 to 12 minutes.
func walkTrack(city *City, snap *rules.Snapshot, seed uint64, n, seconds int, dst []spot) []spot {
	w := &walker{snap: snap, rng: rand.New(rand.NewPCG(seed, uint64(n)+3<<40))}
	w.lat, w.lng = city.place(w.rng, 50, 6000)
	w.heading = w.rng.Float64() * 2 * math.Pi
	w.nextLeg()
	dst = dst[:0]
	for t := 0; t < seconds; t++ {
		dst = append(dst, spot{lat: w.lat, lng: w.lng, speed: w.reported()})
		w.step()
	}
	return dst
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

// errand sets out for a store 60 to 500 m away, if there is one.
func (w *walker) errand() bool {
	var near []geo.Hit
	for _, h := range w.snap.Index.Within(w.lat, w.lng, 500) {
		if h.OutsideM >= 60 {
			near = append(near, h)
		}
	}
	if len(near) == 0 {
		return false
	}
	s := w.snap.Stores[near[w.rng.IntN(len(near))].Fence]
	w.leg, w.speed, w.arrived = legErrand, 1.1+0.6*w.rng.Float64(), false
	w.goalLat, w.goalLng = *s.Lat, *s.Lng
	return true
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

// trueVisits finds the visits of a walk from the true positions, with
// the snapshot's index; slackM is the worst fix accuracy.
func trueVisits(snap *rules.Snapshot, track []spot, slackM float64) []trueVisit {
	var out []trueVisit
	open := map[int32]int{} // fence → position in out
	var buf [32]geo.Hit
	for t, p := range track {
		hits := snap.Index.Near(p.lat, p.lng, buf[:0])
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
	return out
}

// planarM is the distance in metres between two points close together.
func planarM(lat1, lng1, lat2, lng2 float64) float64 {
	n, e := northEast(lat1, lng1, lat2, lng2)
	return math.Hypot(n, e)
}

package bench

import (
	"math"
	"math/rand/v2"
	"strconv"
)

// How a simulated customer moves.
type mode uint8

const (
	walking mode = iota
	standing
	cycling
	driving
	errand // walks to a store, stays a while, walks away
)

var modeNames = [...]string{"walk", "stand", "cycle", "drive", "errand"}

// stepS is the time between two pings of one customer, as the app's
// location updates would space them.
const stepS = 15

// mover is one customer out and about.
type mover struct {
	customer int
	mode     mode
	lat, lng float64
	heading  float64 // radians from north
	speed    float64 // m/s
	steps    int     // pings left on this path
	// An errand: the store's point, and how many pings to stay there.
	goalLat, goalLng float64
	stay             int
}

// movers is one shard of the customers out and about: customers shard,
// shard+shards, … so that no two shards hold one customer (one phone
// sends one ping at a time).
type movers struct {
	city    *City
	rng     *rand.Rand
	all     []mover
	next    int
	worker  int // the shard
	workers int // shards
	// errandPct is the share of paths that lead to a store.
	errandPct int
	// started counts the paths begun: each goes to the shard's next
	// customer in turn.
	started int
}

// newShards splits the active customers into shards.
func newShards(city *City, seed uint64, shards, active, errandPct int) []*movers {
	out := make([]*movers, shards)
	for i := range out {
		out[i] = newMovers(city, seed, i, shards, active, errandPct)
	}
	return out
}

func newMovers(city *City, seed uint64, worker, workers, active, errandPct int) *movers {
	m := &movers{city: city, rng: rand.New(rand.NewPCG(seed, uint64(worker)+7)), worker: worker, workers: workers, errandPct: errandPct}
	n := max(1, active/workers)
	m.all = make([]mover, n)
	for i := range m.all {
		v := &m.all[i]
		m.restart(v)
		// Customers are at all points of their paths when the bench
		// starts, not all setting out at once (which would bring every
		// errand to its store in the same few seconds).
		for k := m.rng.IntN(v.steps); k > 0; k-- {
			m.step(v)
		}
	}
	return m
}

// restart puts a new customer on a new path: the shard's customers in
// turn, so that one comes back as late as their number allows. (Picked at
// random, customers came back within seconds on a path far from where
// they had just been: travel no vehicle does, which location trust takes
// for a spoofed fix, and then refuses them offers.)
func (m *movers) restart(v *mover) {
	per := (m.city.Customers - m.worker + m.workers - 1) / m.workers
	v.customer = m.worker + m.started%max(1, per)*m.workers
	m.started++
	v.heading = m.rng.Float64() * 2 * math.Pi
	v.steps = 20 + m.rng.IntN(40)
	v.lat, v.lng = m.city.place(m.rng, 25, 10000)
	// Errands first: ErrandPct of paths lead to a store; the rest are
	// spread as 40 walk : 18 stand : 12 cycle : 20 drive.
	k := m.rng.IntN(100)
	if k >= m.errandPct {
		k = (k - m.errandPct) * 90 / max(1, 100-m.errandPct)
	} else {
		k = 90
	}
	switch {
	case k < 40:
		v.mode, v.speed = walking, 1.0+0.6*m.rng.Float64()
	case k < 58:
		v.mode, v.speed = standing, 0
	case k < 70:
		v.mode, v.speed = cycling, 4+2*m.rng.Float64()
	case k < 90:
		v.mode, v.speed = driving, 8+8*m.rng.Float64()
	default:
		// Start 150 to 400 m from a store and walk to it.
		s := m.city.Stores[m.rng.IntN(len(m.city.Stores))]
		v.mode, v.speed = errand, 1.0+0.6*m.rng.Float64()
		v.goalLat, v.goalLng = *s.Lat, *s.Lng
		d := 150 + 250*m.rng.Float64()
		v.lat, v.lng = offset(v.goalLat, v.goalLng, -d*math.Cos(v.heading), -d*math.Sin(v.heading))
		v.stay = 4 + m.rng.IntN(8)
		v.steps = int(d/(v.speed*stepS)) + v.stay + 20
	}
}

// step moves a customer on by one ping's time.
func (m *movers) step(v *mover) {
	v.steps--
	if v.steps <= 0 {
		m.restart(v)
		return
	}
	dist := v.speed * stepS
	switch v.mode {
	case standing:
		// GPS noise around one spot.
		v.lat, v.lng = offset(v.lat, v.lng, m.rng.NormFloat64()*3, m.rng.NormFloat64()*3)
		return
	case errand:
		if v.stay > 0 {
			n, e := northEast(v.lat, v.lng, v.goalLat, v.goalLng)
			left := math.Hypot(n, e)
			if left <= dist {
				v.lat, v.lng = offset(v.goalLat, v.goalLng, m.rng.NormFloat64()*5, m.rng.NormFloat64()*5)
				v.stay--
				if v.stay == 0 {
					v.heading = m.rng.Float64() * 2 * math.Pi // leave in a new direction
				}
				return
			}
			v.heading = math.Atan2(e, n)
		}
	default:
		v.heading += m.rng.NormFloat64() * 0.3
	}
	v.lat, v.lng = offset(v.lat, v.lng, dist*math.Cos(v.heading), dist*math.Sin(v.heading))
}

// northEast is the offset in metres from one point to another, for short
// distances.
func northEast(lat1, lng1, lat2, lng2 float64) (float64, float64) {
	const mPerDeg = 111194.9
	return (lat2 - lat1) * mPerDeg, (lng2 - lng1) * mPerDeg * math.Cos(lat1*math.Pi/180)
}

// ping is the next ping of the worker's next customer.
type ping struct {
	customer  int
	lat, lng  float64
	accuracyM float64
	speedMps  float64
	monitorID string // the customer's monitor block, as their app sends it back
}

func (m *movers) nextPing() ping {
	v := &m.all[m.next]
	m.next = (m.next + 1) % len(m.all)
	m.step(v)
	acc := 5 + 20*m.rng.Float64()
	if m.rng.IntN(20) == 0 {
		acc = 40 + 100*m.rng.Float64() // indoors, a weak fix
	}
	speed := v.speed
	if v.mode == errand && v.stay > 0 {
		if n, e := northEast(v.lat, v.lng, v.goalLat, v.goalLng); math.Hypot(n, e) < 20 {
			speed = 0.2
		}
	}
	return ping{customer: v.customer, lat: v.lat, lng: v.lng, accuracyM: math.Round(acc), speedMps: math.Round(speed*10) / 10}
}

// appendJSON writes the ping as the app would send it.
func (p ping) appendJSON(b []byte) []byte {
	b = append(b, `{"customer_id":"`...)
	b = append(b, CustomerID(p.customer)...)
	b = append(b, `","device_id":"`...)
	b = append(b, DeviceID(p.customer)...)
	b = append(b, `","lat":`...)
	b = strconv.AppendFloat(b, p.lat, 'f', 6, 64)
	b = append(b, `,"lng":`...)
	b = strconv.AppendFloat(b, p.lng, 'f', 6, 64)
	b = append(b, `,"accuracy_m":`...)
	b = strconv.AppendFloat(b, p.accuracyM, 'f', -1, 64)
	b = append(b, `,"speed_mps":`...)
	b = strconv.AppendFloat(b, p.speedMps, 'f', -1, 64)
	if p.monitorID != "" {
		b = append(b, `,"monitor_id":"`...)
		b = append(b, p.monitorID...)
		b = append(b, '"')
	}
	b = append(b, `,"context":{"app_state":"background"}}`...)
	return b
}

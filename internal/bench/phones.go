package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"runtime"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// The phones phase compares two ways an app may ping, on the same walks
// (issue 17): polling every 15 s, and monitoring, where the phone's OS
// watches the circles each answer names (Monitor: the stores nearest and
// a wake circle) and wakes the app on a crossing, some seconds late, and
// the app follows NextPing. Walks take hours, so the engine runs in this
// process on a clock of the walks' own (engine.New's now), against the
// bench's Redis and catalog, with customers of its own.
//
// Phones walk in two areas of the city (PhoneArea): its crowded centre,
// where a walker is nearly always in or near some store's fence, and its
// outskirts, where only the evenly spread half of the stores are; each
// area's comparison is reported, and judged, on its own.

// Modes of the phones phase.
const (
	ModePolling   = "polling-15s"
	ModeMonitored = "monitored"
)

// Why a monitored phone pinged.
const (
	wakeStart    = "start"
	wakeEnter    = "region_enter"
	wakeExit     = "region_exit"
	wakeWake     = "wake_exit"
	wakeDistance = "distance_m"
	wakeAfter    = "after_s"
)

// Areas of the phones phase.
const (
	AreaCentre    = "centre"
	AreaOutskirts = "outskirts"
)

// PhoneArea is a ring of the city that phones walk in: from InnerM to
// OuterM from its centre (InnerM 0: a disc).
type PhoneArea struct {
	Name           string
	InnerM, OuterM float64
	// seq tells one area's walks and customers from another's: the
	// area's position in the run's areas.
	seq int
}

// holds tells whether a point this far from the centre is in the area.
func (a PhoneArea) holds(d float64) bool { return d >= a.InnerM && d <= a.OuterM }

// DefaultPhoneAreas are a city's centre, within a sixth of its radius
// (5 km of the bench's 30 km, where the crowded half of the stores puts
// some 25 to 40 stores a km²), and its outskirts, from half its radius
// to 14/15 of it (15 to 28 km, where little but the evenly spread half
// of the stores is left: a few a km²).
func DefaultPhoneAreas(city *City) []PhoneArea {
	r := city.RadiusM
	return []PhoneArea{{Name: AreaCentre, InnerM: 0, OuterM: r / 6}, {Name: AreaOutskirts, InnerM: r / 2, OuterM: r * 14 / 15}}
}

// earlyToleranceS is how long before the true crossing an enter still
// detects a visit: a fix's error put the customer inside early.
const earlyToleranceS = 60

// PhonesConfig is a comparison run.
type PhonesConfig struct {
	// Phones walk in each area.
	Phones int
	// Areas are where the phones walk; none: DefaultPhoneAreas.
	Areas []PhoneArea
	// Walk is each phone's walk time.
	Walk time.Duration
	Seed uint64
	// PollEvery is the polling app's period.
	PollEvery time.Duration
	// OSDelay bounds the delay, drawn uniformly per crossing, between a
	// crossing of a watched circle and the app's wake-up.
	OSDelay [2]time.Duration
	// AccuracyM bounds the accuracy a fix reports, drawn uniformly per
	// fix; the fix is off by a normal error whose 68% circle is that
	// accuracy. {0, 0}: exact fixes.
	AccuracyM [2]float64
	// Workers run phones at once, each with an engine and a clock of its own.
	Workers int
	// Start is the walks' start in the city's time; zero: today 10:00
	// in Berlin, the city's time zone.
	Start time.Time
}

// DefaultPhonesConfig is the comparison of a default run.
func DefaultPhonesConfig() PhonesConfig {
	return PhonesConfig{Phones: 200, Walk: time.Hour, Seed: 1, PollEvery: 15 * time.Second,
		OSDelay: [2]time.Duration{5 * time.Second, 30 * time.Second}, AccuracyM: [2]float64{10, 30}}
}

// PhoneReport is the comparison's outcome.
type PhoneReport struct {
	// Phones walked in each area.
	Phones     int     `json:"phones_per_area"`
	WalkHours  float64 `json:"walk_hours_each"`
	StepS      int     `json:"step_s"`
	Platform   string  `json:"platform"`
	PollEveryS float64 `json:"poll_every_s"`
	// OSDelayS bounds the drawn delay of a wake after a crossing.
	OSDelayS  [2]float64 `json:"os_delay_s"`
	AccuracyM [2]float64 `json:"fix_accuracy_m"`
	// Areas are each area's comparison.
	Areas []*PhoneAreaReport `json:"areas"`
	WallS float64            `json:"wall_s"`
}

// PhoneAreaReport is the comparison in one area of the city.
type PhoneAreaReport struct {
	Name    string  `json:"name"`
	InnerKm float64 `json:"inner_km"`
	OuterKm float64 `json:"outer_km"`
	// StoresPerKm2: the stores whose point lies in the area, per km² of it.
	StoresPerKm2 float64 `json:"stores_per_km2"`
	// InFencePct is the share of the walks' time truly inside some
	// store's fence; NearFencePct within 100 m of a fence's edge
	// (inside included).
	InFencePct   float64 `json:"walk_time_in_a_fence_pct"`
	NearFencePct float64 `json:"walk_time_within_100m_of_a_fence_pct"`
	// ErrandsPerHour: errands (into a store of the area 60 to 500 m away)
	// set out on per walk-hour.
	ErrandsPerHour float64 `json:"errands_per_hour"`
	// Visits are the walks' true visits (fence entries), the same for
	// both modes; those starting in the walk's last minute are left out.
	Visits        int          `json:"true_visits"`
	VisitsPerHour float64      `json:"true_visits_per_hour"`
	Modes         []*PhoneMode `json:"modes"`
	// CaughtByPollingMissedByMonitoring: true visits polling detected and
	// monitoring did not, and why monitoring missed them.
	CaughtByPollingMissedByMonitoring int            `json:"caught_by_polling_missed_by_monitoring"`
	MissCauses                        map[string]int `json:"monitored_miss_causes,omitempty"`
	// MissedInsideS: how long those visits were truly inside the fence, in s.
	MissedInsideS Delay `json:"caught_by_polling_missed_by_monitoring_inside_s"`
	// Anomalies are answers that broke what the API promises.
	Anomalies map[string]int `json:"answer_anomalies,omitempty"`

	// the per-phone outcomes, for tests
	runs []*phoneRun
}

// PhoneMode is one app behaviour's figures.
type PhoneMode struct {
	Name                 string  `json:"name"`
	Pings                int64   `json:"pings"`
	PingsPerCustomerHour float64 `json:"pings_per_customer_hour"`
	Offers               int64   `json:"offers"`
	// Enters are the engine's enter events; EntersWithoutVisit those
	// with no true visit of the store open then or within a minute after
	// (a fix's error put it inside).
	Enters             int64 `json:"enters"`
	EntersWithoutVisit int64 `json:"enters_without_true_visit"`
	Detected           int   `json:"visits_detected"`
	// Early: visits whose store the engine entered up to a minute before
	// the true crossing (a fix's error); their delay counts as 0.
	Early  int `json:"visits_detected_early"`
	Missed int `json:"visits_missed"`
	// MissedHeld: missed visits whose store the engine still held from an
	// earlier enter (it never saw the customer clearly out in between).
	MissedHeld int `json:"visits_missed_still_held"`
	// DelayS: from the true crossing into the fence to the engine's enter.
	DelayS Delay `json:"enter_delay_s"`
	// WakeCauses: why a monitored phone pinged.
	WakeCauses map[string]int64 `json:"ping_causes,omitempty"`
	// Trust counts the fixes by the trust the engine gave them: these
	// phones are honest, so a suspicious one is a false alarm.
	Trust map[string]int64 `json:"fixes_by_trust"`
	// Answers: what the monitored phone was told to do.
	Answers *AnswerStats `json:"answers,omitempty"`
}

// AnswerStats describe the monitor and next_ping blocks a monitored
// phone was given.
type AnswerStats struct {
	Answers int `json:"answers"`
	// WakeNull: no wake circle; OwnUpdates: the app had to follow its own
	// location updates (no wake, or distance_m under the wake's radius).
	WakeNull   int `json:"wake_null"`
	OwnUpdates int `json:"own_updates"`
	// AfterS: with after_s (a visit open).
	AfterS int `json:"after_s"`
	// Percentiles of distance_m, and of the wake's radius where given.
	DistanceM Delay `json:"distance_m"`
	WakeM     Delay `json:"wake_radius_m"`
}

// Delay percentiles, in seconds.
type Delay struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	Max float64 `json:"max"`
}

// phoneRun is one phone's walk in one mode.
// answered notes what the engine answered a ping sent t s into the walk.
func (r *phoneRun) answered(t int, why string, res *engine.Result) {
	r.pings = append(r.pings, t)
	r.causes[why]++
	for _, e := range res.Events {
		switch e.Type {
		case rules.OnEnter:
			r.enters = append(r.enters, stamped{t, e.StoreID})
		case rules.OnExit:
			r.exits = append(r.exits, stamped{t, e.StoreID})
		}
	}
	r.offers += len(res.Offers)
	if res.Trust != nil {
		r.trust[res.Trust.Level]++
	}
}

type phoneRun struct {
	phone int
	area  string
	mode  string
	// errands set out on, and time in and near fences, of the walk
	errands int
	fences  fenceTime
	visits  []trueVisit
	pings   []int // seconds into the walk
	causes  map[string]int64
	enters  []stamped
	exits   []stamped
	offers  int
	trust   map[string]int64
	// regs are a monitored phone's registrations, one per answer.
	regs []registration
	// detected[i] is visit i's delay in s (early detections 0); -1:
	// missed, -2: missed with the store still held.
	detected     []int
	early        int
	withoutVisit int
	anomalies    map[string]int
	missCauses   map[string]int
	// missedInside: seconds truly inside the fence of each visit polling
	// caught and this run missed.
	missedInside []int
}

type stamped struct {
	t     int
	store string
}

// circle is one the OS watches.
type circle struct {
	lat, lng, r float64
	store       string
	inside      bool
}

// registration is what a monitored phone watched after one answer.
type registration struct {
	t       int
	regions []circle
	wake    *circle
	own     bool // the app follows its own location updates
	distM   float64
	afterS  int // -1: none
	// from is where the phone truly was at the ping, fix what it sent.
	from, fix spot
}

// RunPhones runs the comparison in each area against the catalog in rdb
// (of city), with customers "phone-poll-<area>-…" and "phone-mon-<area>-…"
// of its own.
func RunPhones(ctx context.Context, rdb redis.UniversalClient, city *City, pc PhonesConfig) (*PhoneReport, error) {
	t0 := time.Now()
	if pc.Workers < 1 {
		pc.Workers = 4 * runtime.NumCPU()
	}
	if pc.PollEvery <= 0 {
		pc.PollEvery = 15 * time.Second
	}
	if len(pc.Areas) == 0 {
		pc.Areas = DefaultPhoneAreas(city)
	}
	pc.Areas = slices.Clone(pc.Areas)
	for i := range pc.Areas {
		pc.Areas[i].seq = i
	}
	if pc.Start.IsZero() {
		berlin, err := time.LoadLocation("Europe/Berlin")
		if err != nil {
			berlin = time.UTC
		}
		y, m, d := time.Now().In(berlin).Date()
		pc.Start = time.Date(y, m, d, 10, 0, 0, 0, berlin)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	live := rules.NewLive(rdb, logger)
	if err := live.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("phones: catalog: %w", err)
	}
	snap := live.Current()
	if snap == nil || len(snap.Stores) == 0 {
		return nil, fmt.Errorf("phones: no stores in the catalog")
	}
	if err := putPhones(ctx, rdb, city, pc.Areas, pc.Phones); err != nil {
		return nil, err
	}
	cfg := engine.DefaultConfig()
	// As the bench's server: no quiet hours, no per-minute limits.
	cfg.QuietHours, cfg.MinOfferGap, cfg.PingsPerMinute, cfg.PingsPerMinuteDevice = [2]int{}, minOfferGap, 0, 0
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	signer := engine.NewCodeSigner(key)

	seconds := int(pc.Walk / time.Second)
	// Job j is phone j%Phones of area j/Phones.
	walks := len(pc.Areas) * pc.Phones
	runs := make([]*phoneRun, 2*walks)
	err := fanOut(ctx, pc.Workers, walks, 1, func() func(int) error {
		var clock time.Time
		eng := engine.New(rdb, live, signer, cfg, logger, func() time.Time { return clock })
		sim := &phoneSim{pc: pc, snap: snap, eng: eng, clock: &clock, seconds: seconds}
		var track []spot
		return func(j int) error {
			area, n := pc.Areas[j/pc.Phones], j%pc.Phones
			var errands int
			track, errands = walkTrack(city, snap, area, pc.Seed, n, seconds, track)
			visits, fences := trueVisits(snap, track, pc.AccuracyM[1])
			poll, err := sim.run(ctx, area, n, ModePolling, track, visits)
			var mon *phoneRun
			if err == nil {
				mon, err = sim.run(ctx, area, n, ModeMonitored, track, visits)
			}
			if err != nil {
				return err
			}
			for _, r := range []*phoneRun{poll, mon} {
				r.errands, r.fences = errands, fences
			}
			mon.missCauses = map[string]int{}
			for i, v := range visits {
				if judgeable(v, seconds) && poll.detected[i] >= 0 && mon.detected[i] < 0 {
					mon.missCauses[sim.missCause(mon, i, track)]++
					mon.missedInside = append(mon.missedInside, sim.insideS(v, track))
				}
			}
			runs[2*j], runs[2*j+1] = poll, mon
			return nil
		}
	})
	if err != nil {
		return nil, err
	}
	rep := &PhoneReport{Phones: pc.Phones, WalkHours: pc.Walk.Hours(), StepS: 1, Platform: "ios", PollEveryS: pc.PollEvery.Seconds(),
		OSDelayS: [2]float64{pc.OSDelay[0].Seconds(), pc.OSDelay[1].Seconds()}, AccuracyM: pc.AccuracyM}
	for i, a := range pc.Areas {
		ar := summarizeArea(pc, runs[2*i*pc.Phones:2*(i+1)*pc.Phones])
		ar.Name, ar.InnerKm, ar.OuterKm = a.Name, a.InnerM/1000, a.OuterM/1000
		ar.StoresPerKm2 = storesPerKm2(city, snap, a)
		rep.Areas = append(rep.Areas, ar)
	}
	rep.WallS = time.Since(t0).Seconds()
	return rep, nil
}

// storesPerKm2 counts the stores whose point lies in the area, per km².
func storesPerKm2(city *City, snap *rules.Snapshot, a PhoneArea) float64 {
	km2 := math.Pi * (a.OuterM*a.OuterM - a.InnerM*a.InnerM) / 1e6
	if km2 <= 0 {
		return 0
	}
	n := 0
	for _, st := range snap.Stores {
		if st.Lat != nil && st.Lng != nil && a.holds(geo.DistanceM(city.CenterLat, city.CenterLng, *st.Lat, *st.Lng)) {
			n++
		}
	}
	return float64(n) / km2
}

// PhoneCustomerID names phone n's customer of an area in a mode.
func PhoneCustomerID(area, mode string, n int) string {
	if mode == ModePolling {
		return fmt.Sprintf("phone-poll-%s-%06d", area, n)
	}
	return fmt.Sprintf("phone-mon-%s-%06d", area, n)
}

// putPhones saves each phone's customer twice, once per mode: one of the
// city's customers' profile with location and push consent, and an iPhone.
func putPhones(ctx context.Context, rdb redis.UniversalClient, city *City, areas []PhoneArea, phones int) error {
	cs := engine.NewCustomers(rdb)
	for _, mode := range []string{ModePolling, ModeMonitored} {
		var custs []*rules.Customer
		var ids []string
		var devs []*rules.Device
		for j := 0; j < len(areas)*phones; j++ {
			c, d := city.Customer(j)
			c.ID = PhoneCustomerID(areas[j/phones].Name, mode, j%phones)
			c.Consent = rules.Consent{Location: true, Push: true}
			d.ID, d.Platform = c.ID+"-iphone", "ios"
			if err := c.Normalize(); err != nil {
				return err
			}
			custs, ids, devs = append(custs, c), append(ids, c.ID), append(devs, d)
		}
		if _, err := cs.PutMany(ctx, custs); err != nil {
			return fmt.Errorf("phones: %w", err)
		}
		if _, err := cs.PutDevices(ctx, ids, devs); err != nil {
			return fmt.Errorf("phones: %w", err)
		}
	}
	return nil
}

// phoneSim replays walks through one engine on its own clock.
type phoneSim struct {
	pc      PhonesConfig
	snap    *rules.Snapshot
	eng     *engine.Engine
	clock   *time.Time
	seconds int
}

// run replays one phone's walk in one mode.
func (s *phoneSim) run(ctx context.Context, area PhoneArea, n int, mode string, track []spot, visits []trueVisit) (*phoneRun, error) {
	modeNo := uint64(1)
	if mode == ModeMonitored {
		modeNo = 2
	}
	rng := mrand.New(mrand.NewPCG(s.pc.Seed, uint64(n)<<8|modeNo|5<<50|uint64(area.seq)<<44))
	r := &phoneRun{phone: n, area: area.Name, mode: mode, visits: visits, causes: map[string]int64{}, anomalies: map[string]int{}, trust: map[string]int64{}}
	cust := PhoneCustomerID(area.Name, mode, n)
	ping := func(t int, why string) (*engine.Result, spot, error) {
		p := track[t]
		acc := 0.0
		lat, lng := p.lat, p.lng
		if lo, hi := s.pc.AccuracyM[0], s.pc.AccuracyM[1]; hi > 0 {
			acc = math.Round(lo + (hi-lo)*rng.Float64())
			// A 2-D normal error with 68% of fixes within acc.
			sigma := acc / 1.5096
			lat, lng = offset(lat, lng, sigma*rng.NormFloat64(), sigma*rng.NormFloat64())
		}
		speed := p.speed
		*s.clock = s.pc.Start.Add(time.Duration(t) * time.Second)
		res, err := s.eng.Evaluate(ctx, engine.Ping{CustomerID: cust, DeviceID: cust + "-iphone", Lat: lat, Lng: lng,
			AccuracyM: acc, SpeedMps: &speed, TS: *s.clock}, engine.Options{Explain: true})
		if err != nil {
			return nil, spot{}, fmt.Errorf("phones: ping of %s: %w", cust, err)
		}
		r.answered(t, why, res)
		return res, spot{lat: lat, lng: lng, speed: speed, accuracy: acc}, nil
	}
	if mode == ModePolling {
		every := max(1, int(s.pc.PollEvery/time.Second))
		for t := 0; t < s.seconds; t += every {
			if _, _, err := ping(t, "poll"); err != nil {
				return nil, err
			}
		}
		r.match()
		return r, nil
	}

	// Monitored: the OS watches the answer's circles and wakes the app a
	// few seconds after a crossing; the app follows next_ping.
	reg := registration{afterS: -1}
	wakeAt, wakeWhy := -1, ""
	delay := func() int {
		lo, hi := s.pc.OSDelay[0].Seconds(), s.pc.OSDelay[1].Seconds()
		return int(math.Round(lo + (hi-lo)*rng.Float64()))
	}
	schedule := func(at int, why string) {
		if wakeAt < 0 || at < wakeAt {
			wakeAt, wakeWhy = at, why
		}
	}
	for t := 0; t < s.seconds; t++ {
		p := track[t]
		why := ""
		if t == 0 {
			why = wakeStart
		} else {
			for i := range reg.regions {
				c := &reg.regions[i]
				if in := planarM(p.lat, p.lng, c.lat, c.lng) <= c.r; in != c.inside {
					c.inside = in
					if in {
						schedule(t+delay(), wakeEnter)
					} else {
						schedule(t+delay(), wakeExit)
					}
				}
			}
			if c := reg.wake; c != nil && c.inside && planarM(p.lat, p.lng, c.lat, c.lng) > c.r {
				c.inside = false
				schedule(t+delay(), wakeWake)
			}
			switch {
			case wakeAt >= 0 && t >= wakeAt:
				why = wakeWhy
			case reg.afterS >= 0 && t-reg.t >= reg.afterS:
				why = wakeAfter
			case reg.own && planarM(p.lat, p.lng, reg.from.lat, reg.from.lng) >= reg.distM:
				why = wakeDistance
			}
		}
		if why == "" {
			continue
		}
		res, fix, err := ping(t, why)
		if err != nil {
			return nil, err
		}
		// The answer replaces what the OS watches; crossings of the old
		// circles not yet delivered are dropped with them.
		wakeAt = -1
		next, ok := s.register(t, p, fix, res, r)
		if ok {
			reg = next
		} else {
			// No pacing in the answer: keep what is watched, count
			// distance and time from this ping.
			reg.t, reg.from, reg.fix = t, p, fix
		}
		// Kept as registered: the OS's flags of the live one change.
		rec := reg
		rec.regions = slices.Clone(reg.regions)
		if reg.wake != nil {
			w := *reg.wake
			rec.wake = &w
		}
		r.regs = append(r.regs, rec)
	}
	r.match()
	return r, nil
}

// register is what the phone watches after an answer; false when the
// answer carries no pacing.
func (s *phoneSim) register(t int, p, fix spot, res *engine.Result, r *phoneRun) (registration, bool) {
	if res.Monitor == nil || res.NextPing == nil {
		r.anomalies["answer without monitor or next_ping"]++
		return registration{}, false
	}
	m, np := res.Monitor, res.NextPing
	reg := registration{t: t, from: p, fix: fix, distM: float64(np.DistanceM), afterS: -1}
	if np.AfterS != nil {
		reg.afterS = *np.AfterS
	}
	regions := m.RegionList()
	if len(regions) > 19 {
		r.anomalies["more than 19 regions for an iPhone"]++
	}
	for _, g := range regions {
		if g.RadiusM < engine.MonitorMinRadiusM {
			r.anomalies["region under 100 m"]++
		}
		c := circle{lat: g.Lat, lng: g.Lng, r: float64(g.RadiusM), store: g.StoreID}
		c.inside = planarM(p.lat, p.lng, c.lat, c.lng) <= c.r
		reg.regions = append(reg.regions, c)
	}
	if w := m.Wake; w != nil {
		c := &circle{lat: w.Lat, lng: w.Lng, r: float64(w.RadiusM)}
		c.inside = planarM(p.lat, p.lng, c.lat, c.lng) <= c.r
		if !c.inside {
			// The fix's error put the wake circle's centre so far off
			// that the phone is outside it: no exit will come.
			r.anomalies["phone outside its wake circle (fix error)"]++
		}
		reg.wake = c
		if np.DistanceM > w.RadiusM {
			r.anomalies["next_ping distance beyond the wake circle"]++
		}
	}
	reg.own = m.Wake == nil || np.DistanceM < m.Wake.RadiusM
	return reg, true
}

// match pairs the true visits with the engine's enters: a visit is
// detected by the first enter of its store, not taken by an earlier
// visit, while it lasts or up to a minute before it began (a fix's error
// put the customer inside early) as long as the engine still held the
// store when the customer truly crossed in; such an early detection's
// delay counts as 0. An enter that detects no visit and falls in none is
// one without a true visit.
func (r *phoneRun) match() {
	r.detected = make([]int, len(r.visits))
	used := make([]bool, len(r.enters))
	order := make([]int, len(r.visits))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return r.visits[a].start - r.visits[b].start })
	for _, i := range order {
		v := r.visits[i]
		r.detected[i] = -1
		for j, e := range r.enters {
			if used[j] || e.store != v.store || e.t < v.start-earlyToleranceS || e.t > v.end {
				continue
			}
			if e.t < v.start && r.exitedBetween(v.store, e.t, v.start) {
				continue
			}
			used[j] = true
			r.detected[i] = max(0, e.t-v.start)
			if e.t < v.start {
				r.early++
			}
			break
		}
		if r.detected[i] < 0 && r.held(v.store, v.start) {
			r.detected[i] = -2
		}
	}
	for j, e := range r.enters {
		if used[j] {
			continue
		}
		in := false
		for _, v := range r.visits {
			if e.store == v.store && e.t >= v.start-earlyToleranceS && e.t <= v.end {
				in = true
				break
			}
		}
		if !in {
			r.withoutVisit++
		}
	}
}

// exitedBetween tells whether the engine left the store in (from, to].
func (r *phoneRun) exitedBetween(store string, from, to int) bool {
	for _, x := range r.exits {
		if x.store == store && x.t > from && x.t <= to {
			return true
		}
	}
	return false
}

// held tells whether the engine held the store at second t: its last
// enter there before t came after its last exit.
func (r *phoneRun) held(store string, t int) bool {
	last := func(xs []stamped) int {
		at := -1
		for _, x := range xs {
			if x.store == store && x.t < t {
				at = x.t
			}
		}
		return at
	}
	in := last(r.enters)
	return in >= 0 && in >= last(r.exits)
}

// judgeable are a walk's visits both modes had a chance at: those
// starting before the walk's last minute.
func judgeable(v trueVisit, seconds int) bool { return v.start < seconds-60 }

// missCause says why a monitored phone missed visit i (which polling
// caught): what it watched and followed after its answers during the
// visit (every fix outside the fence) or, without any, after its last
// answer before the visit.
func (s *phoneSim) missCause(r *phoneRun, i int, track []spot) string {
	v := r.visits[i]
	if r.detected[i] == -2 {
		return "store still held by the engine from an earlier enter"
	}
	var before, during *registration
	for k := range r.regs {
		g := &r.regs[k]
		if g.t < v.start {
			before = g
			continue
		}
		if g.t > v.end {
			break
		}
		during = g
		for _, c := range g.regions {
			if c.store == v.store && c.inside {
				// The OS tells of crossings only: a region registered
				// with the phone inside it is never entered.
				const head = "a fix outside the fence while the phone was inside the store's region (the OS reports no crossing into a region it is in); "
				fixOut := s.outsideM(v.store, g.fix.lat, g.fix.lng)
				switch {
				case g.distM <= fixOut+1:
					return head + "distance_m no longer than the way in from the fix, not moved"
				case fixOut <= g.fix.accuracy:
					return head + "the fix within its accuracy of the edge, and distance_m longer than the way in (the circle left to the OS)"
				default:
					return head + "the fix beyond its accuracy from the edge, and distance_m longer than the way in (the circle left to the OS)"
				}
			}
		}
	}
	switch {
	case during != nil:
		return "pinged during the visit, every fix outside the fence and the phone outside the store's region; then " + s.asleep(during, v, track)
	case before != nil:
		return "no ping during the visit: " + s.asleep(before, v, track)
	default:
		return "no answer before the visit"
	}
}

// asleep says why a phone did not ping again after an answer until the
// visit ended: what the OS watched and what next_ping asked for.
func (s *phoneSim) asleep(reg *registration, v trueVisit, track []spot) string {
	var watched *circle
	for k := range reg.regions {
		if reg.regions[k].store == v.store {
			watched = &reg.regions[k]
		}
	}
	var os string
	switch p := track[max(v.start, reg.t)]; {
	case watched != nil && watched.inside:
		os = "its region watched from inside (no crossing to come)"
	case watched != nil:
		os = "its region watched, the OS woke the app too late"
	case reg.wake != nil && planarM(p.lat, p.lng, reg.wake.lat, reg.wake.lng) <= reg.wake.r:
		os = "not watched, inside the wake circle (the wake reached a store left out)"
	case reg.wake != nil:
		os = "not watched, the wake circle left too late"
	default:
		os = "not watched, no wake circle"
	}
	if !reg.own {
		return os + "; distance_m not followed (not under the wake's radius)"
	}
	trueOut, fixOut := s.outsideM(v.store, reg.from.lat, reg.from.lng), s.outsideM(v.store, reg.fix.lat, reg.fix.lng)
	switch {
	case reg.distM > trueOut+1 && reg.distM > fixOut+1:
		return os + "; distance_m longer than the way to the fence, even from the fix"
	case reg.distM > trueOut+1:
		return os + "; distance_m longer than the true way to the fence (fix error)"
	default:
		return os + "; distance_m not moved before the visit ended"
	}
}

// insideS is how many seconds of a visit the walker was truly inside
// the fence.
func (s *phoneSim) insideS(v trueVisit, track []spot) int {
	n := 0
	for t := v.start; t <= v.end && t < len(track); t++ {
		if s.outsideM(v.store, track[t].lat, track[t].lng) == 0 {
			n++
		}
	}
	return n
}

// outsideM is how far a point lies outside a store's fence.
func (s *phoneSim) outsideM(store string, lat, lng float64) float64 {
	pos, ok := s.snap.StoreByID(store)
	if !ok {
		return math.Inf(1)
	}
	st := s.snap.Stores[pos]
	if h, ok := geo.CheckFence(st.Fence(), lat, lng); ok {
		return h.OutsideM
	}
	// Far beyond the fence: at least this far (its bounding size is
	// under twice the distance to its point's edge…), which beats any
	// distance_m of interest.
	return geo.DistanceM(lat, lng, *st.Lat, *st.Lng) - 2*st.RadiusM
}

// summarizeArea adds up one area's runs: each phone's polled run, then
// its monitored one.
func summarizeArea(pc PhonesConfig, runs []*phoneRun) *PhoneAreaReport {
	seconds := int(pc.Walk / time.Second)
	rep := &PhoneAreaReport{MissCauses: map[string]int{}, Anomalies: map[string]int{}, runs: runs}
	hours := float64(pc.Phones) * pc.Walk.Hours()
	var errands, inFence, nearFence int
	for _, r := range runs {
		if r.mode == ModePolling {
			errands, inFence, nearFence = errands+r.errands, inFence+r.fences.inside, nearFence+r.fences.near
		}
	}
	if hours > 0 {
		rep.ErrandsPerHour = float64(errands) / hours
		rep.InFencePct = 100 * float64(inFence) / (hours * 3600)
		rep.NearFencePct = 100 * float64(nearFence) / (hours * 3600)
	}
	for _, name := range []string{ModePolling, ModeMonitored} {
		m := &PhoneMode{Name: name, WakeCauses: map[string]int64{}, Trust: map[string]int64{}}
		var delays []int
		for _, r := range runs {
			if r.mode != name {
				continue
			}
			m.Pings += int64(len(r.pings))
			m.Offers += int64(r.offers)
			m.Enters += int64(len(r.enters))
			m.EntersWithoutVisit += int64(r.withoutVisit)
			for k, v := range r.trust {
				m.Trust[k] += v
			}
			if name == ModeMonitored {
				for k, v := range r.causes {
					m.WakeCauses[k] += v
				}
			}
			for k, v := range r.anomalies {
				rep.Anomalies[name+": "+k] += v
			}
			for i, v := range r.visits {
				if !judgeable(v, seconds) {
					continue
				}
				switch d := r.detected[i]; {
				case d >= 0:
					m.Detected++
					delays = append(delays, d)
				case d == -2:
					m.Missed++
					m.MissedHeld++
				default:
					m.Missed++
				}
			}
			m.Early += r.early
		}
		if len(m.WakeCauses) == 0 {
			m.WakeCauses = nil
		}
		if hours > 0 {
			m.PingsPerCustomerHour = float64(m.Pings) / hours
		}
		m.DelayS = delayStats(delays)
		if name == ModeMonitored {
			m.Answers = answerStats(runs)
		}
		rep.Modes = append(rep.Modes, m)
	}
	var inside []int
	for _, r := range runs {
		for k, v := range r.missCauses {
			rep.MissCauses[k] += v
		}
		inside = append(inside, r.missedInside...)
	}
	rep.MissedInsideS = delayStats(inside)
	if len(rep.MissCauses) == 0 {
		rep.MissCauses = nil
	}
	for k := 0; k+1 < len(runs); k += 2 {
		poll, mon := runs[k], runs[k+1]
		for i, v := range poll.visits {
			if !judgeable(v, seconds) {
				continue
			}
			rep.Visits++
			if poll.detected[i] >= 0 && mon.detected[i] < 0 {
				rep.CaughtByPollingMissedByMonitoring++
			}
		}
	}
	if len(rep.Anomalies) == 0 {
		rep.Anomalies = nil
	}
	if hours > 0 {
		rep.VisitsPerHour = float64(rep.Visits) / hours
	}
	return rep
}

// answerStats sums up the registrations of the monitored runs.
func answerStats(runs []*phoneRun) *AnswerStats {
	a := &AnswerStats{}
	var dist, wake []int
	for _, r := range runs {
		if r.mode != ModeMonitored {
			continue
		}
		for _, g := range r.regs {
			a.Answers++
			dist = append(dist, int(g.distM))
			if g.wake == nil {
				a.WakeNull++
			} else {
				wake = append(wake, int(g.wake.r))
			}
			if g.own {
				a.OwnUpdates++
			}
			if g.afterS >= 0 {
				a.AfterS++
			}
		}
	}
	a.DistanceM, a.WakeM = delayStats(dist), delayStats(wake)
	return a
}

// delayStats are the percentiles of delays in seconds.
func delayStats(d []int) Delay {
	if len(d) == 0 {
		return Delay{}
	}
	slices.Sort(d)
	q := func(f float64) float64 { return float64(d[min(len(d)-1, int(f*float64(len(d))))]) }
	return Delay{P50: q(0.50), P95: q(0.95), Max: float64(d[len(d)-1])}
}

// Area is the named area's comparison; nil if absent.
func (p *PhoneReport) Area(name string) *PhoneAreaReport {
	for _, a := range p.Areas {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Mode is the named mode's figures; nil if absent.
func (p *PhoneAreaReport) Mode(name string) *PhoneMode {
	for _, m := range p.Modes {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// WriteText writes the comparison for a person.
func (p *PhoneReport) WriteText(w io.Writer) {
	fmt.Fprintf(w, "\nphones: %d phones (%s) in each of %d areas walk %.2f h each in %d s steps, the same walks polled every %.0f s and monitored;\n",
		p.Phones, p.Platform, len(p.Areas), p.WalkHours, p.StepS, p.PollEveryS)
	fixes := "exact fixes"
	if p.AccuracyM[1] > 0 {
		fixes = fmt.Sprintf("fixes of %.0f-%.0f m accuracy (normal error, 68%% within it)", p.AccuracyM[0], p.AccuracyM[1])
	}
	fmt.Fprintf(w, "  %s; the OS wakes a monitored app %.0f-%.0f s after a crossing; %.1f s\n", fixes, p.OSDelayS[0], p.OSDelayS[1], p.WallS)
	fmt.Fprintf(w, "  %-10s %9s %11s %11s %14s %10s %12s %9s\n",
		"area", "ring km", "stores/km²", "in a fence", "within 100 m", "errands/h", "true visits", "visits/h")
	for _, a := range p.Areas {
		fmt.Fprintf(w, "  %-10s %9s %11.1f %10.1f%% %13.1f%% %10.2f %12d %9.2f\n",
			a.Name, fmt.Sprintf("%g-%g", a.InnerKm, a.OuterKm), a.StoresPerKm2, a.InFencePct, a.NearFencePct, a.ErrandsPerHour, a.Visits, a.VisitsPerHour)
	}
	fmt.Fprintf(w, "  (stores/km²: stores whose point lies in the area's ring; in a fence, within 100 m: share of the walks' time truly inside\n")
	fmt.Fprintf(w, "   some store's fence, or within 100 m of its edge; errands: walks into a store of the area 60-500 m away, set out on\n")
	fmt.Fprintf(w, "   when one is near as the walker picks a new leg; walks start where the load phases' people do, within the ring,\n")
	fmt.Fprintf(w, "   and turn back at its edges)\n")
	fmt.Fprintf(w, "  %-10s %-12s %8s %10s %6s %7s %7s %9s %6s %7s %6s %9s %7s %7s %9s\n",
		"area", "mode", "pings", "per cust-h", "ratio", "offers", "enters", "detected", "early", "missed", "held", "delay p50", "p95", "max", "no visit")
	for _, a := range p.Areas {
		poll := a.Mode(ModePolling)
		for _, m := range a.Modes {
			ratio := "-"
			if poll != nil && poll.PingsPerCustomerHour > 0 {
				ratio = fmt.Sprintf("%.2fx", m.PingsPerCustomerHour/poll.PingsPerCustomerHour)
			}
			fmt.Fprintf(w, "  %-10s %-12s %8d %10.1f %6s %7d %7d %9d %6d %7d %6d %7.0f s %5.0f s %5.0f s %9d\n",
				a.Name, m.Name, m.Pings, m.PingsPerCustomerHour, ratio, m.Offers, m.Enters, m.Detected, m.Early, m.Missed, m.MissedHeld,
				m.DelayS.P50, m.DelayS.P95, m.DelayS.Max, m.EntersWithoutVisit)
		}
	}
	fmt.Fprintf(w, "  (ratio: pings per customer-hour against polling's; offers: at most %d a customer a day, %s apart, as the server's\n",
		engine.DefaultConfig().MaxOffersPerDay, minOfferGap)
	fmt.Fprintf(w, "   defaults; delay: from the true crossing into the fence to the engine's enter; early: detected up to %d s before\n", earlyToleranceS)
	fmt.Fprintf(w, "   the crossing (a fix's error), delay 0; missed: true visits with no enter of the engine for their store; held: of\n")
	fmt.Fprintf(w, "   which the engine still held the store from an earlier enter; no visit: enters with no true visit of the store then,\n")
	fmt.Fprintf(w, "   from a fix's error)\n")
	for _, a := range p.Areas {
		a.writeDetails(w)
	}
}

// writeDetails writes why an area's monitored phones pinged, what they
// were told, and the visits they missed.
func (a *PhoneAreaReport) writeDetails(w io.Writer) {
	for _, m := range a.Modes {
		var all int64
		for _, v := range m.Trust {
			all += v
		}
		if all > 0 {
			fmt.Fprintf(w, "  %s, %s: fixes by trust: %s; honest phones taken for suspicious: %.1f per 10,000 fixes (the aim: 0)\n",
				a.Name, m.Name, countsText(m.Trust), 10000*float64(m.Trust[engine.TrustSuspicious])/float64(all))
		}
	}
	if mon := a.Mode(ModeMonitored); mon != nil && len(mon.WakeCauses) > 0 {
		fmt.Fprintf(w, "  %s: monitored pings by cause: %s\n", a.Name, countsText(mon.WakeCauses))
	}
	if mon := a.Mode(ModeMonitored); mon != nil && mon.Answers != nil && mon.Answers.Answers > 0 {
		an := mon.Answers
		pct := func(n int) float64 { return 100 * float64(n) / float64(an.Answers) }
		fmt.Fprintf(w, "  %s: monitored answers: %d; wake null %.0f%%, app on its own location updates (no wake, or distance_m under its radius) %.0f%%, after_s given %.0f%%;\n",
			a.Name, an.Answers, pct(an.WakeNull), pct(an.OwnUpdates), pct(an.AfterS))
		fmt.Fprintf(w, "    distance_m p50 %.0f m, p95 %.0f m; wake radius p50 %.0f m, p95 %.0f m\n", an.DistanceM.P50, an.DistanceM.P95, an.WakeM.P50, an.WakeM.P95)
	}
	fmt.Fprintf(w, "  %s: true visits polling caught and monitoring missed: %d of %d", a.Name, a.CaughtByPollingMissedByMonitoring, a.Visits)
	if a.CaughtByPollingMissedByMonitoring > 0 {
		d := a.MissedInsideS
		fmt.Fprintf(w, ", truly inside the fence p50 %.0f s, p95 %.0f s, max %.0f s; by what the monitored phone was doing:", d.P50, d.P95, d.Max)
	}
	fmt.Fprintln(w)
	for _, k := range sortedKeys(a.MissCauses) {
		fmt.Fprintf(w, "    %5d  %s\n", a.MissCauses[k], k)
	}
	if len(a.Anomalies) > 0 {
		fmt.Fprintf(w, "  %s: answers that broke the API's promises:\n", a.Name)
		for _, k := range sortedKeys(a.Anomalies) {
			fmt.Fprintf(w, "    %5d  %s\n", a.Anomalies[k], k)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func countsText(m map[string]int64) string {
	var b []byte
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "%s %d", k, m[k])
	}
	return string(b)
}

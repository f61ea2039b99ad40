package engine

import (
	"math"
	"slices"
	"time"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// A phone cannot ping every few seconds: its operating system watches a
// few circles for the app (iOS at most 20, Android 100) and wakes it on a
// crossing. Every answer to a ping of a customer with location consent
// tells the device which circles to watch (Monitor) and when a ping is
// next worth sending (NextPing), from the in-memory index alone.

// Regions a device of each platform is given to watch, beside the wake
// region: iOS allows an app 20 regions, Android 100 geofences; a browser
// watches none. A device not registered (or a ping without a device id)
// is given iOS's number, which every platform can watch.
var monitorRegions = map[string]int{"ios": 19, "android": 99, "web": 0}

const (
	// MonitorMinRadiusM is the smallest region a phone's OS watches
	// reliably (about 100 m on iOS and Android): a smaller fence is
	// watched as a circle of this radius around its centre.
	MonitorMinRadiusM = 100
	// WakeRegionID and RegionIDPrefix name the regions of a monitor block,
	// so that an app can tell them from its own.
	WakeRegionID   = "nearcast:wake"
	RegionIDPrefix = "nearcast:"
	// minNextPingM is the least distance next_ping asks for: below it a
	// fix's own error decides.
	minNextPingM = 10
)

// Monitor is what a device should have its OS watch.
type Monitor struct {
	// Regions are the stores nearest the device, each as a circle (a
	// polygon's enclosing circle), nearest first.
	Regions []Region `json:"regions"`
	// Wake is a circle around the device that reaches no store left out
	// of Regions: on leaving it the app pings and gets a new block. Null
	// when it would be smaller than an OS watches reliably (among many
	// stores): then the app follows NextPing with its own location updates.
	Wake *Region `json:"wake"`
}

// Region is a circle for the OS to watch.
type Region struct {
	// ID is "nearcast:" and the store's id, or "nearcast:wake".
	ID      string  `json:"id"`
	StoreID string  `json:"store_id,omitempty"`
	Lat     float64 `json:"lat"`
	Lng     float64 `json:"lng"`
	RadiusM int     `json:"radius_m"`
}

// NextPing says when the next ping is worth sending: once the device has
// moved DistanceM from this fix, or AfterS seconds from now when given
// (an open visit's next dwell threshold, or keeping it open), whichever
// comes first.
type NextPing struct {
	DistanceM int  `json:"distance_m"`
	AfterS    *int `json:"after_s"`
}

// pacing fills in the monitor block and the next ping for a ping that
// moved presence: platform as registered, the fences near the fix, and
// the observe step's open visits.
func (e *Engine) pacing(snap *rules.Snapshot, p Ping, hits []geo.Hit, obs observation, res *Result) {
	k, known := monitorRegions[obs.platform]
	if !known {
		k = monitorRegions["ios"]
	}
	var buf [100]geo.Region
	if k == 0 {
		// A browser watches nothing: its pacing needs the way to the
		// nearest fence beyond those near the fix (which nextPing reads
		// from the hits), true to size.
		_, wakeM := snap.Index.Watch(p.Lat, p.Lng, len(hits), 0, buf[:0])
		res.NextPing = e.nextPing(snap, hits, p.AccuracyM, wakeM, nil, obs)
		return
	}
	regions, wakeM := snap.Index.Watch(p.Lat, p.Lng, k, MonitorMinRadiusM, buf[:0])
	m := &Monitor{Regions: make([]Region, len(regions))}
	for i, r := range regions {
		st := snap.Stores[r.Fence]
		m.Regions[i] = Region{ID: RegionIDPrefix + st.ID, StoreID: st.ID, Lat: r.Lat, Lng: r.Lng, RadiusM: int(math.Ceil(r.RadiusM))}
	}
	if wakeM >= MonitorMinRadiusM {
		m.Wake = &Region{ID: WakeRegionID, Lat: p.Lat, Lng: p.Lng, RadiusM: int(wakeM)}
	}
	res.Monitor = m
	res.NextPing = e.nextPing(snap, hits, p.AccuracyM, wakeM, regions, obs)
}

// nextPing: the distance the device may move before a fence near it
// could be entered or left (or, far from them, the wake circle left);
// with a visit open, the time to its next dwell threshold, or to half the
// visit timeout, so that a customer who stays is not taken to have left;
// and, while a fix leaves a store undecided (inside but too unsure to
// enter, or outside by less than twice its accuracy: its 95% circle), a
// fresh fix soon. A
// circle the OS watches as it is (a circle fence of 100 m or more among
// the regions) wakes the phone on entering by itself, once the phone is
// clearly outside it.
func (e *Engine) nextPing(snap *rules.Snapshot, hits []geo.Hit, accuracyM, wakeM float64, regions []geo.Region, obs observation) *NextPing {
	d, undecided := wakeM, false
	for _, h := range hits {
		st := snap.Stores[h.Fence]
		circle := st.Polygon == nil
		margin := geo.ExitMarginM(h.SizeM)
		switch {
		case slices.Contains(obs.open, st.ID):
			// A visit open here: what matters is leaving, beyond the edge by
			// the exit margin. A circle's edge is DistanceM from its centre;
			// a polygon's is at least its margin away.
			left := margin - h.OutsideM
			if h.Inside && circle {
				left += h.SizeM - h.DistanceM
			}
			d = math.Min(d, left)
		case h.Inside || h.OutsideM <= 2*accuracyM: // within the fix's 95% circle
			undecided = true
			d = math.Min(d, h.OutsideM)
		case !(circle && h.SizeM >= MonitorMinRadiusM && watches(regions, h.Fence)):
			d = math.Min(d, h.OutsideM)
		}
	}
	np := &NextPing{DistanceM: max(minNextPingM, int(d))}
	var wait time.Duration
	if len(obs.open) > 0 {
		wait = e.cfg.VisitTimeout / 2
		if obs.nextDwell >= 0 && obs.nextDwell < wait {
			wait = obs.nextDwell
		}
	}
	if undecided && (wait == 0 || wait > undecidedRefix) {
		wait = undecidedRefix
	}
	if wait > 0 {
		s := max(1, int(math.Ceil(wait.Seconds())))
		np.AfterS = &s
	}
	return np
}

// undecidedRefix is how soon a phone whose fix leaves a store undecided
// should take a fresh one.
const undecidedRefix = 30 * time.Second

func watches(regions []geo.Region, fence int32) bool {
	for _, r := range regions {
		if r.Fence == fence {
			return true
		}
	}
	return false
}

package engine_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// Every answer tells the device what to watch, sized for its platform:
// at a mall of 40 tenants iOS and Android get 19 regions (more would
// not widen the wake circle there), a browser none, a device not
// registered iOS's number; on a long street of 120 shops 300 m apart,
// Android gets 99 (with the wake region, each platform's limit: 20 and
// 100); the wake circle reaches no shop left out, and is left out itself
// where it would be too small for an OS (among shops 30 m apart). Far from everything: no region, the widest wake circle. A
// polygon is watched as its enclosing circle; a kiosk as a circle of the
// OS's minimum. Inside a store with a dwell rule, the next ping is due
// at the threshold.
func TestMonitorByPlatform(t *testing.T) {
	rdb := srv.Client(t)
	dwell := rules.Rule{ID: "stay", Name: "Stay", Trigger: rules.Trigger{On: rules.OnDwell, DwellS: 300},
		Offer: rules.Offer{Title: rules.Texts{{Lang: "en", Template: "Stay"}}, Body: rules.Texts{{Lang: "en", Template: "a while"}}}}
	f := setup(t, rdb, dwell)
	ctx := context.Background()
	cat := f.live.Catalog()
	// The mall, 2 km north of Alexanderplatz: 40 tenants of 10-30 m, 30 m
	// apart; a street 50 km west: 120 shops, 300 m apart on a line; a
	// polygon and a kiosk 1 km east of Alexanderplatz.
	mallLat, mallLng := north(alexLat, alexLng, 2000)
	streetLat, streetLng := alexLat, alexLng-50000/(111320*math.Cos(alexLat*math.Pi/180))
	for i := range 160 {
		id, lat, lng := fmt.Sprintf("m-%03d", i), mallLat, mallLng
		if i < 40 {
			lat, lng = north(lat, lng, float64(i/8)*30)
			lng += float64(i%8) * 30 / (111320 * math.Cos(lat*math.Pi/180))
		} else {
			id, lat, lng = fmt.Sprintf("h-%03d", i-40), streetLat, streetLng+float64(i-40-60)*300/(111320*math.Cos(streetLat*math.Pi/180))
		}
		st := rules.Store{ID: id, Name: "Shop", Lat: ptr(lat), Lng: ptr(lng), RadiusM: 10 + float64(i%3)*10}
		if _, err := cat.PutStore(ctx, &st); err != nil {
			t.Fatal(err)
		}
	}
	eastLng := alexLng + 1000/(111320*math.Cos(alexLat*math.Pi/180))
	ring := [][2]float64{{alexLat - 0.001, eastLng - 0.001}, {alexLat - 0.001, eastLng + 0.001}, {alexLat + 0.001, eastLng + 0.001}, {alexLat + 0.001, eastLng - 0.001}}
	for _, st := range []rules.Store{
		{ID: "poly", Name: "Square", Lat: ptr(alexLat), Lng: ptr(eastLng), Polygon: ring},
		{ID: "kiosk", Name: "Kiosk", Lat: ptr(alexLat + 0.004), Lng: ptr(eastLng), RadiusM: 15},
	} {
		if _, err := cat.PutStore(ctx, &st); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.live.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	cust := engine.NewCustomers(rdb)
	for _, d := range []rules.Device{{ID: "d-ios", Platform: "ios"}, {ID: "d-web", Platform: "web"}} {
		d.FCMToken = "tok-" + d.ID
		if _, err := cust.PutDevice(ctx, "c-42", &d); err != nil {
			t.Fatal(err)
		}
	}
	snap := f.live.Current()
	ping := func(device string, lat, lng float64) *engine.Result {
		t.Helper()
		f.clock.Advance(time.Minute)
		res, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: device, Lat: lat, Lng: lng, AccuracyM: 10, TS: f.clock.Now()}, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// wakeReachesNoneLeftOut checks the wake circle against every store.
	wakeReachesNoneLeftOut := func(res *engine.Result, lat, lng float64) {
		t.Helper()
		watched := map[string]bool{}
		for _, r := range res.Monitor.RegionList() {
			watched[r.StoreID] = true
			if r.RadiusM < engine.MonitorMinRadiusM || r.ID != engine.RegionIDPrefix+r.StoreID {
				t.Fatalf("region %+v", r)
			}
		}
		w := res.Monitor.Wake
		if w == nil {
			return
		}
		if w.ID != engine.WakeRegionID || w.Lat != lat || w.Lng != lng || w.RadiusM < engine.MonitorMinRadiusM {
			t.Fatalf("wake %+v", w)
		}
		for _, st := range snap.Stores {
			r := math.Max(st.RadiusM, engine.MonitorMinRadiusM)
			if st.Polygon != nil {
				r = 0 // measured below from its enclosing circle
				continue
			}
			if edge := geo.DistanceM(lat, lng, *st.Lat, *st.Lng) - r; !watched[st.ID] && edge < float64(w.RadiusM) {
				t.Fatalf("wake of %d m reaches %s, %.0f m off, not watched", w.RadiusM, st.ID, edge)
			}
		}
	}

	// In the mall, per platform.
	for _, c := range []struct {
		device  string
		regions int
	}{{"d-ios", 19}, {"d-1", 19}, {"d-web", -1}, {"", 19}, {"d-unknown", 19}} {
		res := ping(c.device, mallLat+0.0005, mallLng+0.001)
		if c.regions < 0 {
			if res.Monitor != nil || res.NextPing == nil {
				t.Fatalf("%s: monitor %+v, next ping %+v; a browser watches nothing, yet is paced", c.device, res.Monitor, res.NextPing)
			}
			continue
		}
		if res.Monitor == nil || len(res.Monitor.RegionList()) != c.regions {
			t.Fatalf("%s: %+v, want %d regions", c.device, res.Monitor, c.regions)
		}
		if res.Monitor.Wake != nil {
			t.Fatalf("%s: a wake circle of %d m among 150 shops a few metres apart", c.device, res.Monitor.Wake.RadiusM)
		}
		if !strings.HasPrefix(res.Monitor.RegionList()[0].StoreID, "m-") || res.NextPing.DistanceM > 100 {
			t.Fatalf("%s: nearest %+v, next ping %+v", c.device, res.Monitor.RegionList()[0], res.NextPing)
		}
		wakeReachesNoneLeftOut(res, mallLat+0.0005, mallLng+0.001)
	}

	// On the long street: Android gets 99, iOS 19.
	for device, want := range map[string]int{"d-1": 99, "d-ios": 19} {
		res := ping(device, streetLat+0.001, streetLng)
		if res.Monitor == nil || len(res.Monitor.RegionList()) != want || res.Monitor.Wake == nil {
			t.Fatalf("%s on the street: %d regions, wake %+v; want %d and a wake circle", device, len(res.Monitor.RegionList()), res.Monitor.Wake, want)
		}
		wakeReachesNoneLeftOut(res, streetLat+0.001, streetLng)
		f.clock.Advance(time.Hour) // no teleport between the tests' places
	}

	// Between Alexanderplatz and the mall: few stores, a wake circle.
	midLat, midLng := north(alexLat, alexLng, 1000)
	res := ping("d-ios", midLat, midLng)
	if res.Monitor == nil || res.Monitor.Wake == nil || len(res.Monitor.RegionList()) != 19 {
		t.Fatalf("between stores: %+v", res.Monitor)
	}
	wakeReachesNoneLeftOut(res, midLat, midLng)
	if res.NextPing.DistanceM != res.Monitor.Wake.RadiusM || res.NextPing.AfterS != nil {
		t.Fatalf("between stores: next ping %+v, wake %d m", res.NextPing, res.Monitor.Wake.RadiusM)
	}
	// The app sends back the block's id: a fix still inside its wake
	// circle is answered "unchanged", with what is left of the circle; one
	// beyond it, or after the catalog changed, gets a new block.
	if res.Monitor.ID == "" {
		t.Fatalf("a block with a wake circle and no id: %+v", res.Monitor)
	}
	again := func(id string, northM float64) *engine.Result {
		t.Helper()
		f.clock.Advance(time.Minute)
		lat, lng := north(midLat, midLng, northM)
		r, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-ios", Lat: lat, Lng: lng, AccuracyM: 10, TS: f.clock.Now(), MonitorID: id}, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	wake := res.Monitor.Wake.RadiusM
	if r := again(res.Monitor.ID, 30); !r.Monitor.Unchanged || r.Monitor.ID != res.Monitor.ID || len(r.Monitor.RegionList()) != 0 || r.NextPing.DistanceM > wake-30-10 {
		t.Fatalf("30 m on inside a wake circle of %d m: %+v, next ping %+v", wake, r.Monitor, r.NextPing)
	}
	if r := again(res.Monitor.ID, float64(wake)+50); r.Monitor.Unchanged || len(r.Monitor.RegionList()) == 0 {
		t.Fatalf("beyond the wake circle: %+v", r.Monitor)
	}
	for _, bad := range []string{"nonsense", "1:2:3:4", "0:19:52.5:13.4:100000"} {
		if r := again(bad, 0); r.Monitor.Unchanged {
			t.Fatalf("monitor_id %q taken: %+v", bad, r.Monitor)
		}
	}
	newStore := rules.Store{ID: "s-new", Name: "New", Lat: ptr(midLat + 0.003), Lng: ptr(midLng), RadiusM: 50}
	if _, err := cat.PutStore(ctx, &newStore); err != nil {
		t.Fatal(err)
	}
	if err := f.live.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	snap = f.live.Current()
	if r := again(res.Monitor.ID, 30); r.Monitor.Unchanged {
		t.Fatalf("after a store was added, the old block still holds: %+v", r.Monitor)
	}

	// Fixes a few metres on (most in the same cell, whose search is kept):
	// each wake circle still reaches no store left out.
	for m := 5.0; m <= 60; m += 5 {
		lat, lng := north(midLat, midLng, m)
		wakeReachesNoneLeftOut(ping("d-ios", lat, lng), lat, lng)
	}

	// The polygon as its enclosing circle, the kiosk at the OS's minimum.
	res = ping("d-1", alexLat+0.002, eastLng)
	byID := map[string]engine.Region{}
	for _, r := range res.Monitor.RegionList() {
		byID[r.StoreID] = r
	}
	if p := byID["poly"]; p.RadiusM < 111 || geo.DistanceM(p.Lat, p.Lng, alexLat, eastLng) > 5 {
		t.Fatalf("the polygon as %+v, want its enclosing circle around (%f,%f)", p, alexLat, eastLng)
	}
	if k := byID["kiosk"]; k.RadiusM != engine.MonitorMinRadiusM {
		t.Fatalf("the kiosk as %+v", k)
	}

	// Far from everything: nothing to watch, the widest wake circle.
	res = ping("d-ios", 10, -30)
	if len(res.Monitor.RegionList()) != 0 || res.Monitor.Wake == nil || res.Monitor.Wake.RadiusM != geo.MaxWakeM || res.NextPing.DistanceM != geo.MaxWakeM {
		t.Fatalf("far from everything: %+v, next %+v", res.Monitor, res.NextPing)
	}

	// At Alexanderplatz, where a rule answers 300 s of dwell: entered,
	// the next ping is due at the threshold; then counted down.
	f.clock.Advance(10 * time.Minute) // not too fast from the last fix
	if res := ping("d-ios", alexLat, alexLng); len(res.Events) != 1 || *res.NextPing.AfterS != 300 {
		t.Fatalf("entering: %+v, next ping %+v", res.Events, res.NextPing)
	}
	res = ping("d-ios", alexLat, alexLng) // a minute after the enter
	if res.NextPing.AfterS == nil {
		t.Fatalf("inside: next ping %+v, want a time", res.NextPing)
	}
	if *res.NextPing.AfterS != 240 {
		t.Fatalf("inside, a minute after entering: next ping after %d s, want 240", *res.NextPing.AfterS)
	}
	if res.NextPing.DistanceM < 100 || res.NextPing.DistanceM > 100+int(geo.ExitMarginM(100)) {
		t.Fatalf("at the centre of a 100 m store: next ping after %d m, want the way out", res.NextPing.DistanceM)
	}
	// A browser there too: no monitor, the same way out.
	if res := ping("d-web", alexLat, alexLng); res.Monitor != nil || res.NextPing.DistanceM < 100 || res.NextPing.AfterS == nil {
		t.Fatalf("a browser at the centre of a 100 m store: %+v, next ping %+v", res.Monitor, res.NextPing)
	}
}

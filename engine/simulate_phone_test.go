package engine_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/sandbox"
	"github.com/nearcast/nearcast/rules"
)

// A phone that follows the answers sends a ping when it is woken: the
// first ping; any ping after an answer that paces nothing (no consent);
// crossing a monitored region's edge, either way; leaving the wake
// circle; moving next_ping.distance_m; after next_ping.after_s. A browser
// (next_ping, no monitor) paces by next_ping alone.
func TestPhoneWake(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	// at is a fix metres north of Alexanderplatz, seconds after t0.
	atEast := func(northM, eastM float64, s int) engine.Ping {
		lat, lng := north(alexLat, alexLng, northM)
		lng += eastM / (111194.9 * math.Cos(lat*math.Pi/180))
		return engine.Ping{Lat: lat, Lng: lng, TS: t0.Add(time.Duration(s) * time.Second)}
	}
	at := func(northM float64, s int) engine.Ping { return atEast(northM, 0, s) }
	store := engine.Region{ID: "nearcast:s-alex", StoreID: "s-alex", Lat: alexLat, Lng: alexLng, RadiusM: 100}
	wakeAt := func(p engine.Ping, r int) *engine.Region {
		return &engine.Region{ID: engine.WakeRegionID, Lat: p.Lat, Lng: p.Lng, RadiusM: r}
	}
	far := at(400, 0)   // outside the store's region
	near := at(120, 0)  // outside, 20 m from its edge
	inside := at(50, 0) // inside
	answer := func(from engine.Ping, wake, distanceM int, afterS *int) *engine.Result {
		m := &engine.Monitor{Regions: []engine.Region{store}}
		if wake > 0 {
			m.Wake = wakeAt(from, wake)
		}
		return &engine.Result{Monitor: m, NextPing: &engine.NextPing{DistanceM: distanceM, AfterS: afterS}}
	}
	browser := &engine.Result{NextPing: &engine.NextPing{DistanceM: 50}}
	for _, c := range []struct {
		name string
		sent *engine.Ping
		last *engine.Result
		p    engine.Ping
		want string
	}{
		{"first ping", nil, nil, far, engine.WakeFirst},
		{"after an answer pacing nothing", &far, &engine.Result{}, at(401, 1), engine.WakeUnpaced},
		{"no answer", &far, nil, at(401, 1), engine.WakeUnpaced},
		{"towards the store, outside its region", &far, answer(far, 1000, 2000, nil), at(150, 200), ""},
		{"into the store's region", &far, answer(far, 1000, 2000, nil), at(95, 200), engine.WakeRegion},
		{"out of the store's region", &inside, answer(inside, 1000, 2000, ptr(900)), at(105, 60), engine.WakeRegion},
		{"within the store's region", &inside, answer(inside, 1000, 2000, ptr(900)), at(-60, 60), ""},
		{"within the wake circle", &far, answer(far, 300, 2000, nil), at(650, 300), ""},
		{"out of the wake circle", &far, answer(far, 300, 2000, nil), at(750, 300), engine.WakeCircle},
		{"no wake circle, moved less than next_ping", &near, answer(near, 0, 30, nil), at(140, 30), ""},
		{"no wake circle, moved next_ping", &near, answer(near, 0, 30, nil), at(151, 30), engine.WakeDistance},
		{"moved next_ping away from the store", &near, answer(near, 0, 30, nil), atEast(120, 31, 30), engine.WakeDistance},
		{"before after_s", &inside, answer(inside, 0, 80, ptr(300)), at(55, 299), ""},
		{"at after_s", &inside, answer(inside, 0, 80, ptr(300)), at(55, 300), engine.WakeTime},
		{"after_s null: time alone wakes nothing", &inside, answer(inside, 0, 80, nil), at(55, 86400), ""},
		{"a browser, moved less than next_ping", &far, browser, at(440, 600), ""},
		{"a browser, moved next_ping", &far, browser, at(450, 1), engine.WakeDistance},
	} {
		if got := engine.PhoneWake(c.sent, c.last, c.p); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// A simulated walk says which steps a phone following the answers would
// have sent, and evaluates every step all the same. Walking in from 600 m
// north of a 100 m store (a ping every 20 m, 15 s apart), staying 20
// minutes, walking out: the first ping is sent; then the phone sleeps
// until it crosses the store's region, which enters; it pings when it has
// moved next_ping (the way out) and, staying, after after_s (half the
// visit timeout); the exit is sent. A customer without location consent
// gets no pacing: every ping is sent.
func TestSimulatePhoneSends(t *testing.T) {
	f := setup(t, srv.Client(t))
	ctx := context.Background()
	t0 := f.clock.Now()
	var pings []engine.Ping
	add := func(northM float64, afterS int) {
		lat, lng := north(alexLat, alexLng, northM)
		ts := t0
		if n := len(pings); n > 0 {
			ts = pings[n-1].TS.Add(time.Duration(afterS) * time.Second)
		}
		pings = append(pings, engine.Ping{DeviceID: "d-1", Lat: lat, Lng: lng, AccuracyM: 10, TS: ts})
	}
	for d := 600; d > 0; d -= 20 {
		add(float64(d), 15)
	}
	for range 40 {
		add(0, 30)
	}
	for d := 20; d <= 600; d += 20 {
		add(float64(d), 15)
	}
	steps, err := f.eng.Simulate(ctx, sandbox.Miniredis, "c-42", pings)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != len(pings) {
		t.Fatalf("%d steps of %d pings", len(steps), len(pings))
	}
	var sends, times int
	var sentAt time.Time
	for i, s := range steps {
		if s.PhoneSends != (s.PhoneWake != "") {
			t.Fatalf("step %d: phone_sends %v, woken by %q", i, s.PhoneSends, s.PhoneWake)
		}
		if s.Monitor == nil || s.NextPing == nil {
			t.Fatalf("step %d: every step is evaluated and paced, sent or not: %+v", i, s.Result)
		}
		for _, e := range s.Events {
			if !s.PhoneSends {
				t.Errorf("step %d: %s %s on a ping a phone would not send", i, e.Type, e.StoreID)
			}
			if e.Type == "enter" && s.PhoneWake != engine.WakeRegion {
				t.Errorf("step %d: entered, woken by %q; want the region", i, s.PhoneWake)
			}
		}
		if !s.PhoneSends {
			continue
		}
		sends++
		if s.PhoneWake == engine.WakeTime {
			times++
			if s.TS.Sub(sentAt) < 900*time.Second {
				t.Errorf("step %d: woken by time %s after the last ping sent", i, s.TS.Sub(sentAt))
			}
		}
		sentAt = s.TS
	}
	if steps[0].PhoneWake != engine.WakeFirst {
		t.Errorf("the first step: %q", steps[0].PhoneWake)
	}
	if times != 1 {
		t.Errorf("%d pings woken by time in 20 minutes' stay; want 1 (after 15)", times)
	}
	if enters, exits := countEvents(steps, "enter"), countEvents(steps, "exit"); enters != 1 || exits != 1 {
		t.Errorf("%d enters, %d exits; want one each", enters, exits)
	}
	if sends < 5 || sends > len(steps)/5 {
		t.Errorf("a phone would send %d of %d pings", sends, len(steps))
	}

	// Without location consent: nothing paced, every ping sent.
	bob := rules.Customer{ID: "c-7", FirstName: "Bob", Consent: rules.Consent{Push: true}}
	if _, err := f.cust.Put(ctx, &bob); err != nil {
		t.Fatal(err)
	}
	steps, err = f.eng.Simulate(ctx, sandbox.Miniredis, "c-7", pings[:5])
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range steps {
		want := engine.WakeUnpaced
		if i == 0 {
			want = engine.WakeFirst
		}
		if !s.PhoneSends || s.PhoneWake != want || s.Monitor != nil {
			t.Errorf("no consent, step %d: sends %v, woken by %q, monitor %+v", i, s.PhoneSends, s.PhoneWake, s.Monitor)
		}
	}
}

func countEvents(steps []engine.Step, typ string) int {
	n := 0
	for _, s := range steps {
		for _, e := range s.Events {
			if e.Type == typ {
				n++
			}
		}
	}
	return n
}

package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// A walk timed from a start ("tomorrow at 07:50" in the customer's zone)
// and by seconds between pings runs on any day; a walk before the
// customer's last fix says why each step did nothing, as does a customer
// with no profile, and a dry run of either. An app is told none of it.
func TestSimulateOnAnyDayAndSaysWhy(t *testing.T) {
	c := newClient(t, srv.Client(t))
	c.admin("PUT", "/v1/stores/s-alex", storeAlex)
	c.admin("PUT", "/v1/customers/c-42", customerAnna)
	// Anna's real last fix: now.
	if r := c.do("POST", "/v1/pings", "app-key", `{"customer_id": "c-42", "lat": 52.5264, "lng": 13.4132}`); r.Status != 200 {
		t.Fatalf("ping: %d %s", r.Status, r.Raw)
	}
	type step struct {
		TS     time.Time
		Events []struct{ Type string }
		Reason string
	}
	walk := func(body string) []step {
		t.Helper()
		r := c.admin("POST", "/v1/simulate", body)
		var res struct{ Steps []step }
		if err := json.Unmarshal([]byte(r.Raw), &res); err != nil || r.Status != 200 {
			t.Fatalf("simulate: %d %s", r.Status, r.Raw)
		}
		return res.Steps
	}
	steps := walk(`{"customer_id": "c-42", "start": {"days": 1, "at": "07:50"}, "pings": [
		{"lat": 52.5264, "lng": 13.4132}, {"lat": 52.5220, "lng": 13.4132, "after_s": 600}, {"lat": 52.5221, "lng": 13.4132, "after_s": 120}]}`)
	berlin, _ := time.LoadLocation("Europe/Berlin")
	first := steps[0].TS.In(berlin)
	tomorrow := time.Now().In(berlin).AddDate(0, 0, 1)
	if first.Day() != tomorrow.Day() || first.Hour() != 7 || first.Minute() != 50 || !steps[2].TS.Equal(steps[0].TS.Add(12*time.Minute)) {
		t.Fatalf("times %v, %v, %v: want tomorrow 07:50 Berlin, +10 min, +2 min", steps[0].TS, steps[1].TS, steps[2].TS)
	}
	if len(steps[1].Events) != 1 || steps[1].Events[0].Type != "enter" {
		t.Fatalf("tomorrow's walk: %+v", steps)
	}
	// Yesterday's walk comes before her last fix: each step says so.
	for _, s := range walk(`{"customer_id": "c-42", "start": {"days": 0, "at": "00:00"}, "pings": [{"lat": 52.5220, "lng": 13.4132, "after_s": 1}]}`) {
		if s.Reason != "stale_fix" {
			t.Fatalf("a walk before the last fix: %+v", s)
		}
	}
	wantError(t, c.admin("POST", "/v1/simulate", `{"customer_id": "c-nobody", "pings": [{"lat": 52.5220, "lng": 13.4132}]}`), 404, "not_found", "customer_id")
	if r := c.admin("POST", "/v1/pings?dry_run=true", `{"customer_id": "c-nobody", "lat": 52.5220, "lng": 13.4132}`); !strings.Contains(r.Raw, `"reason":"unknown_customer"`) {
		t.Fatalf("dry run for no one: %s", r.Raw)
	}
	if r := c.do("POST", "/v1/pings", "app-key", `{"customer_id": "c-nobody", "lat": 52.5220, "lng": 13.4132}`); r.Raw != `{"events":[],"offers":[]}` {
		t.Fatalf("an app is told %s", r.Raw)
	}
	for _, tt := range []struct{ body, field string }{
		{`{"customer_id": "c-42", "start": {"days": 1, "at": "7h50"}, "pings": [{"lat": 1, "lng": 1}]}`, "start.at"},
		{`{"customer_id": "c-42", "start": {"days": -1}, "pings": [{"lat": 1, "lng": 1}]}`, "start.days"},
		{`{"customer_id": "c-42", "pings": [{"lat": 1, "lng": 1, "ts": "2026-11-24T08:00:00Z", "after_s": 5}]}`, "pings[0].after_s"},
	} {
		wantError(t, c.admin("POST", "/v1/simulate", tt.body), 400, "invalid_argument", tt.field)
	}
}

// A walk with a teleport in it: the step at the door after a jump of
// kilometres is suspicious, and its offer skipped as untrusted_location.
func TestSimulateShowsATeleport(t *testing.T) {
	c := newClient(t, srv.Client(t))
	c.admin("PUT", "/v1/stores/s-alex", strings.Replace(storeAlex, `, "opening_hours": {"mon": ["07:00-20:00"]}`, "", 1))
	c.admin("PUT", "/v1/customers/c-42", customerAnna) // before the rule, which names her tier
	if r := c.admin("PUT", "/v1/rules/latte", ruleLatte); r.Status != 201 {
		t.Fatalf("rule: %d %s", r.Status, r.Raw)
	}
	r := c.admin("POST", "/v1/simulate", `{"customer_id": "c-42", "start": {"days": 1, "at": "08:30"}, "pings": [
		{"lat": 52.60, "lng": 13.60}, {"lat": 52.5219, "lng": 13.4132, "after_s": 30}, {"lat": 52.5219, "lng": 13.4133, "after_s": 240}]}`)
	var res struct {
		Steps []struct {
			Offers  []any
			Explain []struct{ Result string }
			Trust   struct {
				Level   string
				Signals []string
			}
		}
	}
	if err := json.Unmarshal([]byte(r.Raw), &res); err != nil || r.Status != 200 || len(res.Steps) != 3 {
		t.Fatalf("simulate: %d %s", r.Status, r.Raw)
	}
	jump, door := res.Steps[1], res.Steps[2]
	if jump.Trust.Level != "suspicious" || len(jump.Trust.Signals) == 0 || jump.Trust.Signals[0] != "impossible_travel" || len(jump.Offers) != 0 {
		t.Fatalf("the jump: %+v", jump)
	}
	if door.Trust.Level != "suspicious" || len(door.Offers) != 0 || len(door.Explain) == 0 || door.Explain[0].Result != "untrusted_location" {
		t.Fatalf("at the door after the jump: %+v\n%s", door, r.Raw)
	}
}

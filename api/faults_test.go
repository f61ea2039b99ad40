package api_test

import (
	"encoding/json"
	"slices"
	"testing"
)

// A document with an unknown field and other faults is answered with
// every fault at once, the unknown field among them, and nothing is
// written: a rule, a store, a customer.
func TestUnknownFieldsWithTheOtherFaults(t *testing.T) {
	c := newClient(t, srv.Client(t))
	before := keysSnapshot(t, c.rdb)
	for _, tt := range []struct {
		path, body string
		want       []string
	}{
		{"/v1/rules/r-1", `{"nmae": "Latte", "trigger": {"on": "arrive"}, "offer": {"title": {"en": "Hi"}, "body": {"en": "x"}, "valid_for_s": 5}}`,
			[]string{"nmae", "name", "trigger.on", "offer.valid_for_s"}},
		{"/v1/stores/s-1", `{"name": "Alex", "lat": 95, "lng": 13.4, "radius": 100}`, []string{"radius", "lat"}},
		{"/v1/customers/c-1", `{"first_name": "Anna", "timezone": "Mars/Olympus", "tier": "gold"}`, []string{"tier", "timezone"}},
	} {
		r := c.admin("PUT", tt.path, tt.body)
		var e struct {
			Error struct {
				Field   string
				Details []struct{ Field string }
			}
		}
		json.Unmarshal([]byte(r.Raw), &e)
		var got []string
		for _, d := range e.Error.Details {
			got = append(got, d.Field)
		}
		for _, f := range tt.want {
			if !slices.Contains(got, f) {
				t.Errorf("PUT %s: %d, faults %v, want %s among them: %s", tt.path, r.Status, got, f, r.Raw)
			}
		}
		if r.Status != 400 || e.Error.Field != tt.want[0] {
			t.Errorf("PUT %s: %d, first field %q, want 400 and %q", tt.path, r.Status, e.Error.Field, tt.want[0])
		}
	}
	if keysSnapshot(t, c.rdb) != before {
		t.Fatal("a refused document changed Redis")
	}
}

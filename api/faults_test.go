package api_test

import (
	"encoding/json"
	"slices"
	"strings"
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

// A value of the wrong kind inside a list is named with the list's index,
// which encoding/json leaves out: the marketer sees which variant, which
// tag.
func TestTypeFaultsInListsNameTheIndex(t *testing.T) {
	c := newClient(t, srv.Client(t))
	if r := c.admin("PUT", "/v1/stores/s-alex", storeAlex); r.Status != 201 {
		t.Fatalf("store: %d %s", r.Status, r.Raw)
	}
	variants := `{"name": "Two", "trigger": {"on": "enter"}, "offer": {"variants": [
 {"id": "a", "title": {"en": "A"}, "body": {"en": "a"}, "weight": 1},
 {"id": "b", "title": {"en": "B"}, "body": {"en": "b"}, "weight": 0.5}]}}`
	r := c.admin("PUT", "/v1/rules/two", variants)
	wantError(t, r, 400, "invalid_argument", "offer.variants[1].weight")
	if !strings.Contains(r.Raw, "offer.variants[1].weight must be a whole number, not number 0.5") {
		t.Fatalf("message: %s", r.Raw)
	}
	wantError(t, c.admin("PUT", "/v1/rules/tags", `{"name": "Tags", "tags": ["coffee", 7], "trigger": {"on": "enter"},
 "offer": {"title": {"en": "A"}, "body": {"en": "a"}}}`), 400, "invalid_argument", "tags[1]")
	// Outside lists the path is encoding/json's.
	wantError(t, c.admin("PUT", "/v1/rules/prio", `{"name": "P", "priority": "high", "trigger": {"on": "enter"},
 "offer": {"title": {"en": "A"}, "body": {"en": "a"}}}`), 400, "invalid_argument", "priority")
}

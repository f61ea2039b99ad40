package api_test

import (
	"encoding/json"
	"fmt"
	"testing"
)

// A simulated walk says which of its pings a phone following the answers
// would have sent, and counts them: in, a few metres on, out, in and out
// again, a ping minutes apart, the phone stays asleep only for the few
// metres inside the store. Every step is evaluated and paced either way.
func TestSimulatePhoneSends(t *testing.T) {
	c := newClient(t, srv.Client(t))
	c.admin("PUT", "/v1/stores/s-alex", storeAlex)
	c.admin("PUT", "/v1/customers/c-42", customerAnna)
	c.do("PUT", "/v1/customers/c-42/devices/d-1", "app-key", `{"fcm_token": "tok", "platform": "android"}`)
	walk := `{"customer_id": "c-42", "device_id": "d-1", "pings": [
	  {"lat": 52.5264, "lng": 13.4132, "ts": "2026-11-30T08:00:00Z"},
	  {"lat": 52.5220, "lng": 13.4132, "ts": "2026-11-30T08:03:00Z"},
	  {"lat": 52.5221, "lng": 13.4132, "ts": "2026-11-30T08:04:00Z"},
	  {"lat": 52.5264, "lng": 13.4132, "ts": "2026-11-30T08:10:00Z"},
	  {"lat": 52.5220, "lng": 13.4132, "ts": "2026-11-30T08:20:00Z"}]}`
	r := c.admin("POST", "/v1/simulate", walk)
	var res struct {
		Steps []struct {
			Events     []struct{ Type string }
			Monitor    *struct{ Regions []struct{ ID string } }
			NextPing   *struct{ DistanceM int } `json:"next_ping"`
			PhoneSends *bool                    `json:"phone_sends"`
			PhoneWake  string                   `json:"phone_wake"`
		}
		Phone *struct{ Steps, Sends int }
	}
	if err := json.Unmarshal([]byte(r.Raw), &res); err != nil || r.Status != 200 || len(res.Steps) != 5 {
		t.Fatalf("simulate: %d %v %s", r.Status, err, r.Raw)
	}
	var got []string
	for i, s := range res.Steps {
		if s.PhoneSends == nil || s.Monitor == nil || s.NextPing == nil {
			t.Fatalf("step %d: %s", i, r.Raw)
		}
		got = append(got, fmt.Sprintf("%v:%s", *s.PhoneSends, s.PhoneWake))
	}
	want := "[true:first true:region false: true:region true:region]"
	if fmt.Sprint(got) != want {
		t.Errorf("phone sends %v, want %s", got, want)
	}
	if res.Phone == nil || res.Phone.Steps != 5 || res.Phone.Sends != 4 {
		t.Errorf("phone: %+v, want 4 sends of 5 steps", res.Phone)
	}
}

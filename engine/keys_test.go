package engine

import (
	"maps"
	"testing"
)

// customerKeys names the same keys as customerKey, part by part.
func TestCustomerKeys(t *testing.T) {
	for _, id := range []string{"c-42", "", "a@b.example", "{c:x}:"} {
		parts := []string{partPresence, partProfile, partDeviceSeen, partVisits, partCaps, partRate, partTokens}
		sameKeys(t, "customerKeys", id, parts, customerKeys(id, parts...))
	}
}

// A ping's observe step names its keys from a pooled buffer: the same
// keys as customerKey, whatever the buffer held before.
func TestObserveCallKeys(t *testing.T) {
	oc := new(observeCall)
	for _, id := range []string{"c-42", "a-much-longer-customer-id@example.com", "", "x"} {
		sameKeys(t, "observeCall.customerKeys", id, observeParts[:], oc.customerKeys(id))
	}
}

// sameKeys checks keys against customerKey(id, part), part by part.
func sameKeys(t *testing.T, what, id string, parts, keys []string) {
	t.Helper()
	if len(keys) != len(parts) {
		t.Fatalf("%s: %d keys for %d parts", what, len(keys), len(parts))
	}
	for i, part := range parts {
		if keys[i] != customerKey(id, part) {
			t.Errorf("%s(%q)[%d] = %q, want %q", what, id, i, keys[i], customerKey(id, part))
		}
	}
}

// When a device was last seen: its stamp in the devices hash, or in the
// key earlier releases kept them in, whichever is newer.
func TestLastSeenMergesEarlierStamps(t *testing.T) {
	devices := map[string]string{"d-1": "{}", "d-2": "{}", "d-3": "{}", deviceSeenField("d-1"): "2000", deviceSeenField("d-2"): "1000"}
	legacy := map[string]string{"d-2": "1500", "d-3": "900", "d-4": "bad"}
	for id, want := range map[string]int64{"d-1": 2000, "d-2": 1500, "d-3": 900} {
		if got, ok := lastSeen(devices, legacy, id); !ok || got != want {
			t.Errorf("lastSeen(%s) = %d, %v; want %d", id, got, ok, want)
		}
	}
	if _, ok := lastSeen(devices, legacy, "d-4"); ok {
		t.Error("a stamp that is no number taken as one")
	}
	want := map[string]string{"d-1": "2000", "d-2": "1500", "d-3": "900"}
	if got := devicesSeen(devices, legacy); !maps.Equal(got, want) {
		t.Errorf("devicesSeen = %v, want %v", got, want)
	}
}

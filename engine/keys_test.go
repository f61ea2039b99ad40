package engine

import "testing"

// customerKeys names the same keys as customerKey, part by part.
func TestCustomerKeys(t *testing.T) {
	for _, id := range []string{"c-42", "", "a@b.example", "{c:x}:"} {
		parts := []string{partPresence, partProfile, partDeviceSeen, partVisits, partCaps, partRate, partTokens}
		keys := customerKeys(id, parts...)
		if len(keys) != len(parts) {
			t.Fatalf("%d keys for %d parts", len(keys), len(parts))
		}
		for i, part := range parts {
			if keys[i] != customerKey(id, part) {
				t.Errorf("customerKeys(%q)[%d] = %q, want %q", id, i, keys[i], customerKey(id, part))
			}
		}
	}
}

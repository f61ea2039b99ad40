package engine

import (
	"reflect"
	"testing"
	"time"
)

// The observe step's one-line answer (no event): platform, trust,
// signals, ms to the next dwell threshold, the visits open.
func TestParseQuiet(t *testing.T) {
	for _, c := range []struct {
		line string
		want observation
	}{
		{"ios trusted mocked,old_fix 1500 s-1,s:2@x", observation{platform: "ios", trust: TrustTrusted,
			signals: []string{"mocked", "old_fix"}, nextDwell: 1500 * time.Millisecond, open: []string{"s-1", "s:2@x"}}},
		{" unverified  -1 ", observation{trust: TrustUnverified, nextDwell: -1}},
		{"android suspicious impossible_travel -1 s-9", observation{platform: "android", trust: TrustSuspicious,
			signals: []string{"impossible_travel"}, nextDwell: -1, open: []string{"s-9"}}},
	} {
		if got := parseQuiet(c.line); !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseQuiet(%q) = %+v, want %+v", c.line, got, c.want)
		}
	}
}

package engine

import (
	"fmt"
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

// The customers whose pings may speculate: remembered when their step
// found consent, forgotten when it did not, and never more than two
// generations of consentSeenMax.
func TestConsentSeen(t *testing.T) {
	var e Engine
	e.learnConsent("c-1", "", nil)
	e.learnConsent("c-2", ReasonStale, nil)
	e.learnConsent("c-3", ReasonConsent, nil)
	if !e.seen.has("c-1") || !e.seen.has("c-2") || e.seen.has("c-3") {
		t.Fatalf("after the steps: c-1 %v, c-2 %v, c-3 %v; want true, true, false", e.seen.has("c-1"), e.seen.has("c-2"), e.seen.has("c-3"))
	}
	e.learnConsent("c-1", "rate_limited", &RateLimitError{})
	e.learnConsent("c-2", ReasonConsent, nil)
	if e.seen.has("c-1") || e.seen.has("c-2") {
		t.Fatal("a refused call or a withdrawn consent left the customer speculating")
	}
	e.learnConsent("c-1", "", nil)
	for i := range consentSeenMax {
		e.seen.add(fmt.Sprintf("x-%d", i))
	}
	if !e.seen.has("c-1") {
		t.Fatal("forgotten after one generation")
	}
	for i := range consentSeenMax {
		e.seen.add(fmt.Sprintf("y-%d", i))
	}
	if e.seen.has("c-1") {
		t.Fatal("still remembered after two generations")
	}
	if n := len(e.seen.cur) + len(e.seen.prev); n > 2*consentSeenMax {
		t.Fatalf("%d remembered, want at most %d", n, 2*consentSeenMax)
	}
}

package rules

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/expr-lang/expr/parser"
)

// TestAudienceSubset: what a marketer needs compiles; everything outside
// the subset is refused at save with a 422 fault at "audience" naming the
// construct, among them the attacks of issue 14.
func TestAudienceSubset(t *testing.T) {
	tests := []struct {
		name     string
		audience string
		refused  []string // parts of the faults; none: the audience compiles
	}{
		{"comparison", "customer.attributes.tier == 'gold'", nil},
		{"in a written list", "customer.attributes.tier in ['gold', 'silver']", nil},
		{"not in", "customer.locale not in ['fr', 'it']", nil},
		{"membership", "'commuter' in customer.segments && !('lapsed' in customer.segments)", nil},
		{"strings", "customer.first_name startsWith 'A' or customer.last_name endsWith 'son' or customer.id contains '-'", nil},
		{"arithmetic", "customer.attributes.visits_30d * 2 + 1 >= 7 && visit.store_visits % 2 == 0", nil},
		{"nil coalescing", "(customer.attributes.tier ?? 'none') != 'none'", nil},
		{"conditional", "visit.first_at_store ? context.local_hour < 12 : true", nil},
		{"helpers", "len(customer.segments) > 2 && lower(trim(customer.first_name)) == 'anna' && hasPrefix(customer.locale, 'de')", nil},
		{"time helpers", "now() - date(customer.attributes.since) > duration('720h')", nil},
		{"a quantifier", "any(customer.segments, hasPrefix(#, 'vip')) && none(store.tags, # == 'closed')", nil},
		{"count", "count(customer.segments, # endsWith '-2026') >= 2", nil},
		{"two quantifiers deep", "all(customer.segments, any(store.tags, # != ''))", nil},
		{"a list attribute", "one(customer.attributes.interests, # == 'tea')", nil},
		{"context", "any(context.beacons, # == 'door')", nil},

		// issue 14, point 1
		{"reduce doubling a string", `len(reduce(1..40, #acc + #acc, "x")) > 0`,
			[]string{"reduce is not allowed in an audience", "ranges (a..b) are not allowed", "+ is not allowed inside all, any, none, one or count"}},
		{"sorting a million", `len(sort(map(1..999999, -#))) > 0`,
			[]string{"sort is not allowed in an audience", "map is not allowed in an audience", "ranges (a..b) are not allowed"}},
		{"three quantifiers deep", `all(customer.segments, all(customer.segments, all(customer.segments, # != "")))`,
			[]string{"nest at most 2 deep"}},

		{"a range", "5 in 1..10", []string{"ranges (a..b) are not allowed"}},
		{"filter", "len(filter(customer.segments, # != '')) > 0", []string{"filter is not allowed in an audience"}},
		{"building strings in a loop", "any(customer.segments, # + 'x' == 'ax')", []string{"+ is not allowed inside all"}},
		{"a quantifier over something built", "all(split(customer.first_name, ''), # != 'x')",
			[]string{"all goes only over a list of the customer, the store or the context", "split is not allowed"}},
		{"repeat", "repeat(customer.first_name, 1000000) != ''", []string{"repeat is not allowed in an audience"}},
		{"let", "let a = customer.first_name; a == 'x'", []string{"let is not allowed"}},
		{"a sequence", "customer.id == 'a'; true", []string{"sequences (a; b) are not allowed"}},
		{"a method", "customer.Normalize() == nil", []string{"calling the method Normalize() is not allowed"}},
		{"a time zone loaded per ping", "date(customer.attributes.since, '2006-01-02', 'Europe/Berlin') < now()", []string{"date takes a date and at most a layout"}},
		{"timezone", "timezone('Europe/Berlin') != nil", []string{"timezone is not allowed"}},
		{"a regular expression", "customer.first_name matches '^A'", []string{"matches (regular expressions) is not allowed"}},
		{"a slice", "customer.segments[0:2] == ['a']", []string{"slices (a[i:j]) are not allowed"}},
		{"a map literal", "{'a': 1}.a == 1", []string{"map literals ({...}) are not allowed"}},
		{"the environment", "$env.customer.id == 'a'", []string{"$env is not allowed"}},
		{"too long", strings.Repeat("true && ", MaxAudienceBytes/8) + "true", []string{"at most 2000 bytes"}},
		{"too many nodes", strings.Repeat("!", MaxAudienceNodes) + "true", []string{"maximum allowed nodes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := goodRule()
			r.Audience = tt.audience
			_, err := Compile(r)
			if len(tt.refused) == 0 {
				if err != nil {
					t.Fatalf("Compile(%q) = %v, want it to compile", tt.audience, err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Compile(%q) = %v, want a ValidationError", tt.audience, err)
			}
			var msgs []string
			for _, f := range ve.Faults {
				if f.Field != "audience" || !f.Precondition {
					t.Fatalf("fault %+v, want a precondition fault at audience", f)
				}
				msgs = append(msgs, f.Message)
			}
			all := strings.Join(msgs, "\n")
			for _, want := range tt.refused {
				if !strings.Contains(all, want) {
					t.Fatalf("faults:\n%s\nwant one containing %q", all, want)
				}
			}
		})
	}
}

// unchecked compiles an audience with the run-time guard but without the
// save-time subset, every builtin enabled: what an expression that got
// past the checks, however, would run as.
func unchecked(t *testing.T, audience string) *Compiled {
	t.Helper()
	cfg := audienceConfig()
	tree, err := parser.ParseWithConfig(audience, cfg)
	if err != nil {
		t.Fatalf("parse %q: %v", audience, err)
	}
	prog, err := guardedProgram(tree, cfg)
	if err != nil {
		t.Fatalf("compile %q: %v", audience, err)
	}
	return &Compiled{Rule: &Rule{ID: "stored", Audience: audience}, audience: prog}
}

func segments(n, size int) []string {
	out := make([]string, n)
	for i := range out {
		s := fmt.Sprintf("segment-%d-", i)
		out[i] = s + strings.Repeat("x", max(0, size-len(s)))
	}
	return out
}

// TestAudienceBudget: an evaluation runs under a budget of steps and
// memory. The attacks of issue 14, run as if they had got past the save
// (they killed a replica with out of memory, took 0.54 s, took 29 s), and
// an audience the subset allows over a profile written before its lists
// were bounded, fail closed at once; the largest evaluation the subset and
// the profile limits allow stays within the budget.
func TestAudienceBudget(t *testing.T) {
	old := &Customer{ID: "c", Segments: segments(1000, 20), Attributes: map[string]any{}}
	full := &Customer{ID: "c", Segments: segments(MaxListLen, MaxListItemBytes), Attributes: map[string]any{}}
	fullStore := &Store{ID: "s", Tags: segments(MaxListLen, 10)}
	tests := []struct {
		name     string
		c        *Compiled
		customer *Customer
		store    *Store
		want     bool
		over     bool // ErrAudienceBudget
	}{
		{"reduce doubling a string", unchecked(t, `len(reduce(1..40, #acc + #acc, "x")) > 0`), old, &Store{}, false, true},
		{"sorting a million", unchecked(t, `len(sort(map(1..999999, -#))) > 0`), old, &Store{}, false, true},
		{"three alls over 1,000 segments", unchecked(t, `all(customer.segments, all(customer.segments, all(customer.segments, # != "")))`), old, &Store{}, false, true},
		{"strings built in a map", unchecked(t, `len(map(customer.segments, # + # + # + # + # + # + # + #)) > 0`), old, &Store{}, false, true},
		{"in, in a loop, over an old profile", compileOK(t, `any(customer.segments, "z" in customer.segments)`), old, &Store{}, false, true},
		{"allowed, over an old profile", compileOK(t, `all(customer.segments, any(customer.segments, # != "x"))`), old, &Store{}, false, true},
		{"the largest allowed", compileOK(t, `all(customer.segments, none(store.tags, # == "nope")) && all(store.tags, none(customer.segments, # == "nope"))`), full, fullStore, true, false},
		{"helpers in a loop, within bounds", compileOK(t, `all(customer.segments, len(customer.attributes.note) > 3 && hasPrefix(customer.attributes.note, "x") && len(store.tags) > 0)`),
			&Customer{ID: "c", Segments: full.Segments, Attributes: map[string]any{"note": strings.Repeat("x", MaxAttributeBytes)}}, fullStore, true, false},
		{"a helper in a loop, over an old profile", compileOK(t, `all(store.tags, len(customer.segments) > 0)`), old, fullStore, false, true},
		{"in a loop, within bounds", compileOK(t, `all(store.tags, # in store.tags) && any(customer.segments, "x" in customer.segments) == false`), full, fullStore, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := AudienceEnv{Customer: tt.customer, Store: tt.store, Context: map[string]any{}}
			start := time.Now()
			got, err := tt.c.Match(&env)
			took := time.Since(start)
			if tt.over != errors.Is(err, ErrAudienceBudget) || got != tt.want {
				t.Fatalf("Match = %v, %v; want %v, over budget %v", got, err, tt.want, tt.over)
			}
			if took > 2*time.Second {
				t.Fatalf("took %v", took)
			}
			if tt.c.Matches(&env) != (tt.want && !tt.over) {
				t.Fatal("Matches disagrees with Match")
			}
		})
	}
}

func compileOK(t *testing.T, audience string) *Compiled {
	t.Helper()
	r := goodRule()
	r.Audience = audience
	c, err := Compile(r)
	if err != nil {
		t.Fatalf("Compile(%q): %v", audience, err)
	}
	return c
}

// TestAudienceFailures: an ordinary run-time failure (a missing attribute
// compared with a number) does not match and is no error; a panic is an
// error, never a crash.
func TestAudienceFailures(t *testing.T) {
	c := compileOK(t, "customer.attributes.visits_30d > 2")
	env := AudienceEnv{Customer: &Customer{ID: "c", Attributes: map[string]any{}}, Store: &Store{}}
	if ok, err := c.Match(&env); ok || err != nil {
		t.Fatalf("missing attribute: Match = %v, %v; want false, nil", ok, err)
	}
	if ok, err := c.Match(nil); ok || err == nil {
		t.Fatalf("Match(nil) = %v, %v; want an error", ok, err)
	}
}

// TestAudienceStoredRuleSkipped: a rule saved before the subset, whose
// stored audience no longer compiles, is left out of the snapshot with
// its reason, and the other rules load.
func TestAudienceStoredRuleSkipped(t *testing.T) {
	lat, lng := 52.52, 13.40
	stores := []*Store{{ID: "s", Name: "S", Lat: &lat, Lng: &lng, Tags: []string{"coffee"}}}
	bad := goodRule()
	bad.ID = "bad"
	bad.Audience = `len(reduce(1..40, #acc + #acc, "x")) > 0`
	var skipped []string
	snap, err := BuildSnapshot(1, stores, []*Rule{goodRule(), bad}, func(kind, id string, err error) {
		skipped = append(skipped, fmt.Sprintf("%s %s: %v", kind, id, err))
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 1 || !strings.Contains(skipped[0], "rule bad: audience: reduce is not allowed") {
		t.Fatalf("skipped %q", skipped)
	}
	if _, ok := snap.Rules["latte"]; !ok || len(snap.Rules) != 1 {
		t.Fatalf("rules loaded: %v", snap.Rules)
	}
}

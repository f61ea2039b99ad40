package rules

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkRulesAtStore: 10,000 rules loaded, 50 of them for one store;
// evaluating one ping there runs every rule's audience and schedule, as
// the engine does between its two Redis steps.
func BenchmarkRulesAtStore(b *testing.B) {
	var stores []*Store
	for i := range 1000 {
		lat, lng := 52.3+float64(i%100)*0.005, 13.1+float64(i/100)*0.005
		stores = append(stores, &Store{ID: fmt.Sprint("s", i), Name: "S", Lat: &lat, Lng: &lng, Tags: []string{fmt.Sprint("t", i%200)}, Timezone: "Europe/Berlin"})
	}
	var rs []*Rule
	for i := range 10000 {
		r := goodRule()
		r.ID = fmt.Sprint("r", i)
		r.Priority = i % 20
		r.Audience = "customer.attributes.tier == 'gold' && context.local_hour >= 7 && 'commuter' in customer.segments"
		r.Trigger.Stores = &StoreSelector{Tags: []string{fmt.Sprint("t", i%200)}}
		rs = append(rs, r)
	}
	snap, err := BuildSnapshot(1, stores, rs, func(kind, id string, err error) { b.Fatal(kind, id, err) })
	if err != nil {
		b.Fatal(err)
	}
	cands := snap.Candidates(0, OnEnter)
	if len(cands) != 50 {
		b.Fatalf("%d rules at the store, want 50", len(cands))
	}
	cust := &Customer{ID: "c", Timezone: "Europe/Berlin", Segments: []string{"commuter"}, Attributes: map[string]any{"tier": "gold"}}
	store := snap.Stores[0]
	ts := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	env := AudienceEnv{Customer: cust, Store: store.Store, Context: map[string]any{"local_hour": 10, "local_weekday": "mon"}}
	quiet := [2]int{21 * 60, 8 * 60}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		for _, c := range snap.Candidates(0, OnEnter) {
			if c.Matches(&env) && c.Allowed(ts, store, cust, quiet) == WhenOK {
				n++
			}
		}
		if n != 50 {
			b.Fatalf("%d eligible", n)
		}
	}
}

// BenchmarkAudienceQuantifier: an audience that walks a customer's
// segments (20 of them) twice, as a marketer's "any segment starting
// with vip, and none ending in -lapsed" would.
func BenchmarkAudienceQuantifier(b *testing.B) {
	r := goodRule()
	r.Audience = `any(customer.segments, hasPrefix(#, "vip")) && none(customer.segments, hasSuffix(#, "-lapsed"))`
	c, err := Compile(r)
	if err != nil {
		b.Fatal(err)
	}
	segs := make([]string, 20)
	for i := range segs {
		segs[i] = fmt.Sprint("segment-", i)
	}
	segs[19] = "vip-gold"
	env := AudienceEnv{Customer: &Customer{ID: "c", Segments: segs}, Store: &Store{ID: "s"}, Context: map[string]any{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !c.Matches(&env) {
			b.Fatal("no match")
		}
	}
}

// BenchmarkRender: an offer's title and body for one customer, as the
// engine renders the winning candidate's push.
func BenchmarkRender(b *testing.B) {
	r := goodRule()
	r.Offer.Body = Texts{{"de", "{{.store.name}} ist {{distance .distance_m}} entfernt, gültig bis {{clock .coupon.expires_at}}{{range .customer.segments}} #{{.}}{{end}}"}, {"en", "x"}}
	c, err := Compile(r)
	if err != nil {
		b.Fatal(err)
	}
	lat, lng := 52.5, 13.4
	d := OfferData{Customer: &Customer{ID: "c", FirstName: "Anna", Locale: "de", Timezone: "Europe/Berlin", Segments: []string{"a", "b", "c"}},
		Store: &Store{ID: "s", Name: "Alexanderplatz", Lat: &lat, Lng: &lng}, DistanceM: 80, CouponCode: "K7QM2XPA9F3D", ExpiresAt: time.Unix(1800000000, 0)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if m := c.Render(d); m.Body == "" {
			b.Fatal("empty body")
		}
	}
}

package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
)

// capsRule is a rule for everyone at every store with the given caps.
func capsRule(caps rules.Caps) rules.Rule {
	return rules.Rule{ID: "capped", Name: "Capped", Priority: 50, Trigger: rules.Trigger{On: rules.OnEnter}, Caps: caps,
		Offer: rules.Offer{Title: rules.Texts{{Lang: "en", Template: "Hi"}}, Body: rules.Texts{{Lang: "en", Template: "x"}}}}
}

func addCustomer(t testing.TB, f *fixture, id string) {
	t.Helper()
	c := rules.Customer{ID: id, Timezone: "Europe/Berlin", Consent: rules.Consent{Location: true, Push: true}}
	if _, err := f.cust.Put(context.Background(), &c); err != nil {
		t.Fatal(err)
	}
}

// visit walks a customer into Alexanderplatz and out again, answering
// the entering ping's explanation for the capped rule.
func visit(t *testing.T, eng *engine.Engine, f *fixture, customer string) string {
	t.Helper()
	ctx := context.Background()
	in, out := 0.0, 400.0
	var result string
	for _, m := range []float64{in, out} {
		lat, lng := north(alexLat, alexLng, m)
		res, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: customer, Lat: lat, Lng: lng, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now()}, engine.Options{Explain: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res.Explain {
			if e.RuleID == "capped" && m == in {
				result = e.Result
			}
		}
		f.clock.Advance(time.Minute)
	}
	return result
}

func TestCaps(t *testing.T) {
	// 2026-11-23 is a Monday, 09:00 in Berlin.
	monday := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		caps      rules.Caps
		dailyMax  int
		customers []string      // who visits, in order
		gap       time.Duration // between visits
		want      []string      // the capped rule's result per visit
	}{
		{"per customer per day", rules.Caps{PerCustomerPerDay: 2}, 0, []string{"u1", "u1", "u1"}, time.Hour,
			[]string{"sent", "sent", engine.ReasonCap}},
		{"per customer per day resets the next day", rules.Caps{PerCustomerPerDay: 1}, 0, []string{"u1", "u1"}, 24 * time.Hour,
			[]string{"sent", "sent"}},
		{"per customer per week", rules.Caps{PerCustomerPerWeek: 2}, 0, []string{"u1", "u1", "u1"}, 24 * time.Hour,
			[]string{"sent", "sent", engine.ReasonCap}},
		{"per customer in total", rules.Caps{PerCustomerTotal: 1}, 0, []string{"u1", "u1"}, 10 * 24 * time.Hour,
			[]string{"sent", engine.ReasonCap}},
		{"per store per day", rules.Caps{PerStorePerDay: 2}, 0, []string{"u1", "u2", "u3"}, time.Minute,
			[]string{"sent", "sent", engine.ReasonStoreCap}},
		{"budget", rules.Caps{Total: 2}, 0, []string{"u1", "u2", "u3"}, 24 * time.Hour,
			[]string{"sent", "sent", engine.ReasonBudget}},
		{"a customer's daily limit across rules", rules.Caps{}, 2, []string{"u1", "u1", "u1"}, time.Hour,
			[]string{"sent", "sent", engine.ReasonLimit}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, srv.Client(t), capsRule(tt.caps))
			for _, id := range []string{"u1", "u2", "u3"} {
				addCustomer(t, f, id)
			}
			f.clock.t = monday
			cfg := engine.DefaultConfig()
			cfg.MaxOffersPerDay = tt.dailyMax
			eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
			for i, c := range tt.customers {
				if got := visit(t, eng, f, c); got != tt.want[i] {
					t.Fatalf("visit %d by %s: %q, want %q", i, c, got, tt.want[i])
				}
				f.clock.Advance(tt.gap)
			}
		})
	}
}

// Two replicas (two engines with their own snapshots) and many customers
// entering at once: a budget of 10 gives exactly 10 coupons, and a
// customer's daily cap of 1 never gives 2.
func TestBudgetAndCapsHoldUnderConcurrency(t *testing.T) {
	f := setup(t, srv.Client(t), capsRule(rules.Caps{Total: 10, PerCustomerPerDay: 1}))
	ctx := context.Background()
	var replicas []*engine.Engine
	for range 2 {
		live := rules.NewLive(f.rdb, quiet)
		if err := live.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, engine.New(f.rdb, live, engine.NewCodeSigner([]byte("k")), engine.DefaultConfig(), quiet, f.clock.Now))
	}
	const customers = 60
	for i := range customers {
		addCustomer(t, f, fmt.Sprint("v", i))
	}
	var mu sync.Mutex
	perCustomer := map[string]int{}
	total := 0
	var wg sync.WaitGroup
	for i := range customers {
		for k := range 4 { // each customer pings four times at once, through both replicas
			wg.Add(1)
			go func(id string, eng *engine.Engine) {
				defer wg.Done()
				lat, lng := north(alexLat, alexLng, float64(k))
				res, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: id, Lat: lat, Lng: lng, AccuracyM: 5, TS: f.clock.Now()}, engine.Options{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, o := range res.Offers {
					if o.RuleID == "capped" {
						perCustomer[id]++
						total++
					}
				}
				mu.Unlock()
			}(fmt.Sprint("v", i), replicas[k%2])
		}
	}
	wg.Wait()
	if total != 10 {
		t.Fatalf("%d coupons issued on a budget of 10", total)
	}
	for id, n := range perCustomer {
		if n > 1 {
			t.Fatalf("customer %s got %d coupons with a daily cap of 1", id, n)
		}
	}
	if n, _ := f.rdb.Get(ctx, "nc:{rule:capped}:issued").Int(); n != 10 {
		t.Fatalf("budget counter %d", n)
	}
}

// A 30 % holdout: about 30 % of matching customers, the same ones on
// every visit, get nothing, and are counted.
func TestHoldout(t *testing.T) {
	r := capsRule(rules.Caps{})
	r.HoldoutPct = 30
	f := setup(t, srv.Client(t), r)
	cfg := engine.DefaultConfig()
	cfg.MaxOffersPerDay = 0
	cfg.QuietHours = [2]int{} // 400 visits run past 21:00
	eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
	held := map[string]bool{}
	const n = 400
	for i := range n {
		id := fmt.Sprint("h", i)
		addCustomer(t, f, id)
		switch got := visit(t, eng, f, id); got {
		case engine.ReasonHoldout:
			held[id] = true
		case engine.ResultSent:
		default:
			t.Fatalf("customer %s: %q", id, got)
		}
	}
	if len(held) < n*22/100 || len(held) > n*38/100 {
		t.Fatalf("%d of %d held out, want about 30 %%", len(held), n)
	}
	// The same customers are held out on the next visit.
	f.clock.Advance(time.Hour)
	for i := range 40 {
		id := fmt.Sprint("h", i)
		if got := visit(t, eng, f, id); (got == engine.ReasonHoldout) != held[id] {
			t.Fatalf("customer %s changed group: %q", id, got)
		}
	}
	if c, _ := f.rdb.Get(context.Background(), "nc:{rule:capped}:issued:holdout").Int(); c < len(held) {
		t.Fatalf("holdout counter %d, want at least %d", c, len(held))
	}
}

// One offer at a time: a customer who walks from one store into the next
// within the gap gets nothing more; after it, they do.
func TestOneOfferAtATime(t *testing.T) {
	f := setup(t, srv.Client(t), capsRule(rules.Caps{}))
	ctx := context.Background()
	lat, lng := north(alexLat, alexLng, 600)
	if _, err := f.live.Catalog().PutStore(ctx, &rules.Store{ID: "s-next", Name: "Next door", Lat: &lat, Lng: &lng, RadiusM: 100, Tags: []string{"coffee"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.live.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	addCustomer(t, f, "u1")
	cfg := engine.DefaultConfig()
	eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
	ping := func(m float64) *engine.Result {
		la, ln := north(alexLat, alexLng, m)
		res, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: "u1", Lat: la, Lng: ln, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now()}, engine.Options{Explain: true})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := ping(0); len(res.Offers) != 1 {
		t.Fatalf("first store: %+v", res)
	}
	f.clock.Advance(2 * time.Minute)
	res := ping(600)
	if len(res.Events) == 0 || len(res.Offers) != 0 || res.Explain[0].Result != engine.ReasonRecent {
		t.Fatalf("next door two minutes later: %+v", res)
	}
	f.clock.Advance(10 * time.Minute)
	ping(1500) // leave both
	f.clock.Advance(5 * time.Minute)
	if res := ping(600); len(res.Offers) != 1 {
		t.Fatalf("later: %+v", res)
	}
}

// The engine keeps each customer's visits, for audiences and templates:
// "first visit to this store", "welcome back after 30 days".
func TestVisitHistory(t *testing.T) {
	text := func(s string) rules.Offer {
		return rules.Offer{Title: rules.Texts{{Lang: "en", Template: s}}, Body: rules.Texts{{Lang: "en", Template: "visit {{.visit.store_visits}} of {{.visit.visits}}"}}}
	}
	first := rules.Rule{ID: "first", Name: "First", Priority: 5, Trigger: rules.Trigger{On: rules.OnEnter}, Audience: "visit.first_at_store", Offer: text("Welcome")}
	back := rules.Rule{ID: "back", Name: "Back", Priority: 5, Trigger: rules.Trigger{On: rules.OnEnter}, Audience: "visit.days_since_store >= 30", Offer: text("Welcome back")}
	f := setup(t, srv.Client(t), first, back)
	addCustomer(t, f, "u1")
	f.clock.t = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	offer := func() string {
		la, ln := north(alexLat, alexLng, 0)
		res, err := settled(f.eng).Evaluate(context.Background(), engine.Ping{CustomerID: "u1", Lat: la, Lng: ln, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now()}, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		la, ln = north(alexLat, alexLng, 500)
		f.clock.Advance(10 * time.Minute)
		settled(f.eng).Evaluate(context.Background(), engine.Ping{CustomerID: "u1", Lat: la, Lng: ln, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now()}, engine.Options{})
		if len(res.Offers) == 0 {
			return ""
		}
		return res.Offers[0].Title + ": " + res.Offers[0].Body
	}
	if got := offer(); got != "Welcome: visit 1 of 1" {
		t.Fatalf("first visit: %q", got)
	}
	f.clock.Advance(24 * time.Hour)
	if got := offer(); got != "" {
		t.Fatalf("second visit the next day: %q", got)
	}
	f.clock.Advance(31 * 24 * time.Hour)
	if got := offer(); got != "Welcome back: visit 3 of 3" {
		t.Fatalf("after 31 days: %q", got)
	}
	ex, err := f.cust.Export(context.Background(), "u1")
	if err != nil || ex.Visits["n:s-alex"] != "3" {
		t.Fatalf("export: %v %v", ex.Visits, err)
	}
}

// What a customer redeemed before breaks ties between offers of equal
// priority, and audiences see their redemptions.
func TestAffinityAndRedemptions(t *testing.T) {
	offer := rules.Offer{Title: rules.Texts{{Lang: "en", Template: "{{.rule.name}}"}}, Body: rules.Texts{{Lang: "en", Template: "redeemed {{.visit.redeemed}}"}}}
	coffee := rules.Rule{ID: "a-coffee", Name: "Coffee", Tags: []string{"coffee"}, Priority: 5, Trigger: rules.Trigger{On: rules.OnEnter}, Offer: offer}
	pastry := rules.Rule{ID: "b-pastry", Name: "Pastry", Tags: []string{"pastry"}, Priority: 5, Trigger: rules.Trigger{On: rules.OnEnter}, Offer: offer}
	loyal := rules.Rule{ID: "loyal", Name: "Loyal", Priority: 9, Trigger: rules.Trigger{On: rules.OnEnter}, Audience: "visit.redeemed >= 2", Offer: offer}
	f := setup(t, srv.Client(t), coffee, pastry, loyal)
	addCustomer(t, f, "u1")
	ctx := context.Background()
	ledger := engine.NewLedger(f.rdb, engine.NewCodeSigner([]byte("test-secret")), nil, f.clock.Now)
	enter := func() engine.IssuedOffer {
		la, ln := north(alexLat, alexLng, 0)
		res, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "u1", Lat: la, Lng: ln, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now()}, engine.Options{})
		if err != nil || len(res.Offers) != 1 {
			t.Fatalf("enter: %+v %v", res, err)
		}
		la, ln = north(alexLat, alexLng, 500)
		f.clock.Advance(10 * time.Minute)
		settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: "u1", Lat: la, Lng: ln, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now()}, engine.Options{})
		return res.Offers[0]
	}
	// Equal priority, no history: the rule id decides.
	o := enter()
	if o.RuleID != "a-coffee" || o.Body != "redeemed 0" {
		t.Fatalf("first: %+v", o)
	}
	f.clock.Advance(24 * time.Hour)
	// The customer never uses coffee coupons but redeems a pastry one.
	f.live.Catalog().DeleteRule(ctx, "a-coffee")
	f.live.Refresh(ctx)
	o = enter()
	if o.RuleID != "b-pastry" {
		t.Fatalf("second: %+v", o)
	}
	if _, err := ledger.Redeem(ctx, o.CouponCode, "s-alex"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(24 * time.Hour)
	if err := f.live.Catalog().PutRule(ctx, &coffee, false); err != nil {
		t.Fatal(err)
	}
	f.live.Refresh(ctx)
	if o := enter(); o.RuleID != "b-pastry" || o.Body != "redeemed 1" {
		t.Fatalf("after a pastry redemption, pastry wins the tie: %+v", o)
	}
	ex, _ := f.cust.Export(ctx, "u1")
	if ex.Visits["aff:pastry"] != "1" || ex.Visits["redeemed"] != "1" {
		t.Fatalf("history: %v", ex.Visits)
	}
}

// The atomic step gets only the best candidate rendered; when its caps
// stop it, the next one is rendered on request and is what the customer
// gets, in the answer and in the push, and both rules' funnels say so.
func TestACappedOfferMakesWayForTheNext(t *testing.T) {
	next := rules.Rule{ID: "next", Name: "Next", Priority: 10, Trigger: rules.Trigger{On: rules.OnEnter},
		Offer: rules.Offer{Title: rules.Texts{{Lang: "en", Template: "Next at {{.store.name}}"}}, Body: rules.Texts{{Lang: "en", Template: "{{.distance_m}} m"}}}}
	f := setup(t, srv.Client(t), capsRule(rules.Caps{PerCustomerPerDay: 1}), next)
	addCustomer(t, f, "u1")
	f.clock.t = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	cfg := engine.DefaultConfig()
	cfg.MinOfferGap = 0
	eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
	want := [][2]string{{"capped", "Hi"}, {"next", "Next at Alexanderplatz"}}
	ctx := context.Background()
	for i, w := range want {
		lat, lng := north(alexLat, alexLng, 0)
		res, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: "u1", Lat: lat, Lng: lng, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now()}, engine.Options{Explain: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Offers) != 1 || res.Offers[0].RuleID != w[0] || res.Offers[0].Title != w[1] {
			t.Fatalf("visit %d: offers %+v, want %s %q", i, res.Offers, w[0], w[1])
		}
		lat, lng = north(alexLat, alexLng, 400)
		if _, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: "u1", Lat: lat, Lng: lng, AccuracyM: 5, SpeedMps: new(float64), TS: f.clock.Now().Add(time.Minute)}, engine.Options{}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Hour)
	}
	msgs, err := f.rdb.XRange(ctx, "nc:{outbox}:stream", "-", "+").Result()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("outbox: %d pushes, %v", len(msgs), err)
	}
	var p engine.Push
	if err := json.Unmarshal([]byte(msgs[1].Values["push"].(string)), &p); err != nil {
		t.Fatal(err)
	}
	// The stream holds a reference; the push is in the coupon's record.
	doc, err := f.rdb.HGet(ctx, engine.CouponRecordKey(p.CustomerID, p.ID), "push").Result()
	if err != nil {
		t.Fatalf("second push's record: %v", err)
	}
	if err := json.Unmarshal([]byte(doc), &p); err != nil || p.Title != "Next at Alexanderplatz" || p.Body != "0 m" {
		t.Fatalf("second push: %+v %v", p, err)
	}
	for rule, exp := range map[string]engine.FunnelDay{
		// capped: sent on the first visit, capped on the second.
		"capped": {Evaluated: 2, Matched: 2, Issued: 1, Skipped: map[string]int{engine.ReasonCap: 1}},
		// next: lower priority on the first, sent on the second.
		"next": {Evaluated: 2, Matched: 2, Issued: 1, Skipped: map[string]int{engine.ReasonLower: 1}},
	} {
		rep, err := engine.Funnel(ctx, f.rdb, rule, f.clock.Now(), f.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		d := rep.Days[0]
		if d.Evaluated != exp.Evaluated || d.Matched != exp.Matched || d.Issued != exp.Issued || !maps.Equal(d.Skipped, exp.Skipped) {
			t.Errorf("%s funnel: %+v, want %+v", rule, d, exp)
		}
	}
}

// A customer's counter hash past 64 fields is pruned of days and weeks
// older than the caps look at, and only those: today's and this week's
// counts stay, so the caps still hold.
func TestCapsSurviveThePruningOfOldCounters(t *testing.T) {
	f := setup(t, srv.Client(t), capsRule(rules.Caps{PerCustomerPerDay: 2}))
	addCustomer(t, f, "u1")
	f.clock.t = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC) // Monday, 09:00 in Berlin
	ctx := context.Background()
	caps := "nc:{c:u1}:caps"
	for i := 0; i < 70; i++ { // other rules' counts today: current, kept
		f.rdb.HSet(ctx, caps, fmt.Sprintf("r%d|d20261123", i), 1)
	}
	f.rdb.HSet(ctx, caps, "old|d20200101", 1, "old|w202001", 1)
	cfg := engine.DefaultConfig()
	cfg.MaxOffersPerDay, cfg.MinOfferGap = 0, 0
	eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
	for i, want := range []string{"sent", "sent", engine.ReasonCap} {
		if got := visit(t, eng, f, "u1"); got != want {
			t.Fatalf("visit %d: %q, want %q", i, got, want)
		}
		f.clock.Advance(time.Hour)
	}
	left := f.rdb.HGetAll(ctx, caps).Val()
	if left["old|d20200101"] != "" || left["old|w202001"] != "" {
		t.Error("counts of 2020 were kept")
	}
	if left["r5|d20261123"] != "1" || left["capped|d20261123"] != "2" {
		t.Errorf("today's counts were pruned: r5 %q, capped %q", left["r5|d20261123"], left["capped|d20261123"])
	}
}

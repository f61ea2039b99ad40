package engine_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/sandbox"
	"github.com/nearcast/nearcast/rules"
)

// The scores against values worked out by hand.
//
// NPS of 10, 10, 9, 8, 7, 6, 3, 0, 10, 9: 5 promoters, 2 passives, 3
// detractors of 10: 50% − 30% = 20; the variance of +1/0/−1 is 0.5 + 0.3
// − 0.2² = 0.76, the standard error √(0.76/10) = 0.2757, so 20 ± 54.0:
// −34.0 to 74.0.
//
// CSAT of 5, 4, 4, 3, 5: mean 4.2; the squared deviations add up to 2.8,
// the sample's standard deviation √(2.8/4) = 0.8367, the standard error
// 0.3742, so 4.2 ± 0.733: 3.467 to 4.933.
func TestScoresAgainstHandComputedValues(t *testing.T) {
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 0.05 {
			t.Fatalf("%s: %.3f, want %.3f", what, got, want)
		}
	}
	nps := engine.NPSOf([]int{1, 0, 0, 1, 0, 0, 1, 1, 1, 2, 3}) // answers of 0 to 10
	if nps.Answers != 10 || nps.Promoters != 5 || nps.Passives != 2 || nps.Detractors != 3 || nps.EnoughData {
		t.Fatalf("%+v", nps)
	}
	near("nps", nps.Score, 20)
	near("nps low", nps.Low, -34.0)
	near("nps high", nps.High, 74.0)
	csat := engine.CSATOf([]int{0, 0, 1, 2, 2}) // answers of 1 to 5
	near("csat", csat.Mean, 4.2)
	near("csat low", csat.Low, 3.467)
	near("csat high", csat.High, 4.933)
	// All promoters: 100, and the interval cannot pass it.
	if all := engine.NPSOf([]int{0, 0, 0, 0, 0, 0, 0, 0, 0, 40, 0}); all.Score != 100 || all.High != 100 || !all.EnoughData {
		t.Fatalf("%+v", all)
	}
}

// feedbackRules are a question after a visit of 5 minutes or more, a
// recovery offer for a customer whose last NPS was a detractor's, and a
// promotion for everyone else (and for a detractor two weeks on), as the
// demo writes them.
func feedbackRules() []rules.Rule {
	texts := func(s string) rules.Texts { return rules.Texts{{Lang: "en", Template: s}} }
	anyHour := false
	return []rules.Rule{
		{ID: "ask", Name: "How was it?", Priority: 5,
			Trigger:  rules.Trigger{On: rules.OnExit, Stores: &rules.StoreSelector{IDs: []string{"s-alex"}}},
			Audience: "visit.duration_s >= 300",
			When:     &rules.When{StoreOpen: &anyHour},
			Offer: rules.Offer{Kind: rules.KindFeedback, Question: &rules.Question{Scale: rules.ScaleNPS, Comment: true},
				Title: texts("How was {{.store.name}}?"), Body: texts("How likely are you to recommend us, 0 to 10?")}},
		{ID: "recovery", Name: "Sorry", Priority: 50, Caps: rules.Caps{PerCustomerPerWeek: 1},
			Trigger:  rules.Trigger{On: rules.OnEnter, Stores: &rules.StoreSelector{IDs: []string{"s-alex"}}},
			Audience: "customer.last_nps >= 0 && customer.last_nps <= 6 && visit.days_since_feedback <= 14",
			When:     &rules.When{StoreOpen: &anyHour},
			Offer:    rules.Offer{Title: texts("We are sorry"), Body: texts("Your next coffee is on us")}},
		{ID: "promo", Name: "Promotion", Priority: 40,
			Trigger:  rules.Trigger{On: rules.OnEnter, Stores: &rules.StoreSelector{IDs: []string{"s-alex"}}},
			Audience: "customer.last_nps < 0 || customer.last_nps > 6 || visit.days_since_feedback > 14",
			When:     &rules.When{StoreOpen: &anyHour},
			Offer:    rules.Offer{Title: texts("20% off"), Body: texts("Today at {{.store.name}}")}},
	}
}

// A scripted week (and a bit) in the simulator: the customer gets the
// promotion on Monday, is asked how it was as they leave after ten
// minutes, answers 3 (a detractor); on Wednesday they get the recovery
// offer, not the promotion; from two weeks after their answer, the
// promotion again. A short visit is not asked about.
func TestFeedbackScriptedWeek(t *testing.T) {
	rdb := srv.Client(t)
	ctx := context.Background()
	f := setup(t, rdb, feedbackRules()...)
	anna := rules.Customer{ID: "c-42", FirstName: "Anna", Locale: "en", Timezone: "Europe/Berlin",
		Consent: rules.Consent{Location: true, Push: true, Feedback: true}, Attributes: map[string]any{"tier": "gold"}}
	if _, err := f.cust.Put(ctx, &anna); err != nil {
		t.Fatal(err)
	}
	cfg := engine.DefaultConfig()
	cfg.QuietHours = [2]int{}
	f.eng = engine.New(rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, f.clock.Now)
	monday := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	far, _ := north(alexLat, alexLng, 2000)
	three := 3
	at := func(day int, hour, min int) time.Time {
		return monday.AddDate(0, 0, day).Add(time.Duration(hour*60+min) * time.Minute)
	}
	pings := []engine.Ping{
		{Lat: alexLat, Lng: alexLng, TS: at(0, 0, 0), AccuracyM: 5},              // Monday: in, the promotion
		{Lat: far, Lng: alexLng, TS: at(0, 0, 10), AccuracyM: 5},                 // out after 10 minutes: asked
		{Lat: far, Lng: alexLng, TS: at(0, 0, 15), AccuracyM: 5, Answer: &three}, // answers 3
		{Lat: alexLat, Lng: alexLng, TS: at(2, 0, 0), AccuracyM: 5},              // Wednesday: the recovery offer
		{Lat: far, Lng: alexLng, TS: at(2, 0, 2), AccuracyM: 5},                  // out after 2 minutes: not asked
		{Lat: alexLat, Lng: alexLng, TS: at(16, 0, 0), AccuracyM: 5},             // two weeks on: the promotion
		{Lat: far, Lng: alexLng, TS: at(16, 0, 1), AccuracyM: 5, Answer: &three}, // an answer with no new question
	}
	steps, err := f.eng.Simulate(ctx, sandbox.Miniredis, "c-42", pings)
	if err != nil {
		t.Fatal(err)
	}
	got := func(i int) string {
		var out []string
		for _, o := range steps[i].Offers {
			s := o.RuleID
			if o.Kind != "" {
				s += "(" + o.Kind + ")"
			}
			out = append(out, s)
		}
		return strings.Join(out, " ")
	}
	want := []string{"promo", "ask(feedback)", "", "recovery", "", "promo", ""}
	for i, w := range want {
		if got(i) != w {
			t.Fatalf("step %d (%s): offers %q, want %q; explained %+v", i, steps[i].TS, got(i), w, steps[i].Explain)
		}
	}
	if a := steps[2].Answer; a == nil || a.Result != "answered" || a.Score != 3 || a.FeedbackID != steps[1].Offers[0].CouponCode {
		t.Fatalf("the answer: %+v", a)
	}
	if a := steps[6].Answer; a == nil || a.Result != "answered_already" {
		t.Fatalf("a second answer to the one question: %+v", a)
	}
	for _, x := range steps[3].Explain {
		if x.RuleID == "promo" && x.Result != engine.ReasonAudience {
			t.Fatalf("the promotion on Wednesday: %+v", x)
		}
	}
	// Nothing of the walk is kept outside the sandbox.
	if n := rdb.Exists(ctx, "nc:{c:c-42}:caps").Val(); n != 0 {
		t.Fatalf("the simulation wrote the customer's caps")
	}
}

// Questions need their own consent, and answers come once, in time, on
// the scale; a question is no coupon; the scores count each answer.
func TestFeedbackAnswers(t *testing.T) {
	rdb := srv.Client(t)
	ctx := context.Background()
	f := setup(t, rdb, feedbackRules()...)
	cfg := engine.DefaultConfig()
	cfg.QuietHours, cfg.MaxOffersPerDay, cfg.MinOfferGap = [2]int{}, 0, 0
	signer := engine.NewCodeSigner([]byte("k"))
	f.eng = engine.New(rdb, f.live, signer, cfg, quiet, f.clock.Now)
	ledger := engine.NewLedger(rdb, signer, quiet, f.clock.Now)
	walk := func() *engine.Result {
		f.ping(t, 0, engine.Options{})
		f.clock.Advance(10 * time.Minute)
		return f.ping(t, 2000, engine.Options{Explain: true})
	}
	// Anna (setup's) has not said she may be asked.
	res := walk()
	if len(res.Offers) != 0 {
		t.Fatalf("asked without consent: %+v", res.Offers)
	}
	anna := rules.Customer{ID: "c-42", FirstName: "Anna", Locale: "de", Timezone: "Europe/Berlin",
		Consent: rules.Consent{Location: true, Push: true, Feedback: true}, Attributes: map[string]any{"tier": "gold"}}
	if _, err := f.cust.Put(ctx, &anna); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	res = walk()
	if len(res.Offers) != 1 || res.Offers[0].Kind != rules.KindFeedback {
		t.Fatalf("not asked: %+v %+v", res.Offers, res.Explain)
	}
	id := res.Offers[0].CouponCode
	if err := ledger.Answer(ctx, id, "c-7", 9, ""); !errors.Is(err, rules.ErrNotFound) {
		t.Fatalf("another customer's answer: %v", err)
	}
	var se *engine.ScoreError
	if err := ledger.Answer(ctx, id, "c-42", 11, ""); !errors.As(err, &se) || se.Hi != 10 {
		t.Fatalf("a score of 11: %v", err)
	}
	if err := ledger.Answer(ctx, id, "c-42", 9, strings.Repeat("x", rules.MaxCommentBytes+1)); err == nil {
		t.Fatal("a comment too long taken")
	}
	if _, err := ledger.Redeem(ctx, id, "s-alex"); !errors.Is(err, engine.ErrNotACoupon) {
		t.Fatalf("a question redeemed: %v", err)
	}
	if err := ledger.Answer(ctx, id, "c-42", 9, "great flat white"); err != nil {
		t.Fatal(err)
	}
	if err := ledger.Answer(ctx, id, "c-42", 10, ""); !errors.Is(err, engine.ErrAnswered) {
		t.Fatalf("a second answer: %v", err)
	}
	cp, err := ledger.Get(ctx, id)
	if err != nil || cp.Kind != rules.KindFeedback || cp.Score == nil || *cp.Score != 9 || cp.AnsweredAt == nil {
		t.Fatalf("the question: %+v %v", cp, err)
	}
	// Asked again at the store within 30 days: no.
	f.clock.Advance(24 * time.Hour)
	res = walk()
	for _, x := range res.Explain {
		if x.RuleID == "ask" && x.Result != "feedback_limit" {
			t.Fatalf("asked again within the gap: %+v", x)
		}
	}
	// Late: a question not answered within its 7 days.
	f.clock.Advance(31 * 24 * time.Hour)
	res = walk()
	if len(res.Offers) != 1 {
		t.Fatalf("not asked a month on: %+v", res.Explain)
	}
	f.clock.Advance(7*24*time.Hour + time.Minute)
	if err := ledger.Answer(ctx, res.Offers[0].CouponCode, "c-42", 5, ""); !errors.Is(err, engine.ErrLate) {
		t.Fatalf("a late answer: %v", err)
	}
	// Export has the answer; erasure takes it.
	ex, err := f.cust.Export(ctx, "c-42")
	if err != nil || ex.Coupons[id]["comment"] != "great flat white" || ex.Coupons[id]["score"] != "9" {
		t.Fatalf("export: %+v %v", ex.Coupons[id], err)
	}
	defer func() {
		if err := f.cust.Delete(ctx, "c-42"); err != nil {
			t.Fatal(err)
		}
		if k := findAnywhere(t, rdb, "great flat white"); k != "" {
			t.Fatalf("the comment outlived the erasure in %s", k)
		}
	}()
	day := f.clock.Now().AddDate(0, 0, -60)
	rep, err := engine.StoreFeedback(ctx, rdb, "s-alex", day, f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Asked != 2 || rep.Answered != 1 || rep.NPS == nil || rep.NPS.Promoters != 1 || rep.NPS.Distribution[9] != 1 || len(rep.Weeks) != 1 {
		t.Fatalf("the store's scores: %+v nps %+v", rep, rep.NPS)
	}
	rr, err := engine.RuleFeedback(ctx, rdb, "ask", day, f.clock.Now())
	if err != nil || rr.Asked != 2 || rr.Answered != 1 || rr.NPS.Score != 100 {
		t.Fatalf("the rule's scores: %+v %v", rr, err)
	}
}

package engine_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
)

// withMetrics is the fixture's engine again, counting into a registry of
// its own.
func withMetrics(t *testing.T, f *fixture) (*engine.Engine, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := engine.DefaultConfig()
	cfg.Metrics = engine.NewMetrics(reg, f.rdb, f.live)
	return engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("test-secret")), cfg, quiet, f.clock.Now), reg
}

// decisions reads nearcast_decisions_total for one result.
func decisions(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "nearcast_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func explained(res *engine.Result) map[string]string {
	got := map[string]string{}
	for _, x := range res.Explain {
		got[x.RuleID] = x.Result
	}
	return got
}

// TestAudienceErrorFailsClosed: an audience the subset allows, run for a
// profile written before profiles were bounded (1,000 segments, where one
// quantifier inside another once took seconds), goes over its budget: the
// rule does not fire, the reason is audience_error in the explanation,
// the funnel and the metrics, the ping answers at once, and the other
// rules go on.
func TestAudienceErrorFailsClosed(t *testing.T) {
	heavy := rules.Rule{ID: "heavy", Name: "Heavy", Priority: 50,
		Trigger:  rules.Trigger{On: rules.OnEnter},
		Audience: `all(customer.segments, any(customer.segments, # != "nope"))`,
		Offer:    rules.Offer{Title: rules.Texts{{Lang: "en", Template: "Heavy"}}, Body: rules.Texts{{Lang: "en", Template: "x"}}},
	}
	f := setup(t, srvOrMini(t), heavy)
	ctx := context.Background()
	anna, err := f.cust.Get(ctx, "c-42")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		anna.Segments = append(anna.Segments, fmt.Sprint("segment-", i))
	}
	if err := anna.Normalize(); err == nil {
		t.Fatal("1,000 segments pass Normalize")
	}
	if _, err := f.cust.PutMany(ctx, []*rules.Customer{anna}); err != nil { // as written before the bound
		t.Fatal(err)
	}
	eng, reg := withMetrics(t, f)
	lat, lng := north(alexLat, alexLng, 10)
	start := time.Now()
	res, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng, TS: f.clock.Now()}, engine.Options{Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the ping took %v", took)
	}
	if got := explained(res); got["heavy"] != engine.ReasonAudienceError || got["latte"] != engine.ResultSent {
		t.Fatalf("explain %v, want heavy: audience_error, latte: sent", got)
	}
	if len(res.Offers) != 1 || res.Offers[0].RuleID != "latte" {
		t.Fatalf("offers %+v, want latte's", res.Offers)
	}
	if n := decisions(t, reg, engine.ReasonAudienceError); n != 1 {
		t.Fatalf("nearcast_decisions_total{result=audience_error} = %v, want 1", n)
	}
	rep, err := engine.Funnel(ctx, f.rdb, "heavy", f.clock.Now(), f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d := rep.Days[0]; d.Skipped[engine.ReasonAudienceError] != 1 || d.Evaluated != 1 || d.Matched != 0 {
		t.Fatalf("funnel %+v, want one evaluation skipped for audience_error", d)
	}
}

// TestRenderErrorSendsNothing: an offer whose text, for a profile within
// its limits, comes out longer than 4 KB is not sent (it used to go out
// as the template's source): the reason is render_error, it reserves none
// of its rule's budget, and the next offer is sent instead.
func TestRenderErrorSendsNothing(t *testing.T) {
	everySegment := "{{range .customer.segments}}{{.}}{{end}}"
	loud := rules.Rule{ID: "loud", Name: "Loud", Priority: 50,
		Trigger: rules.Trigger{On: rules.OnEnter},
		Caps:    rules.Caps{Total: 10},
		Offer:   rules.Offer{Title: rules.Texts{{Lang: "de", Template: "Hallo"}}, Body: rules.Texts{{Lang: "de", Template: everySegment}}},
	}
	f := setup(t, srvOrMini(t), loud)
	ctx := context.Background()
	anna, err := f.cust.Get(ctx, "c-42")
	if err != nil {
		t.Fatal(err)
	}
	for i := range rules.MaxListLen {
		s := fmt.Sprint("segment-", i, "-")
		anna.Segments = append(anna.Segments, s+strings.Repeat("x", rules.MaxListItemBytes-len(s)))
	}
	if _, err := f.cust.Put(ctx, anna); err != nil {
		t.Fatal(err)
	}
	eng, reg := withMetrics(t, f)
	lat, lng := north(alexLat, alexLng, 10)
	res, err := settled(eng).Evaluate(ctx, engine.Ping{CustomerID: "c-42", DeviceID: "d-1", Lat: lat, Lng: lng, TS: f.clock.Now()}, engine.Options{Explain: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := explained(res); got["loud"] != engine.ReasonRenderError || got["latte"] != engine.ResultSent {
		t.Fatalf("explain %v, want loud: render_error, latte: sent", got)
	}
	for _, o := range res.Offers {
		if o.RuleID != "latte" || strings.Contains(o.Title+o.Body, "{{") {
			t.Fatalf("offer %+v", o)
		}
	}
	if n := decisions(t, reg, engine.ReasonRenderError); n != 1 {
		t.Fatalf("nearcast_decisions_total{result=render_error} = %v, want 1", n)
	}
	if n, _ := f.rdb.Get(ctx, "nc:{rule:loud}:issued").Int(); n != 0 {
		t.Fatalf("loud's budget spent %d", n)
	}
	rep, err := engine.Funnel(ctx, f.rdb, "loud", f.clock.Now(), f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d := rep.Days[0]; d.Skipped[engine.ReasonRenderError] != 1 || d.Matched != 1 || d.Issued != 0 {
		t.Fatalf("funnel %+v, want one match skipped for render_error", d)
	}
}

package engine_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// anyTrust is a rule that takes every fix, a suspicious one too.
var anyTrust = rules.Rule{ID: "anyone", Name: "Anyone", Priority: 50, Trigger: rules.Trigger{On: rules.OnEnter},
	Offer: rules.Offer{Title: rules.Texts{{Lang: "en", Template: "Hi"}}, Body: rules.Texts{{Lang: "en", Template: "x"}}, MinTrust: rules.TrustAny}}

// enter sends one fix at the door of Alexanderplatz, with signals.
func (f *fixture) enter(t *testing.T, customer string, opt engine.Options, signals ...string) *engine.Result {
	t.Helper()
	res, err := settled(f.eng).Evaluate(context.Background(), engine.Ping{CustomerID: customer, DeviceID: "d-1", Lat: alexLat, Lng: alexLng,
		AccuracyM: 10, TS: f.clock.Now(), Signals: signals}, opt)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A suspicious fix is recorded in the customer's fraud record (counts,
// signals, devices; no coordinate) and the index, with the coupon a rule
// with min_trust any issued it; a fix not suspicious, or a dry run,
// records nothing. Its coupon, redeemed, says it was issued under
// suspicion, and is counted; the report lists the customer with all of
// it. Another such coupon is refused when the operator says so, and stays
// as it was.
func TestSuspiciousFixRecordedAndRedeemed(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t), anyTrust)
			ctx := context.Background()
			fraudKey := "nc:{c:c-42}:fraud"
			day := f.clock.Now().UTC().Format("20060102")

			// Not suspicious, and a suspicious dry run: nothing recorded.
			addCustomer(t, f, "c-honest")
			if res := f.enter(t, "c-honest", engine.Options{}); len(res.Offers) != 1 {
				t.Fatalf("an honest entry: %+v", res)
			}
			if res := f.enter(t, "c-42", engine.Options{DryRun: true}, engine.SignalMocked); res.Trust == nil || res.Trust.Level != engine.TrustSuspicious {
				t.Fatalf("a mocked dry run: %+v", res.Trust)
			}
			for _, k := range []string{"nc:{c:c-honest}:fraud", fraudKey, "nc:{fraud}:index"} {
				if n := f.rdb.Exists(ctx, k).Val(); n != 0 {
					t.Fatalf("%s written for a fix not suspicious, or a dry run", k)
				}
			}

			// A mocked fix at the door: the rule that takes any fix issues.
			res := f.enter(t, "c-42", engine.Options{}, engine.SignalMocked)
			if len(res.Offers) != 1 || res.Offers[0].RuleID != "anyone" {
				t.Fatalf("a mocked entry: %+v", res)
			}
			code := res.Offers[0].CouponCode
			rec := f.rdb.HGetAll(ctx, fraudKey).Val()
			if rec["f:"+day] != "1" || rec["s:"+day+":mocked"] != "1" || rec["v:"+day+":d-1"] != "1" || rec["i:"+day] != "1" || rec["last"] == "" {
				t.Fatalf("the fraud record: %v", rec)
			}
			for field, v := range rec {
				if slices.Contains([]string{"52.5219", "13.4132"}, v) || len(field) > 40 {
					t.Fatalf("the fraud record keeps %s=%s", field, v)
				}
			}
			if ttl := f.rdb.PTTL(ctx, fraudKey).Val(); ttl <= 0 || ttl > engine.FraudRetention {
				t.Fatalf("the fraud record's TTL: %s", ttl)
			}
			if score, err := f.rdb.ZScore(ctx, "nc:{fraud}:index", "c-42").Result(); err != nil || int64(score) != f.clock.Now().UnixMilli() {
				t.Fatalf("the index: %v %v", score, err)
			}

			ledger := engine.NewLedger(f.rdb, engine.NewCodeSigner([]byte("test-secret")), quiet, f.clock.Now)
			got, err := ledger.Get(ctx, code)
			if err != nil || !got.IssuedUnderSuspicion || !slices.Equal(got.SuspicionSignals, []string{"mocked"}) {
				t.Fatalf("get: %+v %v", got, err)
			}
			f.clock.Advance(time.Minute)
			cp, err := ledger.Redeem(ctx, code, "s-alex")
			if err != nil || cp.Status != "redeemed" || !cp.IssuedUnderSuspicion || !slices.Equal(cp.SuspicionSignals, []string{"mocked"}) {
				t.Fatalf("redeem: %+v %v", cp, err)
			}
			if n := f.rdb.HGet(ctx, fraudKey, "r:"+day).Val(); n != "1" {
				t.Fatalf("redemptions under suspicion: %q", n)
			}

			// Another customer's: refused, and nothing changes.
			addCustomer(t, f, "c-7")
			res = f.enter(t, "c-7", engine.Options{}, engine.SignalMocked)
			if len(res.Offers) != 1 {
				t.Fatalf("c-7's mocked entry: %+v", res)
			}
			code7 := res.Offers[0].CouponCode
			before := keysSnapshotOf(t, f)
			strict := engine.NewLedger(f.rdb, engine.NewCodeSigner([]byte("test-secret")), quiet, f.clock.Now).RefuseSuspicious(true)
			var sc *engine.SuspiciousCouponError
			if _, err := strict.Redeem(ctx, code7, "s-alex"); !errors.As(err, &sc) || !slices.Equal(sc.Signals, []string{"mocked"}) {
				t.Fatalf("refused: %v", err)
			}
			if after := keysSnapshotOf(t, f); !maps.Equal(after, before) {
				for k, v := range after {
					if before[k] != v {
						t.Errorf("a refused redemption changed %s: %q → %q", k, before[k], v)
					}
				}
				t.FailNow()
			}
			if got, err := strict.Get(ctx, code7); err != nil || got.Status != "active" {
				t.Fatalf("after the refusal: %+v %v", got, err)
			}
			// A coupon not issued under suspicion is redeemed as ever.
			honest, _ := f.rdb.SMembers(ctx, "nc:{c:c-honest}:coupons").Result()
			if len(honest) != 1 {
				t.Fatalf("c-honest's coupons: %v", honest)
			}
			if cp, err := strict.Redeem(ctx, honest[0], "s-alex"); err != nil || cp.IssuedUnderSuspicion {
				t.Fatalf("an honest coupon: %+v %v", cp, err)
			}

			// The report: c-42 (one suspicious fix, its coupon redeemed)
			// after c-7 (the same fixes, later), both riskier than none.
			f.clock.Advance(time.Minute)
			f.enter(t, "c-7", engine.Options{}, engine.SignalMocked)
			rep, err := engine.Fraud(ctx, f.rdb, f.clock.Now(), f.clock.Now(), 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Customers) != 2 || rep.Customers[0].CustomerID != "c-7" || rep.Customers[1].CustomerID != "c-42" || rep.Truncated {
				t.Fatalf("the report: %+v", rep)
			}
			c7, c42 := rep.Customers[0], rep.Customers[1]
			if c7.SuspiciousFixes != 2 || c7.CouponsIssued != 1 || c7.CouponsRedeemed != 0 || c7.Signals["mocked"] != 2 {
				t.Errorf("c-7: %+v", c7)
			}
			if c42.SuspiciousFixes != 1 || c42.CouponsIssued != 1 || c42.CouponsRedeemed != 1 || len(c42.Devices) != 1 ||
				c42.Devices[0] != (engine.FraudDevice{DeviceID: "d-1", SuspiciousFixes: 1}) || c42.LastSuspicious == nil {
				t.Errorf("c-42: %+v", c42)
			}
			if rep.Totals != (engine.FraudTotals{Customers: 2, SuspiciousFixes: 3, CouponsIssued: 2, CouponsRedeemed: 1}) {
				t.Errorf("totals: %+v", rep.Totals)
			}
			if rep, err := engine.Fraud(ctx, f.rdb, f.clock.Now(), f.clock.Now(), 1); err != nil || len(rep.Customers) != 1 || !rep.Truncated {
				t.Errorf("limit 1: %+v %v", rep, err)
			}
			if rep, err := engine.Fraud(ctx, f.rdb, f.clock.Now().AddDate(0, 0, -9), f.clock.Now().AddDate(0, 0, -2), 0); err != nil || len(rep.Customers) != 0 {
				t.Errorf("days before: %+v %v", rep, err)
			}
		})
	}
}

// Erasure removes everything the fraud report keeps of a customer: their
// fraud record and their place in the index.
func TestErasureRemovesTheFraudRecord(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t), anyTrust)
			ctx := context.Background()
			addCustomer(t, f, "c-7")
			for _, id := range []string{"c-42", "c-7"} {
				if res := f.enter(t, id, engine.Options{}, engine.SignalMocked); len(res.Offers) != 1 {
					t.Fatalf("%s: %+v", id, res)
				}
			}
			ex, err := f.cust.Export(ctx, "c-42")
			if err != nil || ex.LocationRisk["f:"+f.clock.Now().UTC().Format("20060102")] != "1" {
				t.Fatalf("the export's location risk: %+v %v", ex, err)
			}
			if err := f.cust.Delete(ctx, "c-42"); err != nil {
				t.Fatal(err)
			}
			f.rdb.Del(ctx, "nc:{c:c-42}:tokens") // kept on purpose (TestEraseCustomer)
			if where := findAnywhere(t, f.rdb, "c-42"); where != "" {
				t.Fatalf("after erasure, %s still names the customer", where)
			}
			if n := f.rdb.Exists(ctx, "nc:{c:c-42}:fraud").Val(); n != 0 {
				t.Fatal("the fraud record outlives the erasure")
			}
			rep, err := engine.Fraud(ctx, f.rdb, f.clock.Now(), f.clock.Now(), 0)
			if err != nil || len(rep.Customers) != 1 || rep.Customers[0].CustomerID != "c-7" {
				t.Fatalf("the report after erasure: %+v %v", rep, err)
			}
		})
	}
}

// keysSnapshotOf is every key's dump (a hash's fields: a dump of a
// hash table follows the order of the table, which a read may change as
// it rehashes).
func keysSnapshotOf(t *testing.T, f *fixture) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := redistest.Keys(ctx, f.rdb, "*")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		if f.rdb.Type(ctx, k).Val() == "hash" {
			out[k] = fmt.Sprint(f.rdb.HGetAll(ctx, k).Val()) // fmt sorts a map's keys
		} else {
			out[k] = f.rdb.Dump(ctx, k).Val()
		}
	}
	return out
}

package engine_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// The intervals against published values: Wilson's for 81 of 263 and
// Newcombe's hybrid score interval for 56/70 − 48/80 are the worked
// examples of Newcombe (1998); 8 of 100 and 0 of 10 checked by hand.
func TestIntervalsKnownValues(t *testing.T) {
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 0.00005 {
			t.Fatalf("%s: %.5f, want %.4f", what, got, want)
		}
	}
	w := engine.Wilson(81, 263)
	near("81/263 low", w.Low, 0.2553)
	near("81/263 high", w.High, 0.3662)
	w = engine.Wilson(8, 100)
	near("8/100 low", w.Low, 0.0411)
	near("8/100 high", w.High, 0.1500)
	w = engine.Wilson(0, 10)
	near("0/10 low", w.Low, 0)
	near("0/10 high", w.High, 0.2775)
	d := engine.Newcombe(engine.Wilson(56, 70), engine.Wilson(48, 80))
	near("difference", d.Value, 0.2)
	near("difference low", d.Low, 0.0524)
	near("difference high", d.High, 0.3339)
	if n := engine.OffersToSeparate(0.04, 0.08, 0.8); n < 850 || n > 950 {
		t.Fatalf("offers to separate 4%% and 8%%: %d", n)
	}
}

// simulateBandit offers n times to customers who redeem variant i with
// probability rates[i], choosing with Thompson from counts refreshed
// every refresh offers (the engine's copy, read every few seconds). It
// answers the offers each variant got after the first warm offers and
// the regret: redemptions lost against always offering the best.
func simulateBandit(seed uint64, rates []float64, n, warm, refresh int) (after []int, regret float64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	live := make([]engine.Arm, len(rates))
	copyOf := make([]engine.Arm, len(rates))
	for i := range live {
		live[i].Weight, copyOf[i].Weight = 1, 1
	}
	best := 0
	for i, r := range rates {
		if r > rates[best] {
			best = i
		}
	}
	after = make([]int, len(rates))
	for k := range n {
		if k%refresh == 0 {
			copy(copyOf, live)
		}
		v := engine.Thompson(copyOf, rules.DefaultMinArm, rules.DefaultFloorPct, rng.Float64)
		live[v].Issued++
		if rng.Float64() < rates[v] {
			live[v].Redeemed++
		}
		regret += rates[best] - rates[v]
		if k >= warm {
			after[v]++
		}
	}
	return after, regret
}

// The bandit, against known redemption rates of 4%, 5% and 8%, sends the
// best variant to most offers once it has its minimum of each (300
// offers), and loses little against always sending the best.
func TestBanditFindsTheBestVariant(t *testing.T) {
	rates := []float64{0.04, 0.05, 0.08}
	const n, warm, runs = 5000, 1000, 20
	var share, regret, worst float64 = 0, 0, 1
	for seed := range uint64(runs) {
		after, r := simulateBandit(seed+1, rates, n, warm, 50)
		s := float64(after[2]) / float64(n-warm)
		share += s / runs
		regret += r / runs
		worst = min(worst, s)
	}
	fixed := (rates[2] - (rates[0]+rates[1]+rates[2])/3) * n // a fixed even split's regret
	t.Logf("best variant's share after %d offers: %.1f%% on average over %d runs (lowest %.1f%%); regret %.1f redemptions of %d offers (an even split's: %.1f)",
		warm, 100*share, runs, 100*worst, regret, n, fixed)
	if share < 0.70 {
		t.Fatalf("the best variant got %.1f%% of the offers after the warm-up, want at least 70%%", 100*share)
	}
	if regret >= fixed {
		t.Fatalf("the bandit lost %.1f redemptions, an even split %.1f", regret, fixed)
	}
	// The floor: each variant keeps about its share of the offers.
	after, _ := simulateBandit(99, rates, n, warm, 50)
	for i, a := range after[:2] {
		if s := float64(a) / float64(n-warm); s < 0.03 {
			t.Fatalf("variant %d got %.1f%% after the warm-up: under its floor of %.0f%%", i, 100*s, rules.DefaultFloorPct)
		}
	}
}

// A fixed 50/50 split's Wilson intervals separate 4% from 8% at the
// sample size OffersToSeparate predicts (about 900 a variant) in about
// 80% of experiments, and seldom at a quarter of it.
func TestFixedSplitSeparatesAtThePredictedSize(t *testing.T) {
	n := engine.OffersToSeparate(0.04, 0.08, 0.8)
	separated := func(size int) float64 {
		rng := rand.New(rand.NewPCG(7, uint64(size)))
		hits := 0
		const runs = 500
		for range runs {
			a, b := 0, 0
			for range size {
				if rng.Float64() < 0.04 {
					a++
				}
				if rng.Float64() < 0.08 {
					b++
				}
			}
			if engine.Wilson(a, size).High < engine.Wilson(b, size).Low {
				hits++
			}
		}
		return float64(hits) / runs
	}
	full, quarter := separated(n), separated(n/4)
	t.Logf("%d offers a variant: the intervals separate in %.0f%% of experiments; %d: %.0f%%", n, 100*full, n/4, 100*quarter)
	if full < 0.75 || quarter > 0.4 {
		t.Fatalf("separated in %.0f%% at %d offers and %.0f%% at %d", 100*full, n, 100*quarter, n/4)
	}
}

// variantRule is a rule on enter at s-alex whose offer has two variants.
func variantRule(selection string, weights ...int) rules.Rule {
	texts := func(s string) rules.Texts { return rules.Texts{{Lang: "en", Template: s}} }
	r := rules.Rule{ID: "exp", Name: "Experiment", Priority: 20,
		Trigger: rules.Trigger{On: rules.OnEnter, Stores: &rules.StoreSelector{IDs: []string{"s-alex"}}},
		Caps:    rules.Caps{PerCustomerPerDay: 1},
		Offer: rules.Offer{ValidForS: 3600, Selection: selection, Variants: []rules.Variant{
			{ID: "a", Title: texts("A"), Body: texts("Ten percent off"), Discount: "10%", Weight: weights[0]},
			{ID: "b", Title: texts("B"), Body: texts("A free size-up"), Discount: "size-up", Weight: weights[1], ValidForS: 1800}}}}
	return r
}

// A customer keeps the variant first given for a rule: after the weights
// change so that the hash would now give another, the next offer is the
// first variant still, with its texts and validity, and both count under it.
func TestVariantIsSticky(t *testing.T) {
	rdb := srv.Client(t)
	ctx := context.Background()
	f := setup(t, rdb, variantRule(rules.SelectWeighted, 1, 1))
	first := f.ping(t, 0, engine.Options{})
	var o engine.IssuedOffer
	for _, x := range first.Offers {
		if x.RuleID == "exp" {
			o = x
		}
	}
	if o.Variant == "" {
		t.Fatalf("offers %+v", first.Offers)
	}
	// Weights that give c-42 the other variant now.
	other := map[string]string{"a": "b", "b": "a"}[o.Variant]
	w := map[string][]int{"a": {1000, 1}, "b": {1, 1000}}[other]
	cat := f.live.Catalog()
	r := variantRule(rules.SelectWeighted, w...)
	if err := cat.PutRule(ctx, &r, false); err != nil {
		t.Fatal(err)
	}
	if err := f.live.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if c := f.live.Current().Rules["exp"]; c.VariantID(c.Assign("c-42")) != other {
		t.Fatalf("the new weights still give %s", o.Variant)
	}
	f.ping(t, 2000, engine.Options{}) // out
	f.clock.Advance(25 * time.Hour)   // a day later: the daily cap allows another
	again := f.ping(t, 0, engine.Options{Explain: true})
	var o2 engine.IssuedOffer
	for _, x := range again.Offers {
		if x.RuleID == "exp" {
			o2 = x
		}
	}
	if o2.Variant != o.Variant || o2.Title != map[string]string{"a": "A", "b": "B"}[o.Variant] {
		t.Fatalf("second offer %+v, first variant %s", o2, o.Variant)
	}
	if want := map[string]time.Duration{"a": time.Hour, "b": 30 * time.Minute}[o.Variant]; o2.ExpiresAt.Sub(f.clock.Now()) > want {
		t.Fatalf("expires %v after the offer, the variant's validity is %v", o2.ExpiresAt.Sub(f.clock.Now()), want)
	}
}

// Concurrent redemptions of a bandit rule's coupons all count, in the
// bandit's counts and the funnel, on redis-server and on the cluster.
func TestBanditCountsUnderConcurrentRedeems(t *testing.T) {
	for _, b := range redistest.Backends(srv) {
		if b.Name == "miniredis" {
			continue
		}
		t.Run(b.Name, func(t *testing.T) { concurrentRedeems(t, b.New(t)) })
	}
}

func concurrentRedeems(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	f := setup(t, rdb, variantRule(rules.SelectBandit, 1, 1))
	cfg := engine.DefaultConfig()
	cfg.QuietHours = [2]int{}
	signer := engine.NewCodeSigner([]byte("k"))
	f.eng = engine.New(rdb, f.live, signer, cfg, quiet, nil)
	const customers = 60
	var codes []string
	for i := range customers {
		id := fmt.Sprint("c-", i)
		if _, err := f.cust.Put(ctx, &rules.Customer{ID: id, Consent: rules.Consent{Location: true, Push: true}}); err != nil {
			t.Fatal(err)
		}
		res, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: id, DeviceID: "d", Lat: alexLat, Lng: alexLng}, engine.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range res.Offers {
			if o.RuleID == "exp" {
				codes = append(codes, o.CouponCode)
			}
		}
	}
	if len(codes) != customers {
		t.Fatalf("%d coupons of %d customers", len(codes), customers)
	}
	ledger := engine.NewLedger(rdb, signer, quiet, nil)
	var wg sync.WaitGroup
	for _, code := range codes {
		wg.Go(func() {
			if _, err := ledger.Redeem(ctx, code, "s-alex"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	counts := rdb.HGetAll(ctx, "nc:{rule:exp}:bandit").Val()
	var n, r int
	for k, v := range counts {
		var x int
		fmt.Sscan(v, &x)
		switch k[len(k)-1] {
		case 'n':
			n += x
		case 'r':
			r += x
		}
	}
	if n != customers || r != customers {
		t.Fatalf("bandit counts %v: %d issued, %d redeemed, want %d each", counts, n, r, customers)
	}
	c := f.live.Current().Rules["exp"]
	rep, err := engine.Experiment(ctx, rdb, c, time.Now().UTC(), time.Now().UTC())
	if err != nil {
		t.Fatal(err)
	}
	issued, redeemed := 0, 0
	for _, v := range rep.Variants {
		issued += v.Issued
		redeemed += v.Redeemed
	}
	if issued != customers || redeemed != customers {
		t.Fatalf("the experiment counts %d issued, %d redeemed: %+v", issued, redeemed, rep.Variants)
	}
}

package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// Every key a customer's pings, offers and redemptions leave behind
// expires by itself (an erased customer's once had "visits" without a
// TTL): only what the customer or their company wrote (the profile, the
// devices and each device's FCM token owner) lives until it is deleted.
func TestEveryCustomerKeyExpires(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			f := setup(t, be.New(t))
			ctx := context.Background()
			res := f.ping(t, 40, engine.Options{})
			if len(res.Offers) != 1 {
				t.Fatalf("no offer: %+v", res)
			}
			led := engine.NewLedger(f.rdb, engine.NewCodeSigner([]byte("test-secret")), quiet, f.clock.Now)
			if _, err := led.Redeem(ctx, res.Offers[0].CouponCode, "s-alex"); err != nil {
				t.Fatal(err)
			}
			f.clock.Advance(10 * time.Minute)
			f.ping(t, 2000, engine.Options{})
			keys, err := redistest.Keys(ctx, f.rdb, "*")
			if err != nil {
				t.Fatal(err)
			}
			lasting := map[string]bool{"nc:{c:c-42}:profile": true, "nc:{c:c-42}:devices": true}
			seen := 0
			for _, k := range keys {
				if !strings.Contains(k, "{c:c-42}") && !strings.HasPrefix(k, "nc:code:") && !strings.HasPrefix(k, "nc:fcmtokens:") {
					continue
				}
				seen++
				ttl, err := f.rdb.PTTL(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case lasting[k] || strings.HasPrefix(k, "nc:fcmtokens:"):
					if ttl > 0 {
						t.Errorf("%s expires (in %s): the customer's own data must not", k, ttl)
					}
				case ttl <= 0:
					t.Errorf("%s has no TTL", k)
				}
			}
			if seen < 8 {
				t.Fatalf("only %d keys of the customer: %v", seen, keys)
			}
		})
	}
}

// The set of a customer's codes lives as long as their longest-lived
// coupon: a later coupon that expires sooner does not shorten it (then
// an erasure or an export would miss the older coupon's record).
func TestCouponSetOutlivesEveryCoupon(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			long := rules.Rule{ID: "week", Name: "A week", Priority: 20,
				Trigger: rules.Trigger{On: rules.OnEnter, Stores: &rules.StoreSelector{Tags: []string{"coffee"}}},
				Caps:    rules.Caps{PerCustomerTotal: 1},
				Offer: rules.Offer{Title: rules.Texts{{Lang: "de", Template: "Eine Woche"}},
					Body: rules.Texts{{Lang: "de", Template: "{{.store.name}}"}}, ValidForS: 7 * 86400}}
			short := long
			short.ID, short.Name, short.Priority, short.Caps = "hour", "An hour", 15, rules.Caps{}
			short.Offer.ValidForS = 3600
			f := setup(t, be.New(t), long, short)
			ctx := context.Background()
			res := f.ping(t, 10, engine.Options{})
			if len(res.Offers) != 1 || res.Offers[0].RuleID != "week" {
				t.Fatalf("first visit: %+v", res.Offers)
			}
			weekEnds := res.Offers[0].ExpiresAt.Add(engine.DefaultConfig().CouponRetention)
			f.clock.Advance(time.Minute)
			f.ping(t, 3000, engine.Options{})
			f.clock.Advance(10 * time.Minute)
			if res := f.ping(t, 10, engine.Options{}); len(res.Offers) != 1 || res.Offers[0].RuleID != "hour" {
				t.Fatalf("second visit: %+v", res.Offers)
			}
			ttl := f.rdb.PTTL(ctx, "nc:{c:c-42}:coupons").Val()
			if ends := time.Now().Add(ttl); ends.Before(weekEnds.Add(-time.Minute)) {
				t.Fatalf("the codes' set lives until %v, before the week's coupon and its retention (%v)", ends, weekEnds)
			}
		})
	}
}

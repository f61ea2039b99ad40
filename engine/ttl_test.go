package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
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
				if !strings.Contains(k, "{c:c-42}") && !strings.HasPrefix(k, "nc:code:") && !strings.HasPrefix(k, "nc:fcmtoken:") {
					continue
				}
				seen++
				ttl, err := f.rdb.PTTL(ctx, k).Result()
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case lasting[k] || strings.HasPrefix(k, "nc:fcmtoken:"):
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

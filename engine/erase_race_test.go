package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// Erasure wins every race: customers pinging in and out of a store, each
// ping an offer, are erased while their pings go on; once every erasure
// has answered and the pings have stopped, no key and no value anywhere
// names them (but for their call counters, which expire within two
// minutes, and their tokens' raised generation, a number).
func TestErasureWinsTheRaceWithPings(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			every := rules.Rule{ID: "every-visit", Name: "Every visit", Priority: 20,
				Trigger: rules.Trigger{On: rules.OnEnter, Stores: &rules.StoreSelector{Tags: []string{"coffee"}}},
				Caps:    rules.Caps{Total: 1_000_000}, // a budget: each offer reserves a unit, on record with its intent
				Offer: rules.Offer{Title: rules.Texts{{Lang: "de", Template: "Hallo {{.customer.first_name}}"}},
					Body: rules.Texts{{Lang: "de", Template: "{{.store.name}}"}}, ValidForS: 600}}
			f := setup(t, be.New(t), every)
			ctx := context.Background()
			cfg := engine.DefaultConfig()
			cfg.QuietHours, cfg.MinOfferGap, cfg.MaxOffersPerDay = [2]int{}, 0, 0
			cfg.PingsPerMinute, cfg.PingsPerMinuteDevice = 0, 0
			eng := engine.New(f.rdb, f.live, engine.NewCodeSigner([]byte("k")), cfg, quiet, nil)
			const n = 16
			ids := make([]string, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("c-race%02d", i)
				c := rules.Customer{ID: ids[i], FirstName: "Rita", Locale: "de", Timezone: "Europe/Berlin",
					Consent: rules.Consent{Location: true, Push: true}}
				if _, err := f.cust.Put(ctx, &c); err != nil {
					t.Fatal(err)
				}
				if _, err := f.cust.PutDevice(ctx, ids[i], &rules.Device{ID: "d-1", FCMToken: "tok-" + ids[i], Platform: "ios"}); err != nil {
					t.Fatal(err)
				}
			}
			stop := make(chan struct{})
			var pingers sync.WaitGroup
			var mu sync.Mutex
			offers := 0
			for _, id := range ids {
				pingers.Add(1)
				go func() {
					defer pingers.Done()
					for k := 0; ; k++ {
						select {
						case <-stop:
							return
						default:
						}
						m := 0.0
						if k%2 == 1 {
							m = 3000
						}
						lat, lng := north(alexLat, alexLng, m)
						// Not settled: the work behind each answer races the
						// erasures too.
						res, err := eng.Evaluate(ctx, engine.Ping{CustomerID: id, DeviceID: "d-1", Lat: lat, Lng: lng, AccuracyM: 5}, engine.Options{})
						if err == nil && len(res.Offers) > 0 {
							mu.Lock()
							offers++
							mu.Unlock()
						}
					}
				}()
			}
			time.Sleep(300 * time.Millisecond)
			var erasers sync.WaitGroup
			for _, id := range ids {
				erasers.Add(1)
				go func() {
					defer erasers.Done()
					ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					if err := f.cust.Delete(ectx, id); err != nil {
						t.Errorf("erase %s: %v", id, err)
					}
				}()
			}
			erasers.Wait()
			time.Sleep(200 * time.Millisecond) // pings for the erased go on
			close(stop)
			pingers.Wait()
			if err := eng.Settled(ctx); err != nil {
				t.Fatal(err)
			}
			if offers < n {
				t.Fatalf("only %d offers while pinging: the race was not run", offers)
			}
			t.Logf("%d offers issued while pinging", offers)
			keys, err := redistest.Keys(ctx, f.rdb, "*")
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				for _, id := range ids {
					left := "{c:" + id + "}:"
					if strings.HasSuffix(k, left+"rate") && f.rdb.PTTL(ctx, k).Val() <= 2*time.Minute ||
						strings.HasSuffix(k, left+"tokens") && f.rdb.PTTL(ctx, k).Val() > 0 {
						continue
					}
					if where := nameOrValueHolds(t, f.rdb, k, id); where != "" {
						t.Errorf("after erasure, %s names %s", where, id)
					}
				}
			}
		})
	}
}

package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/rules"
)

// TestConcurrentCustomersKeepTheirOwnKeys walks customers in and out of a
// store at once, each with pings of its own. A ping's step names its
// customer's keys from a pooled buffer (observeCall); were a buffer given
// back while its command was still being sent, or shared, one customer's
// step would run on another's keys: visits, enters and exits would land
// on the wrong customer. Ids of different lengths make such a mix-up
// change the keys' bytes, not only their owner.
func TestConcurrentCustomersKeepTheirOwnKeys(t *testing.T) {
	f := setup(t, srv.Client(t))
	ctx := context.Background()
	const walks = 8
	var ids []string
	for i := range 12 {
		id := fmt.Sprintf("walker-%d-%s", i, strings.Repeat("x", i*7))
		c := rules.Customer{ID: id, Consent: rules.Consent{Location: true}}
		if _, err := f.cust.Put(ctx, &c); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Every fix in the past of the engine's clock, five minutes apart.
	start := f.clock.Now()
	f.clock.Advance(12 * time.Hour)
	inLat, inLng := north(alexLat, alexLng, 10)
	outLat, outLng := north(alexLat, alexLng, 400)
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			ts := start
			for w := range walks {
				for _, fix := range [][2]float64{{inLat, inLng}, {outLat, outLng}} {
					ts = ts.Add(5 * time.Minute) // 390 m in 5 minutes: a walk, slow enough to enter
					res, err := settled(f.eng).Evaluate(ctx, engine.Ping{CustomerID: id, DeviceID: "d-1", Lat: fix[0], Lng: fix[1], TS: ts}, engine.Options{})
					if err != nil {
						t.Errorf("%s, walk %d: %v", id, w, err)
						return
					}
					want := "enter"
					if fix[0] == outLat {
						want = "exit"
					}
					if len(res.Events) != 1 || string(res.Events[0].Type) != want {
						t.Errorf("%s, walk %d: events %+v, want one %s", id, w, res.Events, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		n, err := f.rdb.HGet(ctx, "nc:{c:"+id+"}:visits", "n").Int()
		if err != nil || n != walks {
			t.Errorf("%s: %d visits (%v), want %d", id, n, err, walks)
		}
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nearcast/nearcast/internal/fcmtest"
	"github.com/nearcast/nearcast/internal/redistest"
)

// Redis dies under load and comes back: while it is down pings get 503
// unavailable at once (no hang, no crash); afterwards service resumes by
// itself; and no coupon given in an answer is lost, or given twice.
func TestRedisOutageUnderLoad(t *testing.T) {
	rs, err := redistest.Start("--appendonly", "yes", "--appendfsync", "always")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Stop)
	fcm := fcmtest.New(t)
	base, out := startServer(t, map[string]string{
		"NEARCAST_REDIS_URL": "redis://" + rs.Addr, "NEARCAST_PUSH": "fcm",
		"NEARCAST_FCM_ENDPOINT": fcm.URL(), "NEARCAST_FCM_PROJECT": "nearcast-test",
		"NEARCAST_APP_KEYS": "app", "NEARCAST_ADMIN_KEYS": "admin", "NEARCAST_COUPON_SECRET": "fault-secret",
		"NEARCAST_TOKEN_SECRETS": testTokenSecret, "NEARCAST_QUIET_HOURS": "off",
		"NEARCAST_MIN_OFFER_GAP": "0s", "NEARCAST_MAX_OFFERS_PER_DAY": "0",
		"NEARCAST_PINGS_PER_MINUTE": "0", "NEARCAST_PINGS_PER_MINUTE_DEVICE": "0",
		"NEARCAST_CLAIM_IDLE": "1s", // a push in flight when Redis died is taken over soon
	})
	const workers, perWorker = 6, 4
	customer := func(w, k int) string { return fmt.Sprintf("c-f%d-%d", w, k) }
	var ids []string
	for w := 0; w < workers; w++ {
		for k := 0; k < perWorker; k++ {
			ids = append(ids, customer(w, k))
		}
	}
	tokens := seedWalkers(t, []string{base}, e2eRule, ids)

	// Each worker walks its customers in and out of the store, one ping
	// at a time, and keeps what the answers say.
	var phase atomic.Int32 // 0 before the outage, 1 during, 2 after
	type tally struct {
		ok, unavailable [3]int
		other           []string
		slowest         [3]time.Duration
		codes           map[string]string // coupon -> customer
	}
	tallies := make([]*tally, workers)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for w := 0; w < workers; w++ {
		tl := &tally{codes: map[string]string{}}
		tallies[w] = tl
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := customer(w, i%perWorker)
				north := []float64{10, 400}[(i/perWorker)%2]
				body := fmt.Sprintf(`{"customer_id":%q,"device_id":"p-%s","lat":%.7f,"lng":13.4132,"accuracy_m":8,"speed_mps":0.5}`, c, c, 52.5219+north/111194.9)
				req := newRequest("POST", base+"/v1/pings", "app", tokens[c], body)
				ph := phase.Load()
				start := time.Now()
				res, err := client.Do(req)
				took := time.Since(start)
				if took > tl.slowest[ph] {
					tl.slowest[ph] = took
				}
				if err != nil {
					tl.other = append(tl.other, err.Error())
					continue
				}
				var a pingAnswer
				json.NewDecoder(res.Body).Decode(&a)
				res.Body.Close()
				switch res.StatusCode {
				case 200:
					tl.ok[ph]++
					for _, o := range a.Offers {
						tl.codes[o.CouponCode] = c
					}
				case 503:
					tl.unavailable[ph]++
				default:
					tl.other = append(tl.other, res.Status)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	rs.Kill()
	phase.Store(1)
	time.Sleep(1500 * time.Millisecond)
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	phase.Store(2)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	var ok, unavailable [3]int
	var slowest [3]time.Duration
	codes := map[string]string{}
	for _, tl := range tallies {
		for p := 0; p < 3; p++ {
			ok[p] += tl.ok[p]
			unavailable[p] += tl.unavailable[p]
			slowest[p] = max(slowest[p], tl.slowest[p])
		}
		if len(tl.other) > 0 {
			t.Errorf("answers other than 200 and 503: %v", tl.other[:min(5, len(tl.other))])
		}
		for code, c := range tl.codes {
			if _, dup := codes[code]; dup {
				t.Errorf("coupon %s given twice", code)
			}
			codes[code] = c
		}
	}
	t.Logf("before: %d ok; during: %d ok, %d unavailable, slowest %s; after: %d ok, %d unavailable; %d coupons",
		ok[0], ok[1], unavailable[1], slowest[1], ok[2], unavailable[2], len(codes))
	if ok[0] == 0 || unavailable[1] == 0 || ok[2] == 0 {
		t.Fatalf("want pings answered before, 503 during and answered after the outage\n%s", out.String())
	}
	// A hang would show as a ping that waited for seconds; the client
	// timeouts to Redis are half a second.
	if slowest[1] > 3*time.Second {
		t.Errorf("a ping waited %s while Redis was down", slowest[1])
	}

	// Every coupon an answer gave is kept, and reaches its phone once.
	for code := range codes {
		if status, raw := call(t, "GET", base+"/v1/coupons/"+code, "admin", ""); status != 200 {
			t.Errorf("coupon %s: %d %s", code, status, raw)
		}
	}
	// Each coupon's push reaches FCM; one FCM took just as Redis died may
	// go again, with the same coupon and collapse key, which a phone
	// shows once.
	deadline := time.Now().Add(20 * time.Second)
	for {
		sent := map[string]int{}
		for _, m := range fcm.Messages() {
			sent[m.Data["coupon_code"]]++
		}
		missing, again := 0, 0
		for code := range codes {
			if sent[code] == 0 {
				missing++
			}
			if sent[code] > 1 {
				again++
			}
		}
		if missing == 0 {
			t.Logf("%d pushes, %d of them sent again after the outage", len(sent), again)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d coupons never reached FCM\n%s", missing, len(codes), out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A Redis that hangs (SIGSTOP: connections open, nothing answered) is
// told as promptly as one that is down: pings and admin calls get 503
// unavailable within the request's Redis budget, not after the client's
// timeouts and retries add up; and once it answers again, so does the
// server.
func TestHungRedis(t *testing.T) {
	rs, err := redistest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Stop)
	base, out := startServer(t, map[string]string{
		"NEARCAST_REDIS_URL": "redis://" + rs.Addr, "NEARCAST_APP_KEYS": "app", "NEARCAST_ADMIN_KEYS": "admin",
		"NEARCAST_COUPON_SECRET": "hung-secret", "NEARCAST_TOKEN_SECRETS": testTokenSecret, "NEARCAST_QUIET_HOURS": "off",
	})
	tokens := seedWalkers(t, []string{base}, e2eRule, []string{"c-h"})
	ping := func() *http.Request {
		return newRequest("POST", base+"/v1/pings", "app", tokens["c-h"], pingBody("c-h", "p-c-h", 40))
	}
	if status, raw := send(t, ping()); status != 200 {
		t.Fatalf("ping before: %d %s", status, raw)
	}

	if err := rs.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			rs.Resume()
		}
	})
	calls := []struct {
		name string
		req  func() *http.Request
	}{
		{"ping", ping},
		{"get customer", func() *http.Request { return newRequest("GET", base+"/v1/customers/c-h", "admin", "", "") }},
		{"list rules", func() *http.Request { return newRequest("GET", base+"/v1/rules", "admin", "", "") }},
		{"readyz", func() *http.Request { return newRequest("GET", base+"/readyz", "admin", "", "") }},
	}
	for round := 0; round < 3; round++ {
		for _, c := range calls {
			start := time.Now()
			status, raw := send(t, c.req())
			took := time.Since(start)
			t.Logf("%s on a hung Redis: %d in %s", c.name, status, took.Round(time.Millisecond))
			if status != 503 || !strings.Contains(raw, `"unavailable"`) {
				t.Errorf("%s on a hung Redis: %d %s, want 503 unavailable", c.name, status, raw)
			}
			if took > 1500*time.Millisecond {
				t.Errorf("%s on a hung Redis took %s", c.name, took)
			}
		}
	}

	// Pings at once, which wait for each other's pipelines: none waits
	// longer for it.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			res, err := http.DefaultClient.Do(ping())
			took := time.Since(start)
			if err != nil {
				t.Errorf("ping %d: %v", i, err)
				return
			}
			res.Body.Close()
			t.Logf("ping %d of 8 at once on a hung Redis: %d in %s", i, res.StatusCode, took.Round(time.Millisecond))
			if res.StatusCode != 503 || took > 1500*time.Millisecond {
				t.Errorf("ping %d of 8 at once on a hung Redis: %d in %s", i, res.StatusCode, took)
			}
		}()
	}
	wg.Wait()

	if err := rs.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed = true
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, raw := send(t, ping())
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Redis answered again, a ping still got %d %s\n%s", status, raw, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

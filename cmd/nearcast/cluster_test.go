package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/internal/fcmtest"
	"github.com/nearcast/nearcast/internal/redistest"
)

// redisTarget is a Redis the end-to-end tests run the server on.
type redisTarget struct {
	name string
	url  string // NEARCAST_REDIS_URL
	// client is a client on it, emptied first.
	client func(t *testing.T) redis.UniversalClient
}

// redisTargets are the package's redis-server and, under `make
// cluster-test`, its Redis Cluster of six local processes.
func redisTargets() []redisTarget {
	out := []redisTarget{{"redis-server", "redis://" + srv.Addr, func(t *testing.T) redis.UniversalClient { return srv.Client(t) }}}
	if cl := redistest.SharedCluster(); cl != nil {
		out = append(out, redisTarget{"redis-cluster", cl.Seeds(), func(t *testing.T) redis.UniversalClient { return cl.Client(t) }})
	}
	return out
}

// seedWalkers puts the store s-alex, the rule flat-white and customers,
// each with a phone (device p-<id>) that its app registered with the
// customer's token, spreading the requests over the servers. It answers
// each customer's token.
func seedWalkers(t *testing.T, bases []string, rule string, ids []string) map[string]string {
	t.Helper()
	type request struct{ method, path, key, token, body string }
	setup := []request{
		{"PUT", "/v1/stores/s-alex", "admin", "", e2eStore},
		{"PUT", "/v1/attributes", "admin", "", e2eAttributes},
		{"PUT", "/v1/rules/flat-white", "admin", "", rule},
	}
	tokens := map[string]string{}
	for i, c := range ids {
		tokens[c] = mintToken(t, bases[i%len(bases)], "admin", c)
		setup = append(setup,
			request{"PUT", "/v1/customers/" + c, "admin", "", `{"first_name": "Anna", "locale": "de", "consent": {"location": true, "push": true}, "attributes": {"tier": "gold"}}`},
			request{"PUT", "/v1/customers/" + c + "/devices/p-" + c, "app", tokens[c], `{"fcm_token": "tok-` + c + `", "platform": "android"}`})
	}
	for i, c := range setup {
		if status, raw := callAs(t, c.method, bases[i%len(bases)]+c.path, c.key, c.token, c.body); status >= 300 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, status, raw)
		}
	}
	return tokens
}

// Two replicas on a Redis Cluster under load; the master holding the
// outbox is killed mid-run. While its replica takes over, pings of the
// slots it held answer 503 (never hang); after the failover every
// customer's pings work again, no customer gets a coupon twice (each may
// have one a day), every coupon an answer gave is found by its code, and
// its push reaches FCM.
func TestClusterFailover(t *testing.T) {
	cl := redistest.SharedCluster()
	if cl == nil {
		t.Skip("needs a Redis Cluster of local processes: `make cluster-test` runs this test on one (and `make test` runs `make cluster-test`)")
	}
	rdb := cl.Client(t)
	fcm := fcmtest.New(t)
	bin := buildBinary(t)
	env := map[string]string{
		"NEARCAST_REDIS_URL": cl.Seeds(), "NEARCAST_PUSH": "fcm",
		"NEARCAST_FCM_ENDPOINT": fcm.URL(), "NEARCAST_FCM_PROJECT": "nearcast-test",
		"NEARCAST_APP_KEYS": "app", "NEARCAST_ADMIN_KEYS": "admin", "NEARCAST_COUPON_SECRET": "cluster-secret",
		"NEARCAST_TOKEN_SECRETS": testTokenSecret, "NEARCAST_QUIET_HOURS": "off",
		"NEARCAST_MIN_OFFER_GAP": "0s", "NEARCAST_MAX_OFFERS_PER_DAY": "0",
		"NEARCAST_PINGS_PER_MINUTE": "0", "NEARCAST_PINGS_PER_MINUTE_DEVICE": "0",
		"NEARCAST_CLAIM_IDLE": "1s", "NEARCAST_LOG_LEVEL": "error",
	}
	replicas := []string{startProcess(t, bin, env), startProcess(t, bin, env)}
	const customers = 90
	customer := func(i int) string { return fmt.Sprintf("c-%d", i) }
	rule := strings.Replace(e2eRule, `"priority": 10,`, `"priority": 10, "caps": {"per_customer_per_day": 1},`, 1)
	ids := make([]string, customers)
	for i := range ids {
		ids[i] = customer(i)
	}
	tokens := seedWalkers(t, replicas, rule, ids)
	// Both replicas know the rule before the load starts.
	for _, base := range replicas {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, raw := call(t, "POST", base+"/v1/pings?dry_run=true&explain=true", "admin", `{"customer_id": "c-0", "lat": 52.5220, "lng": 13.4132, "accuracy_m": 5}`)
			if strings.Contains(raw, `"flat-white"`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %s does not apply the rule: %s", base, raw)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Workers walk their customers in and out of the store, one ping at a
	// time, each ping to either replica.
	var phase atomic.Int32 // 0 before the kill, 1 until the cluster is healthy again, 2 after
	var mu sync.Mutex
	ok, unavailable := [3]int{}, [3]int{}
	var other []string
	slowest := time.Duration(0)
	coupons := map[string][]string{} // customer -> coupon codes given in answers
	const workers = 6
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := customer(w + workers*(i%(customers/workers)))
				north := 0.0
				if i%2 == 1 {
					north = 500 // out of the store again
				}
				body := fmt.Sprintf(`{"customer_id": %q, "device_id": "p-%s", "lat": %.6f, "lng": 13.4132, "accuracy_m": 5}`, c, c, 52.5219+north/111195)
				p := phase.Load()
				start := time.Now()
				resp, err := client.Do(newRequest("POST", replicas[i%2]+"/v1/pings", "app", tokens[c], body))
				took := time.Since(start)
				mu.Lock()
				if took > slowest {
					slowest = took
				}
				switch {
				case err != nil:
					other = append(other, err.Error())
				case resp.StatusCode == 200:
					var a pingAnswer
					json.NewDecoder(resp.Body).Decode(&a)
					ok[p]++
					for _, o := range a.Offers {
						coupons[c] = append(coupons[c], o.CouponCode)
					}
				case resp.StatusCode == 503:
					unavailable[p]++
				default:
					other = append(other, fmt.Sprintf("%d", resp.StatusCode))
				}
				mu.Unlock()
				if resp != nil {
					resp.Body.Close()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	ctx := context.Background()
	killed, err := cl.KillMasterOf(ctx, "nc:{outbox}:stream")
	if err != nil {
		t.Fatal(err)
	}
	phase.Store(1)
	killedAt := time.Now()
	if err := cl.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	failover := time.Since(killedAt)
	phase.Store(2)
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("before: %d ok; failover took %s: %d ok, %d unavailable; after: %d ok, %d unavailable; slowest ping %s; other %v",
		ok[0], failover.Round(time.Millisecond), ok[1], unavailable[1], ok[2], unavailable[2], slowest, other)
	if ok[0] == 0 || ok[2] == 0 {
		t.Fatal("want pings answered before and after the failover")
	}
	if len(other) > 0 {
		t.Errorf("answers neither 200 nor 503: %v", other)
	}
	if slowest > 5*time.Second {
		t.Errorf("a ping waited %s", slowest)
	}

	// After the failover every customer's pings work, on both replicas.
	for i := range customers {
		c := customer(i)
		for _, base := range replicas {
			body := fmt.Sprintf(`{"customer_id": %q, "lat": 52.5250, "lng": 13.4132, "accuracy_m": 5}`, c)
			if status, raw := callAs(t, "POST", base+"/v1/pings", "app", tokens[c], body); status != 200 {
				t.Fatalf("after the failover, %s on %s: %d %s", c, base, status, raw)
			}
		}
	}

	// No coupon doubled: one a day per customer, however the pings fell.
	given := 0
	for c, codes := range coupons {
		given += len(codes)
		if len(codes) > 1 {
			t.Errorf("%s got %d coupons with a cap of one a day: %v", c, len(codes), codes)
		}
		for _, code := range codes {
			if status, raw := call(t, "GET", replicas[0]+"/v1/coupons/"+code, "admin", ""); status != 200 {
				t.Errorf("coupon %s of %s: %d %s", code, c, status, raw)
			}
		}
	}
	if given == 0 {
		t.Fatal("no coupon was given")
	}
	// Each coupon's push reaches FCM (one in flight when its master died
	// may go twice, with the same coupon and collapse key).
	deadline := time.Now().Add(30 * time.Second)
	for {
		sent := map[string]int{}
		for _, m := range fcm.Messages() {
			sent[m.Data["coupon_code"]]++
		}
		missing, again := 0, 0
		for _, codes := range coupons {
			for _, code := range codes {
				if sent[code] == 0 {
					missing++
				}
				if sent[code] > 1 {
					again++
				}
			}
		}
		if missing == 0 {
			t.Logf("%d coupons given to %d customers, each pushed; %d sent again", given, len(coupons), again)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d coupons never reached FCM", missing, given)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = rdb
	// The killed node comes back as a replica, for the tests after.
	if err := cl.Revive(killed); err != nil {
		t.Fatal(err)
	}
}

// Unset, NEARCAST_REDIS_WAIT_REPLICAS makes an offer wait for one replica
// on a cluster whose masters all have one, and for none on a single Redis.
func TestClusterReplicasToWaitFor(t *testing.T) {
	ctx := context.Background()
	if n := replicasToWaitFor(ctx, srv.Client(t)); n != 0 {
		t.Fatalf("a single redis-server: wait for %d replicas", n)
	}
	cl := redistest.SharedCluster()
	if cl == nil {
		t.Skip("needs a Redis Cluster of local processes: `make cluster-test` runs this test on one")
	}
	if n := replicasToWaitFor(ctx, cl.Client(t)); n != 1 {
		t.Fatalf("a cluster of three masters with a replica each: wait for %d replicas, want 1", n)
	}
}

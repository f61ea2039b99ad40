package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/fcmtest"
	"github.com/nearcast/nearcast/internal/hooktest"
)

// The server is killed (SIGKILL) in the middle of a stream of events to
// a slow receiver and started again: every event arrives (at least once,
// the receiver keeping the first of each webhook-id), each customer's in
// the order it happened, every request signed; on one Redis and on a
// Redis Cluster.
func TestKilledMidStreamEveryEventArrives(t *testing.T) {
	for _, target := range redisTargets() {
		t.Run(target.name, func(t *testing.T) { killedMidStream(t, target) })
	}
}

func killedMidStream(t *testing.T, target redisTarget) {
	target.client(t) // emptied
	fcm := fcmtest.New(t)
	secret := webhook.NewSecret()
	r := hooktest.New(t, secret)
	r.Answer(hooktest.Answer{Delay: 5 * time.Millisecond}) // slow: the stream is long when the kill comes
	bin := buildBinary(t)
	env := map[string]string{
		"NEARCAST_REDIS_URL": target.url, "NEARCAST_PUSH": "fcm", "NEARCAST_FCM_ENDPOINT": fcm.URL(),
		"NEARCAST_FCM_PROJECT": "p", "NEARCAST_APP_KEYS": "app", "NEARCAST_ADMIN_KEYS": "admin",
		"NEARCAST_COUPON_SECRET": "s", "NEARCAST_TOKEN_SECRETS": testTokenSecret, "NEARCAST_QUIET_HOURS": "off", "NEARCAST_MIN_OFFER_GAP": "0s",
		"NEARCAST_MAX_OFFERS_PER_DAY": "0", "NEARCAST_LOG_LEVEL": "error",
	}
	a, proc := startProcessCmd(t, bin, env)
	sub := fmt.Sprintf(`{"url": %q, "events": ["enter", "offer.issued", "push.sent"], "secret": %q, "enabled": true}`, r.URL(), secret)
	if status, raw := call(t, "PUT", a+"/v1/webhooks/crm", "admin", sub); status >= 300 {
		t.Fatalf("subscribe: %d %s", status, raw)
	}
	const customers = 100
	ids := make([]string, customers)
	for i := range ids {
		ids[i] = fmt.Sprint("c", i)
	}
	tokens := seedWalkers(t, []string{a}, e2eRule, ids)
	time.Sleep(1500 * time.Millisecond) // the subscription live on the server (within a second)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, c := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			status, raw := callAs(t, "POST", a+"/v1/pings", "app", tokens[c], fmt.Sprintf(`{"customer_id": %q, "device_id": "p-%s", "lat": 52.5219, "lng": 13.4132, "accuracy_m": 5}`, c, c))
			var ans pingAnswer
			json.Unmarshal([]byte(raw), &ans)
			if status != 200 || len(ans.Offers) != 1 {
				t.Errorf("%s: %d %s", c, status, raw)
			}
		})
	}
	wg.Wait()
	const want = 3 * customers // enter, offer.issued, push.sent each
	deadline := time.Now().Add(30 * time.Second)
	for len(hooktest.DistinctAccepted(r.Accepted())) < want/5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	proc.Process.Kill()
	proc.Wait()
	before := len(hooktest.DistinctAccepted(r.Accepted()))
	if before >= want {
		t.Fatalf("the stream was over before the kill (%d events): slow the receiver", before)
	}
	startProcess(t, bin, env)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.Wait(ctx, func(reqs []hooktest.Request) bool { return len(hooktest.DistinctAccepted(reqs)) >= want }); err != nil {
		t.Fatalf("after the restart %d of %d events arrived", len(hooktest.DistinctAccepted(r.Accepted())), want)
	}
	got := hooktest.DistinctAccepted(r.Accepted())
	seen := map[string][]string{}
	for _, e := range got {
		seen[e.CustomerID] = append(seen[e.CustomerID], e.Type)
	}
	for _, c := range ids {
		if fmt.Sprint(seen[c]) != "[enter offer.issued push.sent]" {
			t.Fatalf("%s's events arrived as %v", c, seen[c])
		}
	}
	for _, q := range r.Requests() {
		if q.VerifyErr != nil {
			t.Fatalf("a request not signed right: %v", q.VerifyErr)
		}
	}
	t.Logf("killed after %d of %d events; %d requests accepted in all (%d sent again)",
		before, want, len(r.Accepted()), len(r.Accepted())-want)
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nearcast/nearcast/internal/fcmtest"
)

// The server is killed (SIGKILL) in the middle of a burst of sends and
// started again: every coupon reaches its phone, and each phone shows it
// once. A push FCM took just before the kill may be sent again after the
// restart; it carries the same collapse key, so the phone replaces the
// first with it rather than showing two.
func TestKilledMidBurstEveryCouponArrivesOnce(t *testing.T) {
	rdb := srv.Client(t)
	fcm := fcmtest.New(t)
	fcm.SetDelay(20 * time.Millisecond)
	bin := buildBinary(t)
	env := map[string]string{
		"NEARCAST_REDIS_URL": "redis://" + srv.Addr, "NEARCAST_PUSH": "fcm", "NEARCAST_FCM_ENDPOINT": fcm.URL(),
		"NEARCAST_FCM_PROJECT": "p", "NEARCAST_APP_KEYS": "app", "NEARCAST_ADMIN_KEYS": "admin",
		"NEARCAST_COUPON_SECRET": "s", "NEARCAST_TOKEN_SECRETS": testTokenSecret, "NEARCAST_QUIET_HOURS": "off", "NEARCAST_MIN_OFFER_GAP": "0s",
		"NEARCAST_MAX_OFFERS_PER_DAY": "0", "NEARCAST_CLAIM_IDLE": "1s", "NEARCAST_LOG_LEVEL": "error",
	}
	a, proc := startProcessCmd(t, bin, env)
	call(t, "PUT", a+"/v1/stores/s-alex", "admin", e2eStore)
	call(t, "PUT", a+"/v1/attributes", "admin", e2eAttributes)
	call(t, "PUT", a+"/v1/rules/flat-white", "admin", e2eRule)
	const customers = 150
	tokens := make([]string, customers)
	for i := range customers {
		tokens[i] = mintToken(t, a, "admin", fmt.Sprint("c", i))
		call(t, "PUT", fmt.Sprintf("%s/v1/customers/c%d", a, i), "admin", `{"first_name": "C", "consent": {"location": true, "push": true}, "attributes": {"tier": "gold"}}`)
		if status, raw := callAs(t, "PUT", fmt.Sprintf("%s/v1/customers/c%d/devices/d%d", a, i, i), "app", tokens[i], fmt.Sprintf(`{"fcm_token": "tok-%d", "platform": "android"}`, i)); status >= 300 {
			t.Fatalf("device of c%d: %d %s", i, status, raw)
		}
	}
	codes := make([]string, customers)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range customers {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			_, raw := callAs(t, "POST", a+"/v1/pings", "app", tokens[i], fmt.Sprintf(`{"customer_id": "c%d", "device_id": "d%d", "lat": 52.5219, "lng": 13.4132, "accuracy_m": 5}`, i, i))
			var ans pingAnswer
			json.Unmarshal([]byte(raw), &ans)
			if len(ans.Offers) == 1 {
				codes[i] = ans.Offers[0].CouponCode
			}
		}(i)
	}
	wg.Wait()
	for i, c := range codes {
		if c == "" {
			t.Fatalf("customer c%d got no coupon", i)
		}
	}
	// Mid-burst: some pushes sent, most not.
	deadline := time.Now().Add(20 * time.Second)
	for len(fcm.Messages()) < customers/5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	proc.Process.Kill()
	proc.Wait()
	before := len(fcm.Messages())
	if before >= customers {
		t.Fatalf("the burst was over before the kill (%d sent): slow the double", before)
	}
	startProcess(t, bin, env)

	ctx := context.Background()
	deadline = time.Now().Add(60 * time.Second)
	for {
		n := rdb.XLen(ctx, "nc:{outbox}:stream").Val() + rdb.ZCard(ctx, "nc:{outbox}:delayed").Val()
		if n == 0 && len(fcm.Messages()) >= customers {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: %d pushes sent, %d still queued", len(fcm.Messages()), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i, code := range codes {
		shown := fcm.Shown(fmt.Sprint("tok-", i))
		if len(shown) != 1 || shown[0].Data["coupon_code"] != code {
			t.Fatalf("phone of c%d shows %d notifications, want its coupon %s once: %+v", i, len(shown), code, shown)
		}
	}
	t.Logf("killed after %d of %d pushes; %d sent in all (%d sent twice, collapsed on the phone)",
		before, customers, len(fcm.Messages()), len(fcm.Messages())-customers)
}

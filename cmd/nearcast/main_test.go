package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/fcmtest"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/internal/serverproc"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

// syncBuffer collects the server's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startServer runs `nearcast serve` in-process with the given settings
// and returns its base URL; it is shut down when the test ends.
func startServer(t *testing.T, settings map[string]string) (string, *syncBuffer) {
	t.Helper()
	settings["NEARCAST_ADDR"] = "127.0.0.1:0"
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, func(k string) string { return settings[k] }, out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("server did not shut down")
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if m := serverproc.Listening.FindStringSubmatch(out.String()); m != nil {
			return m[1], out
		}
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("server stopped: %v\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("server did not start:\n%s", out.String())
	return "", nil
}

// testTokenSecret signs customer tokens on the tests' servers on a real
// Redis, which run as production does by default: app calls carry the
// customer's token beside the app key (NEARCAST_APP_AUTH=token).
const testTokenSecret = "nearcast-tests-token-secret-0123456789abcdef"

// newRequest is a request as an app or a back office sends it: the API
// key, and the customer's token when one is given ("" sends none).
func newRequest(method, url, key, token, body string) *http.Request {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	if token != "" {
		req.Header.Set("X-Customer-Token", token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// call makes a request with an API key alone.
func call(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	return callAs(t, method, url, key, "", body)
}

// callAs makes a request with an API key and a customer's token.
func callAs(t *testing.T, method, url, key, token, body string) (int, string) {
	t.Helper()
	return send(t, newRequest(method, url, key, token, body))
}

func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	method, url := req.Method, req.URL.String()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// mintToken gets a customer token through the admin route, as a company's
// backend does for its app when the customer signs in.
func mintToken(t *testing.T, base, adminKey, customerID string) string {
	t.Helper()
	status, raw := call(t, "POST", base+"/v1/customers/"+customerID+"/tokens", adminKey, "")
	var minted struct {
		Token      string `json:"token"`
		CustomerID string `json:"customer_id"`
	}
	if err := json.Unmarshal([]byte(raw), &minted); status != 201 || err != nil || minted.Token == "" || minted.CustomerID != customerID {
		t.Fatalf("mint a token for %s: %d %s", customerID, status, raw)
	}
	return minted.Token
}

// walk is a customer's path towards Alexanderplatz (52.5219, 13.4132),
// in metres north of it: from 300 m away into the 100 m radius, out, and
// in again.
var walk = []struct {
	north float64
	event string
}{
	{300, ""}, {220, ""}, {150, ""}, {90, "enter"}, {40, ""}, {10, ""},
	{60, ""}, {180, "exit"}, {300, ""}, {200, ""}, {70, "enter"}, {20, ""},
}

type pingAnswer struct {
	Events []engine.Event       `json:"events"`
	Offers []engine.IssuedOffer `json:"offers"`
}

func walkIn(t *testing.T, base, customer, token string) []engine.IssuedOffer {
	t.Helper()
	var offers []engine.IssuedOffer
	for i, step := range walk {
		lat := 52.5219 + step.north/111194.9
		body := fmt.Sprintf(`{"customer_id": %q, "device_id": "d-1", "lat": %.7f, "lng": 13.4132, "accuracy_m": 8}`, customer, lat)
		status, raw := callAs(t, "POST", base+"/v1/pings", "app", token, body)
		if status != 200 {
			t.Fatalf("step %d: %d %s", i, status, raw)
		}
		var a pingAnswer
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			t.Fatal(err)
		}
		got := ""
		if len(a.Events) > 0 {
			got = a.Events[0].Type
		}
		if got != step.event || len(a.Events) > 1 {
			t.Fatalf("step %d (%v m): events %+v, want %q", i, step.north, a.Events, step.event)
		}
		if step.event != "enter" && len(a.Offers) != 0 {
			t.Fatalf("step %d: an offer without an enter: %+v", i, a.Offers)
		}
		offers = append(offers, a.Offers...)
	}
	return offers
}

const e2eStore = `{"name": "Alexanderplatz", "lat": 52.5219, "lng": 13.4132, "radius_m": 100, "tags": ["coffee"], "timezone": "Europe/Berlin"}`

// e2eAttributes declares the attribute e2eRule's audience names, for a
// test that saves the rule before any profile carries it.
const e2eAttributes = `{"attributes": [{"name": "tier", "type": "string"}]}`

const e2eRule = `{"name": "Flat White", "priority": 10,
 "trigger": {"on": "enter", "stores": {"tags": ["coffee"]}},
 "audience": "customer.attributes.tier == 'gold'",
 "offer": {"title": {"de": "Hallo {{.customer.first_name}}!", "en": "Hi {{.customer.first_name}}!"},
           "body": {"de": "{{.store.name}}: Code {{.coupon.code}}", "en": "{{.store.name}}: code {{.coupon.code}}"},
           "valid_for_s": 1800}}`

// The end-to-end scenario: a real redis-server (and a Redis
// Cluster, under `make cluster-test`), the FCM sender
// through firebase-admin-go, and an FCM test double that checks each
// request. Walking in, out and in again sends exactly two pushes, each
// with the customer's name and its own coupon code.
func TestEndToEndRedisAndFCM(t *testing.T) {
	for _, target := range redisTargets() {
		t.Run(target.name, func(t *testing.T) { endToEnd(t, target) })
	}
}

func endToEnd(t *testing.T, target redisTarget) {
	fcm := fcmtest.New(t)
	rdb := target.client(t)
	base, out := startServer(t, map[string]string{
		"NEARCAST_REDIS_URL":     target.url,
		"NEARCAST_PUSH":          "fcm",
		"NEARCAST_FCM_ENDPOINT":  fcm.URL(),
		"NEARCAST_FCM_PROJECT":   "nearcast-test",
		"NEARCAST_APP_KEYS":      "app",
		"NEARCAST_ADMIN_KEYS":    "admin",
		"NEARCAST_COUPON_SECRET": "e2e-secret",
		"NEARCAST_TOKEN_SECRETS": testTokenSecret,
		"NEARCAST_QUIET_HOURS":   "off", // the test runs at any hour
		"NEARCAST_MIN_OFFER_GAP": "0s",  // the walk goes in, out and in within seconds
	})
	_ = rdb
	anna := mintToken(t, base, "admin", "c-42")
	for _, c := range []struct{ method, path, key, token, body string }{
		{"PUT", "/v1/stores/s-alex", "admin", "", e2eStore},
		// The customer first: the rule's audience names her attribute tier.
		{"PUT", "/v1/customers/c-42", "admin", "", `{"first_name": "Anna", "locale": "de", "consent": {"location": true, "push": true}, "attributes": {"tier": "gold"}}`},
		{"PUT", "/v1/rules/flat-white", "admin", "", e2eRule},
		{"PUT", "/v1/customers/c-42/devices/d-1", "app", anna, `{"fcm_token": "anna-phone-token", "platform": "android"}`},
	} {
		if status, raw := callAs(t, c.method, base+c.path, c.key, c.token, c.body); status >= 300 {
			t.Fatalf("%s %s: %d %s", c.method, c.path, status, raw)
		}
	}
	offers := walkIn(t, base, "c-42", anna)
	if len(offers) != 2 || offers[0].CouponCode == offers[1].CouponCode {
		t.Fatalf("want two offers with distinct coupons, got %+v", offers)
	}

	deadline := time.Now().Add(10 * time.Second)
	for len(fcm.Messages()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would arrive by now
	msgs := fcm.Messages()
	if len(msgs) != 2 {
		t.Fatalf("FCM received %d pushes, want 2\n%s", len(msgs), out.String())
	}
	if fcm.Rejected() != 0 {
		t.Fatalf("FCM rejected %d malformed requests", fcm.Rejected())
	}
	for i, m := range msgs {
		o := offers[i]
		if m.Token != "anna-phone-token" || m.Title != "Hallo Anna!" || m.Body != "Alexanderplatz: Code "+o.CouponCode {
			t.Fatalf("push %d: token %q title %q body %q", i, m.Token, m.Title, m.Body)
		}
		if m.Data["coupon_code"] != o.CouponCode || m.Data["rule_id"] != "flat-white" || m.Data["store_id"] != "s-alex" {
			t.Fatalf("push %d data: %v", i, m.Data)
		}
	}
	// Delivered pushes leave the outbox.
	if n, _ := rdb.XLen(context.Background(), "nc:{outbox}:stream").Result(); n != 0 {
		t.Fatalf("outbox still holds %d entries", n)
	}
}

// The README's tour: `make run` (embedded Redis, demo data, log sender),
// one ping near Alexanderplatz, and the push in /v1/dev/pushes.
func TestDemoTour(t *testing.T) {
	base, out := startServer(t, map[string]string{})
	for _, want := range []string{"demo-app", "demo-admin", "c-42"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("the welcome text does not mention %s:\n%s", want, out.String())
		}
	}
	status, raw := call(t, "POST", base+"/v1/pings", "demo-app", `{"customer_id":"c-42","device_id":"d-1","lat":52.5215,"lng":13.4130}`)
	if status != 200 {
		t.Fatalf("ping: %d %s", status, raw)
	}
	var a pingAnswer
	json.Unmarshal([]byte(raw), &a)
	if len(a.Offers) != 1 || a.Offers[0].Title != "Hallo Anna!" || !strings.Contains(a.Offers[0].Body, "Flat White") {
		t.Fatalf("the tour's ping gives no coupon: %s", raw)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, raw = call(t, "GET", base+"/v1/dev/pushes?customer_id=c-42", "demo-admin", "")
		var p struct {
			Pushes []engine.Push `json:"pushes"`
		}
		json.Unmarshal([]byte(raw), &p)
		if len(p.Pushes) == 1 {
			if p.Pushes[0].Data["coupon_code"] != a.Offers[0].CouponCode || p.Pushes[0].Token != "demo-fcm-token-anna" || p.Pushes[0].SentAt.IsZero() {
				t.Fatalf("push: %s", raw)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no push in /v1/dev/pushes: %s", raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Pings of other customers are not listed for c-42, and an app key may not read pushes.
	if status, _ := call(t, "GET", base+"/v1/dev/pushes", "demo-app", ""); status != 403 {
		t.Fatalf("app key reads pushes: %d", status)
	}
	// Erased, Anna leaves nothing in the log sender's memory either.
	if status, raw := call(t, "DELETE", base+"/v1/customers/c-42", "demo-admin", ""); status != 204 {
		t.Fatalf("erase: %d %s", status, raw)
	}
	_, raw = call(t, "GET", base+"/v1/dev/pushes", "demo-admin", "")
	if strings.Contains(raw, "c-42") || strings.Contains(raw, "Anna") || strings.Contains(raw, a.Offers[0].CouponCode) {
		t.Fatalf("after erasure, the log sender still keeps: %s", raw)
	}
}

func TestSettingsRefused(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"real redis without keys", map[string]string{"NEARCAST_REDIS_URL": "redis://127.0.0.1:1", "NEARCAST_COUPON_SECRET": "x"}, "NEARCAST_APP_KEYS"},
		{"real redis without coupon secret", map[string]string{"NEARCAST_REDIS_URL": "redis://127.0.0.1:1", "NEARCAST_APP_KEYS": "a"}, "NEARCAST_COUPON_SECRET"},
		{"unknown push sender", map[string]string{"NEARCAST_PUSH": "sms"}, "NEARCAST_PUSH"},
		{"fcm without project", map[string]string{"NEARCAST_PUSH": "fcm"}, "NEARCAST_FCM_PROJECT"},
		{"bad duration", map[string]string{"NEARCAST_PUSH_TTL": "ten"}, "NEARCAST_PUSH_TTL"},
		{"bad offer gap", map[string]string{"NEARCAST_MIN_OFFER_GAP": "soon"}, "NEARCAST_MIN_OFFER_GAP"},
		{"bad quiet hours", map[string]string{"NEARCAST_QUIET_HOURS": "night"}, "NEARCAST_QUIET_HOURS"},
		{"bad daily limit", map[string]string{"NEARCAST_MAX_OFFERS_PER_DAY": "many"}, "NEARCAST_MAX_OFFERS_PER_DAY"},
		{"bad speed", map[string]string{"NEARCAST_MAX_ENTER_SPEED": "-1"}, "NEARCAST_MAX_ENTER_SPEED"},
		{"bad refusal of suspicious redemptions", map[string]string{"NEARCAST_REFUSE_SUSPICIOUS_REDEMPTIONS": "yes"}, "NEARCAST_REFUSE_SUSPICIOUS_REDEMPTIONS"},
		{"bad webhook age", map[string]string{"NEARCAST_WEBHOOK_MAX_AGE": "a day"}, "NEARCAST_WEBHOOK_MAX_AGE"},
		{"webhook timeout too long", map[string]string{"NEARCAST_WEBHOOK_TIMEOUT": "5m"}, "NEARCAST_WEBHOOK_TIMEOUT"},
		{"bad allowed network", map[string]string{"NEARCAST_WEBHOOK_ALLOW_NETS": "10.0.0.0/8,intranet"}, "NEARCAST_WEBHOOK_ALLOW_NETS"},
		{"streams too short", map[string]string{"NEARCAST_EVENTS_MAXLEN": "10"}, "NEARCAST_EVENTS_MAXLEN"},
		{"unknown events setting", map[string]string{"NEARCAST_EVENTS": "some"}, "NEARCAST_EVENTS"},
		{"bad question gap", map[string]string{"NEARCAST_FEEDBACK_STORE_GAP": "a month"}, "NEARCAST_FEEDBACK_STORE_GAP"},
		{"bad questions a month", map[string]string{"NEARCAST_FEEDBACK_PER_MONTH": "-2"}, "NEARCAST_FEEDBACK_PER_MONTH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(func(k string) string { return tt.env[k] })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("loadConfig = %v, want an error naming %s", err, tt.want)
			}
		})
	}
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil || !cfg.Demo || cfg.Push != "log" || cfg.AppKeys[0] != "demo-app" || len(cfg.CouponSecret) == 0 ||
		cfg.AllEvents || cfg.EventsMaxLen != 1_000_000 || cfg.Webhooks.MaxAge != 24*time.Hour {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	cfg, err = loadConfig(func(k string) string {
		return map[string]string{"NEARCAST_EVENTS": "all", "NEARCAST_WEBHOOK_ALLOW_NETS": "10.20.0.0/16, fd00:1::/64", "NEARCAST_EVENTS_MAXLEN": "5000"}[k]
	})
	if err != nil || !cfg.AllEvents || len(cfg.Webhooks.AllowNets) != 2 || cfg.EventsMaxLen != 5000 {
		t.Fatalf("events settings: %+v %v", cfg, err)
	}
}

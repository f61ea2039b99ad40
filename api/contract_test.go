package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/engine/push"
	"github.com/nearcast/nearcast/engine/webhook"
)

// The server answers what api/openapi.yaml says, and keeps doing so:
// every operation of the spec is called over HTTP, for a success and for
// at least one error, and each answer's status, content type, headers
// and body are validated against the spec's schemas (kin-openapi); each
// request meant to be right is validated against the spec too, so the
// spec asks no more of a client than the server does. A new operation
// fails this test until calls of it are added here.
func TestContract(t *testing.T) {
	k := newContract(t)
	tokens, err := api.NewCustomerTokens([][]byte{[]byte("contract-test-secret-0123456789abcdef")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rdb := srv.Client(t)
	pushes := push.NewLog(10, quiet)
	// full: customer tokens and the log sender; plain: neither; down: a
	// Redis that does not answer /readyz; limited: one coupon call a
	// minute per key.
	hooks := webhook.NewStore(rdb)
	full := k.serve(newClientWith(t, rdb, func(d *api.Deps) {
		d.Tokens, d.Pushes = tokens, pushes
		d.Webhooks = hooks
		d.WebhookHealth = func() map[string]webhook.Health {
			return map[string]webhook.Health{"crm": {Delivered: 3, Retried: 1, LastError: "receiver answered 503 Service Unavailable", LastStatus: 503}}
		}
	}))
	plain := k.serve(newClient(t, rdb))
	down := k.serve(newClientWith(t, rdb, func(d *api.Deps) {
		d.Ready = func(context.Context) error { return errors.New("down") }
	}))
	minute := time.Now() // the limited calls all fall in one minute of this clock
	limited := k.serve(newClientWith(t, rdb, func(d *api.Deps) {
		d.CouponRate = engine.NewCredentialRate(rdb, 1, func() time.Time { return minute })
	}))
	const admin, app = "admin-key", "app-key"
	big := map[string]string{"X-Padding": strings.Repeat("x", 16<<10)}
	ifMatch := func(etag string) map[string]string { return map[string]string{"If-Match": etag} }
	ndjson := "application/x-ndjson"
	store := `{"name": "Alexanderplatz", "lat": 52.5219, "lng": 13.4132, "radius_m": 100, "tags": ["coffee", "berlin"], "timezone": "Europe/Berlin"}`

	// Health, readiness, metrics.
	full.call(cc{"GET", "/healthz", "", "", "", nil}, 200)
	full.bad(cc{"GET", "/healthz", "", "", "", big}, 431)
	full.call(cc{"GET", "/readyz", "", "", "", nil}, 200)
	down.call(cc{"GET", "/readyz", "", "", "", nil}, 503)
	full.call(cc{"GET", "/metrics", "", "", "", nil}, 200)
	full.bad(cc{"GET", "/metrics", "", "", "", big}, 431)

	// Stores.
	full.call(cc{"PUT", "/v1/stores/s-alex", admin, "", store, nil}, 201)
	full.call(cc{"PUT", "/v1/stores/s-alex", admin, "", store, nil}, 200)
	full.call(cc{"PUT", "/v1/stores/s-mall", admin, "", `{"name": "Mall", "polygon": [[52.5100, 13.3750], [52.5100, 13.3770], [52.5090, 13.3770], [52.5090, 13.3750]], "opening_hours": {"mon": ["07:00-20:00"]}}`, nil}, 201)
	full.bad(cc{"PUT", "/v1/stores/s-alex", admin, "", `{"lat": 95, "lng": 200, "radius_m": 1}`, nil}, 400)
	full.call(cc{"PUT", "/v1/stores/s-alex", "", "", store, nil}, 401)
	full.call(cc{"GET", "/v1/stores/s-alex", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/stores/s-nowhere", admin, "", "", nil}, 404)
	full.call(cc{"GET", "/v1/stores", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/stores?limit=1", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/stores?near=52.5219,13.4132&radius_m=2000", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/stores?near=91,13", admin, "", "", nil}, 400)
	full.call(cc{"GET", "/v1/stores", app, "", "", nil}, 403)
	full.call(cc{"POST", "/v1/stores", admin, ndjson, `{"id": "s-hack", "name": "Hackescher Markt", "lat": 52.5225, "lng": 13.4025, "tags": ["coffee"]}` + "\n" + `{"id": "s-far", "name": "Far", "lat": 152.5, "lng": 13.4}`, nil}, 200)
	full.bad(cc{"POST", "/v1/stores", admin, "application/json", `{"id": "s-x", "name": "X", "lat": 52, "lng": 13}`, nil}, 415)
	full.call(cc{"GET", "/v1/stores/s-alex/cells", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/stores/s-nowhere/cells", admin, "", "", nil}, 404)
	full.call(cc{"PUT", "/v1/stores/s-gone", admin, "", `{"name": "Gone", "lat": 48.1, "lng": 11.5}`, nil}, 201)
	full.call(cc{"DELETE", "/v1/stores/s-gone", admin, "", "", nil}, 204)
	full.call(cc{"DELETE", "/v1/stores/s-gone", admin, "", "", nil}, 404)

	// Customers and their devices.
	full.call(cc{"PUT", "/v1/customers/c-42", admin, "", customerAnna, nil}, 201)
	full.call(cc{"PUT", "/v1/customers/c-42", admin, "", customerAnna, nil}, 200)
	full.bad(cc{"PUT", "/v1/customers/c-42", admin, "", `{"firstname": "A"}`, nil}, 400)
	full.call(cc{"GET", "/v1/customers/c-42", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/customers/nobody", admin, "", "", nil}, 404)
	full.call(cc{"PATCH", "/v1/customers/c-42", admin, "application/merge-patch+json", `{"last_name": "Schmidt", "attributes": {"visits_30d": null}}`, nil}, 200)
	full.call(cc{"PATCH", "/v1/customers/nobody", admin, "application/merge-patch+json", `{"first_name": "X"}`, nil}, 404)
	full.call(cc{"POST", "/v1/customers", admin, ndjson, `{"id": "c-1", "first_name": "Ben", "consent": {"location": true}}` + "\n" + `{"id": "c-2", "firstname": "Cem"}`, nil}, 200)
	full.bad(cc{"POST", "/v1/customers", admin, "text/csv", "id\nc-3", nil}, 415)
	full.call(cc{"PUT", "/v1/customers/c-42/devices/d-1", admin, "", `{"fcm_token": "tok-1", "platform": "android"}`, nil}, 201)
	full.call(cc{"PUT", "/v1/customers/c-42/devices/d-1", app, "", `{"device_id": "d-1", "fcm_token": "tok-1", "platform": "android"}`, nil}, 200)
	full.call(cc{"PUT", "/v1/customers/c-42/devices/d-2", app, "", `{"fcm_token": "tok-2", "platform": "web"}`, nil}, 200)
	full.bad(cc{"PUT", "/v1/customers/c-42/devices/d-1", app, "", `{"fcm_token": "t", "platform": "nokia"}`, nil}, 400)
	full.call(cc{"GET", "/v1/customers/c-42/devices", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/customers/c-42/devices", app, "", "", nil}, 403)
	full.call(cc{"DELETE", "/v1/customers/c-42/devices/d-2", app, "", "", nil}, 204)
	full.call(cc{"DELETE", "/v1/customers/c-42/devices/d-2", admin, "", "", nil}, 404)
	full.call(cc{"POST", "/v1/customers/c-42/tokens", admin, "", `{"ttl_s": 3600}`, nil}, 201)
	full.call(cc{"POST", "/v1/customers/c-42/tokens", admin, "", "", nil}, 201)
	full.bad(cc{"POST", "/v1/customers/c-42/tokens", admin, "", `{"ttl_s": 5}`, nil}, 400)
	plain.call(cc{"POST", "/v1/customers/c-42/tokens", admin, "", "", nil}, 422)
	full.call(cc{"DELETE", "/v1/customers/c-42/tokens", admin, "", "", nil}, 204)
	full.call(cc{"DELETE", "/v1/customers/c-42/tokens", app, "", "", nil}, 403)

	// The catalog of attributes the profiles above taught it.
	full.call(cc{"GET", "/v1/attributes", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/attributes", app, "", "", nil}, 403)
	full.call(cc{"PUT", "/v1/attributes", admin, "", `{"attributes": [{"name": "birthday", "type": "string", "description": "YYYY-MM-DD"}]}`, nil}, 200)
	full.bad(cc{"PUT", "/v1/attributes", admin, "", `{"attributes": [{"name": "birthday", "type": "date"}]}`, nil}, 400)

	// Rules.
	full.call(cc{"PUT", "/v1/rules/latte?dry_run=true", admin, "", ruleLatte, nil}, 200)
	full.call(cc{"PUT", "/v1/rules/latte", admin, "", ruleLatte, nil}, 201)
	etag := full.last.Header.Get("ETag")
	full.call(cc{"PUT", "/v1/rules/latte", admin, "", ruleLatte, ifMatch(etag)}, 200)
	full.call(cc{"PUT", "/v1/rules/latte", admin, "", ruleLatte, ifMatch(etag)}, 409)
	full.call(cc{"PUT", "/v1/rules/latte", admin, "", strings.Replace(ruleLatte, "customer.attributes.tier == 'gold'", "customer.attributes.tier ==", 1), nil}, 422)
	full.call(cc{"GET", "/v1/rules/latte", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/rules/nope", admin, "", "", nil}, 404)
	full.call(cc{"GET", "/v1/rules?limit=1", admin, "", "", nil}, 200)
	full.bad(cc{"GET", "/v1/rules?limit=0", admin, "", "", nil}, 400)
	full.call(cc{"GET", "/v1/rules/latte/versions", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/rules/nope/versions", admin, "", "", nil}, 404)
	full.call(cc{"GET", "/v1/rules/latte/versions/1", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/rules/latte/versions/9", admin, "", "", nil}, 404)
	full.call(cc{"POST", "/v1/rules/latte/versions/1/restore", admin, "", "", nil}, 200)
	full.call(cc{"POST", "/v1/rules/nope/versions/1/restore", admin, "", "", nil}, 404)
	full.call(cc{"POST", "/v1/rules/latte/preview", admin, "", `{"customer_id": "c-42"}`, nil}, 200)
	full.call(cc{"POST", "/v1/rules/draft/preview", admin, "", `{"customer_id": "c-42", "store_id": "s-alex", "distance_m": 25, "rule": ` + ruleLatte + `}`, nil}, 200)
	full.call(cc{"POST", "/v1/rules/latte/preview", admin, "", `{"customer_id": "nobody"}`, nil}, 404)

	// Pings: the first enters s-alex and is offered the rule's coupon.
	ping := `{"customer_id": "c-42", "device_id": "d-1", "lat": 52.5219, "lng": 13.4132, "accuracy_m": 5, "speed_mps": 1.2, "context": {"app_state": "background"}}`
	full.call(cc{"POST", "/v1/pings?explain=true", admin, "", ping, nil}, 200)
	var entered struct{ Offers []engine.IssuedOffer }
	if err := json.Unmarshal(full.last.Raw, &entered); err != nil || len(entered.Offers) != 1 {
		t.Fatalf("the ping was offered nothing: %v %s", err, full.last.Raw)
	}
	code := entered.Offers[0].CouponCode
	full.call(cc{"POST", "/v1/pings", app, "", ping, nil}, 200)
	full.call(cc{"POST", "/v1/pings?dry_run=true", admin, "", `{"customer_id": "nobody", "lat": 52.5219, "lng": 13.4132}`, nil}, 200)
	full.bad(cc{"POST", "/v1/pings", app, "", `{"customer_id": "c-42", "lat": 95, "lng": 13.4}`, nil}, 400)
	full.call(cc{"POST", "/v1/pings?explain=true", app, "", ping, nil}, 403)
	full.bad(cc{"POST", "/v1/pings", app, "", `{"customer_id": "c-42", "lat": 52.5, "lng": 13.4, "context": {"pad": "` + strings.Repeat("x", 1<<20) + `"}}`, nil}, 413)
	full.call(cc{"POST", "/v1/pings/batch", app, "", `{"customer_id": "c-42", "device_id": "d-1", "fixes": [
		{"lat": 52.5219, "lng": 13.4132, "accuracy_m": 5, "ts": "` + time.Now().UTC().Add(-time.Minute).Format(time.RFC3339) + `"},
		{"lat": 52.5300, "lng": 13.4132, "accuracy_m": 5, "ts": "` + time.Now().UTC().Format(time.RFC3339) + `"},
		{"lat": 52.5300, "lng": 13.4132, "accuracy_m": 5, "ts": "` + time.Now().UTC().Format(time.RFC3339) + `"}]}`, nil}, 200)
	full.bad(cc{"POST", "/v1/pings/batch", app, "", `{"customer_id": "c-42", "fixes": [{"lat": 52.52, "lng": 13.41}]}`, nil}, 400)
	full.call(cc{"POST", "/v1/simulate", admin, "", `{"customer_id": "c-42", "device_id": "d-1", "pings": [
		{"lat": 52.5264, "lng": 13.4132, "ts": "2026-11-30T08:00:00Z"},
		{"lat": 52.5220, "lng": 13.4132, "accuracy_m": 10, "ts": "2026-11-30T08:03:00Z", "speed_mps": 1, "context": {"app_state": "foreground"}},
		{"lat": 52.5221, "lng": 13.4132, "accuracy_m": 500},
		{"lat": 52.5264, "lng": 13.4132}]}`, nil}, 200)
	full.call(cc{"POST", "/v1/simulate", admin, "", `{"customer_id": "c-42", "start": {"days": 1, "at": "07:50"}, "pings": [
		{"lat": 52.5264, "lng": 13.4132}, {"lat": 52.5220, "lng": 13.4132, "after_s": 120}]}`, nil}, 200)
	full.call(cc{"POST", "/v1/simulate", admin, "", `{"customer_id": "nobody", "pings": [{"lat": 52.5, "lng": 13.4}]}`, nil}, 404)
	full.bad(cc{"POST", "/v1/simulate", admin, "", `{"customer_id": "c-42", "pings": [{"lat": 200, "lng": 13.4}]}`, nil}, 400)

	// Coupons, the funnel, the export and the pushes the offer queued.
	full.call(cc{"GET", "/v1/coupons/" + code, admin, "", "", nil}, 200)
	forged := code[:8] + "0000"
	if forged == code {
		forged = code[:8] + "1111"
	}
	full.call(cc{"GET", "/v1/coupons/" + forged, admin, "", "", nil}, 404)
	limited.call(cc{"GET", "/v1/coupons/" + code, admin, "", "", nil}, 200)
	limited.call(cc{"GET", "/v1/coupons/" + code, admin, "", "", nil}, 429)
	full.call(cc{"POST", "/v1/coupons/" + code + "/opened", app, "", "", nil}, 200)
	full.call(cc{"POST", "/v1/coupons/" + forged + "/opened", app, "", "", nil}, 404)
	full.call(cc{"POST", "/v1/coupons/" + code + "/redeem", admin, "", `{"store_id": "s-alex"}`, nil}, 200)
	full.call(cc{"POST", "/v1/coupons/" + code + "/redeem", admin, "", "", nil}, 409)
	full.call(cc{"GET", "/v1/rules/latte/stats", admin, "", "", nil}, 200)
	full.bad(cc{"GET", "/v1/rules/latte/stats?from=yesterday", admin, "", "", nil}, 400)
	// Location trust: a mocked fix, and the report of suspicious fixes.
	full.call(cc{"POST", "/v1/pings", app, "", `{"customer_id": "c-42", "device_id": "d-1", "lat": 52.5219, "lng": 13.4132, "accuracy_m": 5, "mocked": true}`, nil}, 200)
	full.call(cc{"GET", "/v1/fraud", admin, "", "", nil}, 200)
	if !strings.Contains(string(full.last.Raw), `"customer_id":"c-42"`) {
		t.Fatalf("the mocked fix is not in the report: %s", full.last.Raw)
	}
	full.call(cc{"GET", "/v1/fraud?from=2026-11-01&to=2026-11-07&limit=10", admin, "", "", nil}, 200)
	full.bad(cc{"GET", "/v1/fraud?limit=0", admin, "", "", nil}, 400)
	full.call(cc{"GET", "/v1/fraud", app, "", "", nil}, 403)
	full.call(cc{"GET", "/v1/customers/c-42/export", admin, "", "", nil}, 200)
	var export struct {
		QueuedPushes []engine.Push `json:"queued_pushes"`
	}
	if err := json.Unmarshal(full.last.Raw, &export); err != nil || len(export.QueuedPushes) == 0 {
		t.Fatalf("the export has no queued push: %v %s", err, full.last.Raw)
	}
	for _, p := range export.QueuedPushes {
		if err := pushes.Send(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	full.call(cc{"GET", "/v1/customers/nobody/export", admin, "", "", nil}, 404)
	full.call(cc{"GET", "/v1/dev/pushes?customer_id=c-42", admin, "", "", nil}, 200)
	plain.call(cc{"GET", "/v1/dev/pushes", admin, "", "", nil}, 404)

	// Webhooks: a subscription, its versions, health, test event and dead letters.
	hook := `{"url": "https://crm.example.com/hooks/nearcast", "events": ["enter", "coupon.redeemed"], "store_tags": ["berlin"]}`
	full.call(cc{"PUT", "/v1/webhooks/crm", admin, "", hook, nil}, 201)
	hookTag := full.last.Header.Get("ETag")
	full.call(cc{"PUT", "/v1/webhooks/crm", admin, "", hook, ifMatch(hookTag)}, 200)
	full.call(cc{"PUT", "/v1/webhooks/crm", admin, "", hook, ifMatch(hookTag)}, 409)
	full.call(cc{"PUT", "/v1/webhooks/meta", admin, "", `{"url": "https://169.254.169.254/latest/meta-data/", "events": ["enter"]}`, nil}, 400)
	full.bad(cc{"PUT", "/v1/webhooks/crm", admin, "", `{"url": "https://crm.example.com/h", "events": ["teleport"], "colour": "red"}`, nil}, 400)
	full.call(cc{"PUT", "/v1/webhooks/paused", admin, "", `{"url": "https://paused.example.com/h", "events": ["exit"], "enabled": false}`, nil}, 201)
	full.call(cc{"GET", "/v1/webhooks", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/webhooks", app, "", "", nil}, 403)
	plain.call(cc{"GET", "/v1/webhooks", admin, "", "", nil}, 404)
	full.call(cc{"GET", "/v1/webhooks/crm", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/webhooks/nope", admin, "", "", nil}, 404)
	full.bad(cc{"GET", "/v1/webhooks/a%7Bb%7D", admin, "", "", nil}, 400)
	full.call(cc{"GET", "/v1/webhooks/crm/versions", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/webhooks/nope/versions", admin, "", "", nil}, 404)
	full.call(cc{"POST", "/v1/webhooks/crm/test", admin, "", "", nil}, 202)
	full.call(cc{"POST", "/v1/webhooks/paused/test", admin, "", "", nil}, 422)
	full.call(cc{"POST", "/v1/webhooks/nope/test", admin, "", "", nil}, 404)
	dead, _ := json.Marshal(webhook.DeadLetter{Event: webhook.Event{ID: "evt-dead-1", Type: "enter", CustomerID: "c-42", StoreID: "s-alex", At: time.Now().UTC()},
		Entry: "1795939200000-0", Attempts: 31, LastStatus: 500, LastError: "receiver answered 500 Internal Server Error", DeadAt: time.Now().UTC()})
	if err := rdb.LPush(context.Background(), "nc:{hookdead:crm}:list", dead, dead).Err(); err != nil {
		t.Fatal(err)
	}
	full.call(cc{"GET", "/v1/webhooks/crm/dead?offset=0&limit=10", admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/webhooks/nope/dead", admin, "", "", nil}, 404)
	full.bad(cc{"GET", "/v1/webhooks/crm/dead?limit=0", admin, "", "", nil}, 400)
	full.call(cc{"POST", "/v1/webhooks/crm/dead/replay", admin, "", `{"event_ids": ["evt-dead-1"]}`, nil}, 200)
	full.call(cc{"POST", "/v1/webhooks/crm/dead/replay", admin, "", "", nil}, 200)
	full.call(cc{"POST", "/v1/webhooks/nope/dead/replay", admin, "", "", nil}, 404)
	full.bad(cc{"POST", "/v1/webhooks/crm/dead/replay", admin, "", `{"event_ids": ["a b"]}`, nil}, 400)
	full.call(cc{"DELETE", "/v1/webhooks/crm/dead?event_id=evt-dead-1&event_id=evt-other", admin, "", "", nil}, 200)
	full.call(cc{"DELETE", "/v1/webhooks/crm/dead", admin, "", "", nil}, 200)
	full.call(cc{"DELETE", "/v1/webhooks/nope/dead", admin, "", "", nil}, 404)
	full.call(cc{"DELETE", "/v1/webhooks/paused", admin, "", "", nil}, 204)
	full.call(cc{"DELETE", "/v1/webhooks/paused", admin, "", "", nil}, 404)

	// Variants (docs/experiments.md): a rule whose offer has two, and one
	// whose bandit chooses; their documents, previews, an offer of a
	// variant, its coupon, and the experiment in the rule's stats.
	contractVariants(t, full, rdb)

	// The customer's voice (docs/feedback.md): a question after a visit,
	// its answer and the answer's errors, the scores of a store and of a
	// rule, and a simulated week with the demo's pair of rules.
	contractFeedback(t, k, full, rdb, tokens, pushes)

	// What is left: deletions.
	full.call(cc{"DELETE", "/v1/rules/latte", admin, "", "", nil}, 204)
	full.call(cc{"DELETE", "/v1/rules/latte", admin, "", "", nil}, 404)
	full.call(cc{"DELETE", "/v1/customers/c-1", admin, "", "", nil}, 204)
	full.bad(cc{"DELETE", "/v1/customers/c%20x", admin, "", "", nil}, 400)

	k.covered()
}

// cc is one call: method, path (with its query), bearer key, content
// type (JSON when a body is given without one), body and more headers.
type cc struct {
	method, path, key, contentType, body string
	headers                              map[string]string
}

// contract validates calls and their answers against the spec, and
// counts which operations answered a success and an error.
type contract struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	host   string // the spec's first server, for routing
	done   map[string]*[2]int
	n      int
}

func newContract(t *testing.T) *contract {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not valid OpenAPI 3: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Servers) == 0 {
		t.Fatal("openapi.yaml names no server")
	}
	// The spec takes NDJSON bodies as text.
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.PlainBodyDecoder)
	k := &contract{t: t, doc: doc, router: router, host: strings.TrimSuffix(doc.Servers[0].URL, "/"), done: map[string]*[2]int{}}
	t.Cleanup(func() { t.Logf("%d answers validated against openapi.yaml", k.n) })
	return k
}

// endpoint is one app under test, served on loopback.
type endpoint struct {
	k    *contract
	app  *fiber.App
	base string
	// hc is the endpoint's own client: the shared transport would keep an
	// idle connection to a server of an earlier test whose port this one
	// may have been given again, and write into it (broken pipe).
	hc   *http.Client
	last struct {
		Header http.Header
		Raw    []byte
	}
}

func (k *contract) serve(c *client) *endpoint {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		k.t.Fatal(err)
	}
	go c.app.Listener(ln)
	tr := &http.Transport{}
	k.t.Cleanup(func() { tr.CloseIdleConnections(); c.app.Shutdown() })
	return &endpoint{k: k, app: c.app, base: "http://" + ln.Addr().String(), hc: &http.Client{Timeout: 30 * time.Second, Transport: tr}}
}

// call sends a request meant to be right by the spec, validates it, and
// validates the answer, which must have status want.
func (e *endpoint) call(c cc, want int) { e.exchange(c, want, true) }

// bad sends a request that breaks the spec on purpose (a value out of
// range, another media type): only the answer is validated.
func (e *endpoint) bad(c cc, want int) { e.exchange(c, want, false) }

func (e *endpoint) exchange(c cc, want int, valid bool) {
	t := e.k.t
	t.Helper()
	name := c.method + " " + c.path
	if len(name) > 120 {
		name = name[:120] + "…"
	}
	ct := c.contentType
	if ct == "" && c.body != "" {
		ct = fiber.MIMEApplicationJSON
	}
	build := func(base string) *http.Request {
		req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		for h, v := range c.headers {
			req.Header.Set(h, v)
		}
		return req
	}
	// Over loopback, as a client would call; a body over the limit in
	// memory (the server answers 413 and closes the connection while the
	// client may still be writing it, which fails the write).
	var res *http.Response
	var err error
	if len(c.body) > 64<<10 {
		res, err = e.app.Test(build(e.base), 30000)
	} else {
		res, err = e.hc.Do(build(e.base))
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	raw, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	e.last.Header, e.last.Raw = res.Header, raw
	if res.StatusCode != want {
		t.Errorf("%s: status %d, want %d: %s", name, res.StatusCode, want, raw)
		return
	}

	// The operation the spec has for the request.
	req := build(e.k.host)
	route, params, err := e.k.router.FindRoute(req)
	if err != nil {
		t.Errorf("%s: no operation of the spec for it: %v", name, err)
		return
	}
	ctx := context.Background()
	// Errors name the value's place and the rule it breaks, not the schema.
	brief := []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true, SchemaValidationOptions: brief}}
	if valid {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("%s: the request, which the server takes, breaks the spec: %v", name, err)
		}
	}
	err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
		Body:    io.NopCloser(bytes.NewReader(raw)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, SchemaValidationOptions: brief},
	})
	if err != nil {
		t.Errorf("%s: the answer %d breaks the spec: %v\n%s", name, res.StatusCode, err, raw)
	}
	// An answer the spec gives no content has none.
	if resp := route.Operation.Responses.Status(res.StatusCode); resp != nil && resp.Value != nil && len(resp.Value.Content) == 0 && len(raw) > 0 {
		t.Errorf("%s: the spec's %d has no content, the answer does: %s", name, res.StatusCode, raw)
	}
	e.k.n++
	op := route.Method + " " + route.Path
	if e.k.done[op] == nil {
		e.k.done[op] = new([2]int)
	}
	if res.StatusCode < 300 {
		e.k.done[op][0]++
	} else {
		e.k.done[op][1]++
	}
}

// covered fails for each operation of the spec that did not answer both
// a success and an error here.
func (k *contract) covered() {
	k.t.Helper()
	var missing []string
	for path, item := range k.doc.Paths.Map() {
		if item.Extensions["x-nearcast-status"] == "planned" {
			continue
		}
		for method := range item.Operations() {
			op := method + " " + path
			got := k.done[op]
			switch {
			case got == nil:
				missing = append(missing, op+": not called")
			case got[0] == 0:
				missing = append(missing, op+": no success answer")
			case got[1] == 0:
				missing = append(missing, op+": no error answer")
			}
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		k.t.Errorf("%s; add calls of it to TestContract", m)
	}
}

// ruleVariants is a rule at s-zoo whose offer has two variants, a and b,
// in two languages, by weight 1:3; b with a validity of its own.
const ruleVariants = `{"name": "Flat white, two ways", "priority": 20, "holdout_pct": 10,
 "trigger": {"on": "enter", "stores": {"ids": ["s-zoo"]}},
 "caps": {"per_customer_per_day": 1},
 "offer": {"valid_for_s": 3600, "default_locale": "en",
   "variants": [
     {"id": "a", "discount": "10%", "weight": 1,
      "title": {"en": "10% off your flat white, {{.customer.first_name}}", "de": "10 % auf deinen Flat White, {{.customer.first_name}}"},
      "body":  {"en": "At {{.store.name}}, for the next hour", "de": "Bei {{.store.name}}, eine Stunde lang"}},
     {"id": "b", "discount": "size-up", "weight": 3, "valid_for_s": 1800,
      "title": {"en": "A free size-up, {{.customer.first_name}}", "de": "Gratis eine Größe größer, {{.customer.first_name}}"},
      "body":  {"en": "Any flat white at {{.store.name}}", "de": "Jeder Flat White bei {{.store.name}}"}}]}}`

// ruleBandit is a rule whose bandit learns apart per tier.
const ruleBandit = `{"name": "Pastry bandit", "priority": 5,
 "trigger": {"on": "enter", "stores": {"ids": ["s-zoo"]}},
 "offer": {"selection": "bandit",
   "bandit": {"min_per_variant": 50, "floor_pct": 10, "segment_by": "customer.attributes.tier", "segments": ["gold", "silver"]},
   "variants": [
     {"id": "croissant", "title": {"en": "A croissant on us"}, "body": {"en": "At {{.store.name}}"}},
     {"id": "muffin", "title": {"en": "A muffin on us"}, "body": {"en": "At {{.store.name}}"}},
     {"id": "cookie", "weight": 2, "title": {"en": "A cookie on us"}, "body": {"en": "At {{.store.name}}"}}]}}`

// contractVariants calls, on full, what variants add: the rules' PUT and
// GET, a variant document refused with each fault at its field, the
// preview, a ping offered a variant (explained), its coupon, and the
// stats with an experiment, from funnel counters seeded in Redis.
func contractVariants(t *testing.T, full *endpoint, rdb redis.UniversalClient) {
	t.Helper()
	const admin = "admin-key"
	ctx := context.Background()
	full.call(cc{"PUT", "/v1/stores/s-zoo", admin, "", `{"name": "Zoo", "lat": 52.5079, "lng": 13.3376, "radius_m": 80, "tags": ["zoo"]}`, nil}, 201)
	full.call(cc{"PUT", "/v1/customers/c-7", admin, "", `{"first_name": "Ida", "locale": "en", "consent": {"location": true, "push": true}, "attributes": {"tier": "silver"}}`, nil}, 201)

	full.call(cc{"PUT", "/v1/rules/flat-white?dry_run=true", admin, "", ruleVariants, nil}, 200)
	full.call(cc{"PUT", "/v1/rules/flat-white", admin, "", ruleVariants, nil}, 201)
	full.call(cc{"GET", "/v1/rules/flat-white", admin, "", "", nil}, 200)
	var saved struct {
		Offer struct {
			Selection string
			Variants  []struct {
				ID        string
				Weight    int
				ValidForS int `json:"valid_for_s"`
			}
		}
	}
	if err := json.Unmarshal(full.last.Raw, &saved); err != nil || saved.Offer.Selection != "weighted" || len(saved.Offer.Variants) != 2 ||
		saved.Offer.Variants[0].ValidForS != 3600 || saved.Offer.Variants[1].ValidForS != 1800 || saved.Offer.Variants[1].Weight != 3 {
		t.Fatalf("the saved rule with variants: %v %s", err, full.last.Raw)
	}
	full.call(cc{"PUT", "/v1/rules/pastry", admin, "", ruleBandit, nil}, 201)
	full.call(cc{"GET", "/v1/rules/pastry/versions", admin, "", "", nil}, 200)
	if !strings.Contains(string(full.last.Raw), `"bandit":{"min_per_variant":50,"floor_pct":10,"segment_by":"customer.attributes.tier","segments":["gold","silver"]}`) {
		t.Fatalf("the bandit's settings as saved: %s", full.last.Raw)
	}
	// A document wrong in four places: each fault at its field.
	bad := strings.NewReplacer(`"id": "a"`, `"id": "A!"`, `"weight": 3`, `"weight": 5000`, `"discount": "size-up"`, `"discount": "size,up"`,
		`"default_locale": "en",`, `"default_locale": "en", "selection": "bandit", "bandit": {"floor_pct": 60},`).Replace(ruleVariants)
	full.bad(cc{"PUT", "/v1/rules/flat-white", admin, "", bad, nil}, 400)
	wantFaults(t, full.last.Raw, "offer.variants[0].id", "offer.variants[1].weight", "offer.variants[1].discount", "offer.bandit.floor_pct")
	full.bad(cc{"POST", "/v1/rules/flat-white/preview", admin, "", `{"customer_id": "c-7", "rule": ` + strings.Replace(ruleVariants, `"de": "Bei {{.store.name}}, eine Stunde lang"`, `"fr": "Chez {{.store.name}}"`, 1) + `}`, nil}, 400)
	wantFaults(t, full.last.Raw, "rule.offer.variants[0].body")

	// The preview: every variant in every language, and the customer's.
	full.call(cc{"POST", "/v1/rules/flat-white/preview", admin, "", `{"customer_id": "c-7"}`, nil}, 200)
	var pv struct {
		CustomerVariant string `json:"customer_variant"`
		Messages        []struct{ Variant, Lang, Title string }
	}
	if err := json.Unmarshal(full.last.Raw, &pv); err != nil || len(pv.Messages) != 4 || pv.CustomerVariant == "" ||
		pv.Messages[0].Variant != "a" || pv.Messages[3].Variant != "b" || pv.Messages[3].Title != "Gratis eine Größe größer, Ida" {
		t.Fatalf("preview of variants: %v %s", err, full.last.Raw)
	}
	full.call(cc{"POST", "/v1/rules/pastry/preview", admin, "", `{"customer_id": "c-7", "rule": ` + ruleBandit + `}`, nil}, 200)

	// A ping into s-zoo gets the customer's variant (the higher priority
	// of the two rules), explained; so does its coupon.
	full.call(cc{"POST", "/v1/pings?explain=true", admin, "", `{"customer_id": "c-7", "device_id": "d-7", "lat": 52.5079, "lng": 13.3376, "accuracy_m": 5}`, nil}, 200)
	var res struct {
		Offers  []engine.IssuedOffer
		Explain []engine.Explanation
	}
	if err := json.Unmarshal(full.last.Raw, &res); err != nil || len(res.Offers) != 1 || res.Offers[0].RuleID != "flat-white" {
		t.Fatalf("the ping into s-zoo was not offered flat-white: %v %s", err, full.last.Raw)
	}
	o := res.Offers[0]
	if o.Variant != pv.CustomerVariant {
		t.Fatalf("offered variant %q, the preview said %q", o.Variant, pv.CustomerVariant)
	}
	explained := false
	for _, x := range res.Explain {
		if x.RuleID == "flat-white" {
			explained = x.Result == engine.ResultSent && x.Variant == o.Variant
		}
	}
	if !explained {
		t.Fatalf("the explanation does not name the variant sent: %s", full.last.Raw)
	}
	full.call(cc{"GET", "/v1/coupons/" + o.CouponCode, admin, "", "", nil}, 200)
	var cp engine.Coupon
	if err := json.Unmarshal(full.last.Raw, &cp); err != nil || cp.Variant != o.Variant {
		t.Fatalf("the coupon of variant %s: %v %s", o.Variant, err, full.last.Raw)
	}

	// The experiment: b redeems more than a, with data over two days
	// (the counters the engine keeps: engine/variants.go variantFields).
	now := time.Now().UTC()
	seed := map[string]map[string]int64{
		now.AddDate(0, 0, -1).Format("20060102"): {
			"issued": 600, "issued|v:a": 300, "issued|v:b": 300, "issued|s:s-zoo": 600, "issued|v:a|s:s-zoo": 300, "issued|v:b|s:s-zoo": 300,
		},
		now.Format("20060102"): {
			"issued": 1400, "issued|v:a": 200, "issued|v:b": 1200, "issued|s:s-zoo": 1400, "issued|v:a|s:s-zoo": 200, "issued|v:b|s:s-zoo": 1200,
			"sent": 1380, "sent|v:a": 195, "sent|v:b": 1185, "opened": 600, "opened|v:a": 80, "opened|v:b": 520,
			"redeemed": 145, "redeemed|v:a": 25, "redeemed|v:b": 120, "redeemed|s:s-zoo": 145,
			"returned_treated": 520, "returned_treated|v:a": 100, "returned_treated|v:b": 420, "returned_treated|s:s-zoo": 520,
			"holdout": 220, "holdout|s:s-zoo": 220, "returned_holdout": 44, "returned_holdout|s:s-zoo": 44,
		},
	}
	for day, fields := range seed {
		for f, n := range fields {
			if err := rdb.HIncrBy(ctx, "nc:{rule:flat-white}:funnel:"+day, f, n).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	full.call(cc{"GET", "/v1/rules/flat-white/stats", admin, "", "", nil}, 200)
	var st struct{ Experiment *engine.ExperimentReport }
	if err := json.Unmarshal(full.last.Raw, &st); err != nil || st.Experiment == nil {
		t.Fatalf("stats of a rule with variants, without an experiment: %v %s", err, full.last.Raw)
	}
	ex := st.Experiment
	if ex.Best != "b" || !strings.HasPrefix(ex.Verdict, "B redeems") || len(ex.Allocation) != 2 || len(ex.Stores) != 1 || ex.Stores[0].Uplift == nil ||
		ex.Variants[0].VersusBest == nil || ex.Variants[1].VersusHoldout == nil || !ex.Variants[0].EnoughData {
		t.Fatalf("the experiment: %s", full.last.Raw)
	}
	full.call(cc{"GET", "/v1/rules/flat-white/stats?from=" + now.Format("2006-01-02") + "&to=" + now.Format("2006-01-02"), admin, "", "", nil}, 200)
	// Not enough data yet: the bandit's rule, with no offers.
	full.call(cc{"GET", "/v1/rules/pastry/stats", admin, "", "", nil}, 200)
	if !strings.Contains(string(full.last.Raw), `"verdict":"Not enough data yet`) {
		t.Fatalf("the bandit's experiment without data: %s", full.last.Raw)
	}
	full.bad(cc{"GET", "/v1/rules/flat-white/stats?from=" + now.Format("2006-01-02") + "&to=" + now.AddDate(0, 0, -3).Format("2006-01-02"), admin, "", "", nil}, 400)
	full.call(cc{"DELETE", "/v1/rules/pastry", admin, "", "", nil}, 204)
	full.call(cc{"DELETE", "/v1/rules/flat-white", admin, "", "", nil}, 204)
}

// wantFaults checks that an error answer names each field among its faults.
func wantFaults(t *testing.T, raw []byte, fields ...string) {
	t.Helper()
	var e struct {
		Error struct {
			Field   string
			Details []struct{ Field, Message string }
		}
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	named := map[string]bool{e.Error.Field: true}
	for _, d := range e.Error.Details {
		named[d.Field] = true
	}
	for _, f := range fields {
		if !named[f] {
			t.Errorf("no fault names %s: %s", f, raw)
		}
	}
}

// Feedback rules as the demo writes them (cmd/nearcast/demo.go), at
// s-fb: a question after a visit of five minutes or more; a recovery
// offer for a customer whose last NPS answer was a detractor's, for two
// weeks; and the promotion, held back from them meanwhile.
const (
	ruleAsk = `{"name": "How was your visit?", "priority": 3,
 "trigger": {"on": "exit", "stores": {"ids": ["s-fb"]}},
 "audience": "visit.duration_s >= 300",
 "offer": {"kind": "feedback", "question": {"scale": "nps", "comment": true},
   "title": {"en": "How was {{.store.name}}?", "de": "Wie war es bei {{.store.name}}?"},
   "body":  {"en": "How likely are you to recommend us, from 0 to 10?", "de": "Wie wahrscheinlich empfiehlst du uns weiter, von 0 bis 10?"}}}`
	ruleSorry = `{"name": "Sorry: a coffee on us", "priority": 20,
 "trigger": {"on": "enter", "stores": {"ids": ["s-fb"]}},
 "audience": "customer.last_nps >= 0 && customer.last_nps <= 6 && visit.days_since_feedback <= 14",
 "caps": {"per_customer_total": 1},
 "offer": {"title": {"en": "We are sorry, {{.customer.first_name}}"}, "body": {"en": "Your next coffee at {{.store.name}} is on us."}, "valid_for_s": 604800}}`
	rulePromo = `{"name": "Flat White for gold members", "priority": 10,
 "trigger": {"on": "enter", "stores": {"ids": ["s-fb"]}},
 "audience": "customer.attributes.tier == 'gold' && (customer.last_nps < 0 || customer.last_nps > 6 || visit.days_since_feedback > 14)",
 "caps": {"per_customer_per_day": 1},
 "offer": {"title": {"en": "20% off your flat white"}, "body": {"en": "At {{.store.name}}, today"}}}`
)

// contractFeedback calls, on full, what the customer's voice adds: the
// feedback rules' documents (and their faults), a customer who agreed to
// be asked, a real walk out of a store after six minutes that is asked a
// question, the question as a coupon (which cannot be redeemed), its
// push, the answer with each of its errors (a late one on a server whose
// clock is 8 days on), the store's and the rule's scores, the export,
// and a simulated week with an answer in it.
func contractFeedback(t *testing.T, k *contract, full *endpoint, rdb redis.UniversalClient, tokens *api.CustomerTokens, pushes *push.Log) {
	t.Helper()
	const admin, app = "admin-key", "app-key"
	// later is the API 8 days on: the question's 7 days have passed.
	later := k.serve(newClientWith(t, rdb, func(d *api.Deps) {
		d.Tokens = tokens
		d.Ledger = engine.NewLedger(rdb, engine.NewCodeSigner([]byte("s")), quiet, func() time.Time { return time.Now().Add(8 * 24 * time.Hour) })
	}))
	full.call(cc{"PUT", "/v1/stores/s-fb", admin, "", `{"name": "Feedback Café", "lat": 52.4900, "lng": 13.3900, "radius_m": 60, "tags": ["fb"]}`, nil}, 201)
	full.call(cc{"PUT", "/v1/customers/c-9", admin, "", `{"first_name": "Jo", "locale": "en", "consent": {"location": true, "push": true, "feedback": true}, "attributes": {"tier": "gold"}}`, nil}, 201)
	if !strings.Contains(string(full.last.Raw), `"feedback":true`) {
		t.Fatalf("consent.feedback as saved: %s", full.last.Raw)
	}
	full.call(cc{"PUT", "/v1/customers/c-9/devices/d-9", admin, "", `{"fcm_token": "tok-9", "platform": "ios"}`, nil}, 201)
	full.call(cc{"PUT", "/v1/customers/c-10", admin, "", `{"first_name": "Kim", "locale": "en", "consent": {"location": true, "push": true, "feedback": true}, "attributes": {"tier": "gold"}}`, nil}, 201)

	// The rules, and a feedback offer wrong in five ways, each named.
	full.call(cc{"PUT", "/v1/rules/how-fb?dry_run=true", admin, "", ruleAsk, nil}, 200)
	full.call(cc{"PUT", "/v1/rules/how-fb", admin, "", ruleAsk, nil}, 201)
	var saved struct {
		Offer struct {
			Kind     string
			Question *struct {
				Scale   string
				Comment bool
			}
			ValidForS int `json:"valid_for_s"`
		}
	}
	if err := json.Unmarshal(full.last.Raw, &saved); err != nil || saved.Offer.Kind != "feedback" || saved.Offer.Question == nil ||
		saved.Offer.Question.Scale != "nps" || !saved.Offer.Question.Comment || saved.Offer.ValidForS != 7*86400 {
		t.Fatalf("the feedback rule as saved: %v %s", err, full.last.Raw)
	}
	full.call(cc{"PUT", "/v1/rules/sorry-fb", admin, "", ruleSorry, nil}, 201)
	full.call(cc{"PUT", "/v1/rules/promo-fb", admin, "", rulePromo, nil}, 201)
	full.call(cc{"GET", "/v1/rules/promo-fb", admin, "", "", nil}, 200)
	if strings.Contains(string(full.last.Raw), `"kind"`) {
		t.Fatalf("a coupon's offer is answered with a kind: %s", full.last.Raw)
	}
	full.call(cc{"PUT", "/v1/rules/how-fb", admin, "", strings.Replace(ruleAsk, `"question": {"scale": "nps", "comment": true},`, `"valid_for_s": 700000, "redeem_at_issuing_store": true,`, 1), nil}, 400)
	wantFaults(t, full.last.Raw, "offer.question", "offer.valid_for_s", "offer.redeem_at_issuing_store")
	full.bad(cc{"PUT", "/v1/rules/how-fb", admin, "", strings.Replace(ruleAsk, `"scale": "nps"`, `"scale": "stars"`, 1), nil}, 400)
	wantFaults(t, full.last.Raw, "offer.question.scale")
	full.bad(cc{"PUT", "/v1/rules/how-fb", admin, "", strings.Replace(ruleAsk, `"kind": "feedback"`, `"kind": "survey"`, 1), nil}, 400)
	wantFaults(t, full.last.Raw, "offer.kind")
	full.call(cc{"PUT", "/v1/rules/promo-fb", admin, "", strings.Replace(rulePromo, `"offer": {`, `"offer": {"question": {"scale": "csat"}, `, 1), nil}, 400)
	wantFaults(t, full.last.Raw, "offer.question")

	// A real visit of six minutes: the fix on entering is too old to be
	// offered anything, the one on leaving is asked the question.
	now := time.Now().UTC()
	full.call(cc{"POST", "/v1/pings", app, "", `{"customer_id": "c-9", "device_id": "d-9", "lat": 52.4900, "lng": 13.3900, "accuracy_m": 5, "ts": "` + now.Add(-6*time.Minute).Format(time.RFC3339) + `"}`, nil}, 200)
	full.call(cc{"POST", "/v1/pings?explain=true", admin, "", `{"customer_id": "c-9", "device_id": "d-9", "lat": 52.4945, "lng": 13.3900, "accuracy_m": 5, "ts": "` + now.Format(time.RFC3339) + `"}`, nil}, 200)
	var asked struct {
		Offers  []engine.IssuedOffer
		Explain []engine.Explanation
	}
	if err := json.Unmarshal(full.last.Raw, &asked); err != nil || len(asked.Offers) != 1 || asked.Offers[0].Kind != "feedback" || asked.Offers[0].RuleID != "how-fb" {
		t.Fatalf("leaving after six minutes was not asked: %v %s", err, full.last.Raw)
	}
	q := asked.Offers[0].CouponCode

	// The question is issued as a coupon, and cannot be redeemed.
	full.call(cc{"GET", "/v1/coupons/" + q, admin, "", "", nil}, 200)
	var cp engine.Coupon
	if err := json.Unmarshal(full.last.Raw, &cp); err != nil || cp.Kind != "feedback" || cp.Scale != "nps" || cp.Score != nil {
		t.Fatalf("the question as a coupon: %v %s", err, full.last.Raw)
	}
	full.call(cc{"POST", "/v1/coupons/" + q + "/redeem", admin, "", `{"store_id": "s-fb"}`, nil}, 422)
	wantFaults(t, full.last.Raw, "code")

	// Its push: a question's keys, no coupon_code.
	full.call(cc{"GET", "/v1/customers/c-9/export", admin, "", "", nil}, 200)
	var export struct {
		QueuedPushes []engine.Push `json:"queued_pushes"`
	}
	if err := json.Unmarshal(full.last.Raw, &export); err != nil || len(export.QueuedPushes) != 1 {
		t.Fatalf("the export has no queued question: %v %s", err, full.last.Raw)
	}
	data := export.QueuedPushes[0].Data
	if _, ok := data["coupon_code"]; ok || data["kind"] != "feedback" || data["feedback_id"] != q || data["scale"] != "nps" || data["comment"] != "true" ||
		data["title"] != "How was Feedback Café?" || data["body"] == "" || data["rule_id"] != "how-fb" || data["store_id"] != "s-fb" {
		t.Fatalf("the question's push data: %v", data)
	}
	if err := pushes.Send(context.Background(), export.QueuedPushes[0]); err != nil {
		t.Fatal(err)
	}
	full.call(cc{"GET", "/v1/dev/pushes?customer_id=c-9", admin, "", "", nil}, 200)

	// The answer: the customer's own credential, once, in time, on the scale.
	mint := func(customer string) map[string]string {
		full.call(cc{"POST", "/v1/customers/" + customer + "/tokens", admin, "", "", nil}, 201)
		var tok struct{ Token string }
		if err := json.Unmarshal(full.last.Raw, &tok); err != nil || tok.Token == "" {
			t.Fatalf("token of %s: %v %s", customer, err, full.last.Raw)
		}
		return map[string]string{api.HeaderCustomerToken: tok.Token}
	}
	jo, anna := mint("c-9"), mint("c-42")
	answer := `{"score": 3, "comment": "The milk was cold."}`
	full.call(cc{"POST", "/v1/feedback/" + q, app, "", answer, nil}, 401)
	full.call(cc{"POST", "/v1/feedback/" + q, app, "", answer, anna}, 404)
	full.call(cc{"POST", "/v1/feedback/" + q, app, "", `{"customer_id": "c-42", "score": 3}`, jo}, 403)
	full.call(cc{"POST", "/v1/feedback/" + q, admin, "", `{"score": 3}`, nil}, 400)
	wantFaults(t, full.last.Raw, "customer_id")
	full.bad(cc{"POST", "/v1/feedback/" + q, app, "", `{"score": 11}`, jo}, 400)
	wantFaults(t, full.last.Raw, "score")
	full.bad(cc{"POST", "/v1/feedback/" + q, app, "", `{"comment": "no score"}`, jo}, 400)
	wantFaults(t, full.last.Raw, "score")
	full.bad(cc{"POST", "/v1/feedback/" + q, app, "", `{"score": 3, "comment": "` + strings.Repeat("x", 501) + `"}`, jo}, 400)
	wantFaults(t, full.last.Raw, "comment")
	full.bad(cc{"POST", "/v1/feedback/" + q, app, "text/plain", answer, jo}, 415)
	full.call(cc{"POST", "/v1/feedback/" + q[:8] + "0000", admin, "", `{"customer_id": "c-9", "score": 3}`, nil}, 404)
	later.call(cc{"POST", "/v1/feedback/" + q, app, "", answer, jo}, 410)
	full.call(cc{"POST", "/v1/feedback/" + strings.ToLower(q[:4]) + "-" + q[4:], app, "", answer, jo}, 201)
	if !strings.Contains(string(full.last.Raw), `"feedback_id":"`+q+`"`) {
		t.Fatalf("the answer: %s", full.last.Raw)
	}
	full.call(cc{"POST", "/v1/feedback/" + q, app, "", `{"score": 9}`, jo}, 409)
	full.call(cc{"GET", "/v1/coupons/" + q, admin, "", "", nil}, 200)
	if err := json.Unmarshal(full.last.Raw, &cp); err != nil || cp.Score == nil || *cp.Score != 3 || cp.AnsweredAt == nil {
		t.Fatalf("the question answered: %v %s", err, full.last.Raw)
	}
	full.call(cc{"GET", "/v1/customers/c-9/export", admin, "", "", nil}, 200)
	if !strings.Contains(string(full.last.Raw), `"comment":"The milk was cold."`) {
		t.Fatalf("the export has no answer: %s", full.last.Raw)
	}

	// The scores: the store's and the rule's, one detractor of one asked.
	full.call(cc{"GET", "/v1/stores/s-fb/feedback", admin, "", "", nil}, 200)
	var rep engine.FeedbackReport
	if err := json.Unmarshal(full.last.Raw, &rep); err != nil || rep.StoreID != "s-fb" || rep.Asked != 1 || rep.Answered != 1 || rep.NPS == nil ||
		rep.NPS.Detractors != 1 || rep.NPS.Score != -100 || rep.NPS.EnoughData || len(rep.Weeks) != 1 || rep.CSAT != nil {
		t.Fatalf("the store's scores: %v %s", err, full.last.Raw)
	}
	day := now.Format("2006-01-02")
	full.call(cc{"GET", "/v1/stores/s-fb/feedback?from=" + day + "&to=" + day, admin, "", "", nil}, 200)
	full.call(cc{"GET", "/v1/stores/s-nowhere/feedback", admin, "", "", nil}, 404)
	full.bad(cc{"GET", "/v1/stores/s-fb/feedback?from=last-week", admin, "", "", nil}, 400)
	full.call(cc{"GET", "/v1/stores/s-fb/feedback", app, "", "", nil}, 403)
	full.call(cc{"GET", "/v1/rules/how-fb/feedback", admin, "", "", nil}, 200)
	if err := json.Unmarshal(full.last.Raw, &rep); err != nil || rep.RuleID != "how-fb" || rep.Asked != 1 || rep.Answered != 1 || rep.NPS == nil || rep.NPS.Distribution[3] != 1 {
		t.Fatalf("the rule's scores: %v %s", err, full.last.Raw)
	}
	full.call(cc{"GET", "/v1/rules/how-fb/feedback?from=" + day + "&to=" + now.AddDate(0, 0, -1).Format("2006-01-02"), admin, "", "", nil}, 400)
	full.call(cc{"GET", "/v1/rules/nope/feedback", admin, "", "", nil}, 404)

	// A simulated week, Kim's: the promotion on entering, the question on
	// leaving ten minutes later, an answer of 3; two days on the
	// recovery offer and not the promotion, no second question about the
	// store (feedback_limit), and a second answer to the one question.
	full.call(cc{"POST", "/v1/simulate", admin, "", `{"customer_id": "c-10", "start": {"days": 1, "at": "09:00"}, "pings": [
		{"lat": 52.4900, "lng": 13.3900, "accuracy_m": 5},
		{"lat": 52.4945, "lng": 13.3900, "accuracy_m": 5, "after_s": 600},
		{"lat": 52.4945, "lng": 13.3900, "accuracy_m": 5, "after_s": 300, "answer": 3},
		{"lat": 52.4900, "lng": 13.3900, "accuracy_m": 5, "after_s": 172800},
		{"lat": 52.4945, "lng": 13.3900, "accuracy_m": 5, "after_s": 600},
		{"lat": 52.4945, "lng": 13.3900, "accuracy_m": 5, "after_s": 60, "answer": 9}]}`, nil}, 200)
	var sim struct {
		Steps []struct {
			Offers  []engine.IssuedOffer
			Explain []engine.Explanation
			Answer  *engine.SimulatedAnswer
		}
	}
	if err := json.Unmarshal(full.last.Raw, &sim); err != nil || len(sim.Steps) != 6 {
		t.Fatalf("the simulated week: %v %s", err, full.last.Raw)
	}
	offered := func(i int) string {
		var out []string
		for _, o := range sim.Steps[i].Offers {
			out = append(out, o.RuleID+"/"+o.Kind)
		}
		return strings.Join(out, " ")
	}
	result := func(i int, rule string) string {
		for _, x := range sim.Steps[i].Explain {
			if x.RuleID == rule {
				return x.Result
			}
		}
		return ""
	}
	for i, want := range []string{"promo-fb/", "how-fb/feedback", "", "sorry-fb/", "", ""} {
		if offered(i) != want {
			t.Fatalf("simulated step %d offered %q, want %q: %s", i, offered(i), want, full.last.Raw)
		}
	}
	if a := sim.Steps[2].Answer; a == nil || a.Result != "answered" || a.Score != 3 || a.FeedbackID != sim.Steps[1].Offers[0].CouponCode {
		t.Fatalf("the simulated answer: %+v", a)
	}
	if result(3, "promo-fb") != engine.ReasonAudience || result(4, "how-fb") != "feedback_limit" {
		t.Fatalf("two days on: the promotion %q, the question %q", result(3, "promo-fb"), result(4, "how-fb"))
	}
	if a := sim.Steps[5].Answer; a == nil || a.Result != "answered_already" {
		t.Fatalf("a second simulated answer: %+v", a)
	}
	full.bad(cc{"POST", "/v1/simulate", admin, "", `{"customer_id": "c-10", "pings": [{"lat": 52.49, "lng": 13.39, "answer": "three"}]}`, nil}, 400)

	full.call(cc{"DELETE", "/v1/rules/how-fb", admin, "", "", nil}, 204)
	full.call(cc{"DELETE", "/v1/rules/sorry-fb", admin, "", "", nil}, 204)
	full.call(cc{"DELETE", "/v1/rules/promo-fb", admin, "", "", nil}, 204)
}

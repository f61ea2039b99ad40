package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/hooktest"
	"github.com/nearcast/nearcast/internal/redistest"
)

// hookEnv is an API with webhooks, and what delivers them: the live view
// of the subscriptions and a deliverer (started by deliver).
type hookEnv struct {
	*client
	store *webhook.Store
	live  *webhook.Live
	d     *webhook.Deliverer
}

func newHookEnv(t *testing.T, rdb redis.UniversalClient, cfg webhook.Config) *hookEnv {
	t.Helper()
	e := &hookEnv{store: webhook.NewStore(rdb)}
	e.live = webhook.NewLive(e.store, quiet)
	e.live.PollEvery = 50 * time.Millisecond
	e.d = webhook.NewDeliverer(rdb, e.live, cfg, quiet)
	e.client = newClientWith(t, rdb, func(d *api.Deps) { d.Webhooks, d.WebhookHealth = e.store, e.d.Health })
	return e
}

// deliver runs the live view and the deliverer until the test ends.
func (e *hookEnv) deliver(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.live.Run(ctx) })
	wg.Go(func() { e.d.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// hookConfig tries for 300 ms at most, backing off in milliseconds.
func hookConfig() webhook.Config {
	return webhook.Config{MaxAge: 300 * time.Millisecond, BackoffBase: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		Timeout: 300 * time.Millisecond, Poll: 20 * time.Millisecond, LeaseTTL: time.Second}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const hookCRM = `{"url": "https://crm.example.com/hooks/nearcast", "events": ["offer.issued", "enter"], "store_tags": ["berlin"]}`

func TestWebhooksCRUD(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newHookEnv(t, be.New(t), hookConfig())
			r := c.admin("PUT", "/v1/webhooks/crm", hookCRM)
			secret, _ := r.Body["secret"].(string)
			if r.Status != 201 || r.Header.Get("ETag") != `"1"` || r.Body["version"] != 1.0 || r.Body["enabled"] != true || !strings.HasPrefix(secret, "whsec_") {
				t.Fatalf("create: %d %s", r.Status, r.Raw)
			}
			if ev := fmt.Sprint(r.Body["events"]); ev != "[enter offer.issued]" || r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("events %s, Cache-Control %q", ev, r.Header.Get("Cache-Control"))
			}
			// Replaced without a secret: it keeps its own; If-Match as for rules.
			put := func(body, ifMatch string) response {
				return c.request("PUT", "/v1/webhooks/crm", "admin-key", "application/json", body, map[string]string{"If-Match": ifMatch})
			}
			paused := strings.Replace(hookCRM, `"store_tags"`, `"enabled": false, "store_tags"`, 1)
			if r := put(paused, `"1"`); r.Status != 200 || r.Body["version"] != 2.0 || r.Body["secret"] != secret || r.Body["enabled"] != false {
				t.Fatalf("replace: %d %s", r.Status, r.Raw)
			}
			wantError(t, put(hookCRM, `"1"`), 409, "conflict", "")
			wantError(t, put(hookCRM, `three`), 400, "invalid_argument", "If-Match")
			wantError(t, c.request("PUT", "/v1/webhooks/new", "admin-key", "application/json", hookCRM, map[string]string{"If-Match": `"4"`}), 409, "conflict", "")

			r = c.admin("GET", "/v1/webhooks/crm", "")
			health, _ := r.Body["health"].(map[string]any)
			if r.Status != 200 || r.Body["secret"] != secret || r.Header.Get("ETag") != `"2"` || health == nil ||
				health["lag"] != 0.0 || health["pending"] != 0.0 || health["oldest_age_s"] != 0.0 || health["dead_letters"] != 0.0 || health["replica"] == nil {
				t.Fatalf("get: %d %s", r.Status, r.Raw)
			}
			if _, ok := health["oldest_at"]; ok {
				t.Errorf("oldest_at with nothing waiting: %s", r.Raw)
			}
			wantError(t, c.admin("GET", "/v1/webhooks/nope", ""), 404, "not_found", "")
			wantError(t, c.admin("GET", "/v1/webhooks/a%7Bb%7D", ""), 400, "invalid_argument", "webhook_id")

			if r := c.admin("PUT", "/v1/webhooks/till", `{"url": "http://127.0.0.1:9/h", "events": ["coupon.redeemed"]}`); r.Status != 201 {
				t.Fatalf("second: %d %s", r.Status, r.Raw)
			}
			r = c.admin("GET", "/v1/webhooks", "")
			list, _ := r.Body["webhooks"].([]any)
			if r.Status != 200 || len(list) != 2 || strings.Contains(r.Raw, "whsec_") {
				t.Fatalf("list: %d %s", r.Status, r.Raw)
			}
			if first := list[0].(map[string]any); first["id"] != "crm" || first["health"] == nil {
				t.Errorf("list order or health: %s", r.Raw)
			}

			r = c.admin("GET", "/v1/webhooks/crm/versions", "")
			vs, _ := r.Body["versions"].([]any)
			if r.Status != 200 || len(vs) != 2 || vs[0].(map[string]any)["version"] != 1.0 || vs[1].(map[string]any)["enabled"] != false || strings.Contains(r.Raw, "whsec_") {
				t.Fatalf("versions: %d %s", r.Status, r.Raw)
			}
			wantError(t, c.admin("GET", "/v1/webhooks/nope/versions", ""), 404, "not_found", "")

			if r := c.admin("DELETE", "/v1/webhooks/crm", ""); r.Status != 204 {
				t.Fatalf("delete: %d %s", r.Status, r.Raw)
			}
			wantError(t, c.admin("GET", "/v1/webhooks/crm", ""), 404, "not_found", "")
			wantError(t, c.admin("DELETE", "/v1/webhooks/crm", ""), 404, "not_found", "")
			if r := c.admin("GET", "/v1/webhooks/crm/versions", ""); r.Status != 200 {
				t.Errorf("versions after delete: %d %s", r.Status, r.Raw)
			}
			// Created again, it continues the versions, with a new secret.
			if r := c.admin("PUT", "/v1/webhooks/crm", hookCRM); r.Status != 201 || r.Body["version"] != 3.0 || r.Body["secret"] == secret {
				t.Fatalf("again: %d %s", r.Status, r.Raw)
			}

			wantError(t, c.do("GET", "/v1/webhooks", "app-key", ""), 403, "permission_denied", "")
			wantError(t, c.do("PUT", "/v1/webhooks/crm", "app-key", hookCRM), 403, "permission_denied", "")
			wantError(t, c.do("POST", "/v1/webhooks/crm/test", "", ""), 401, "unauthenticated", "")
			off := newClient(t, be.New(t))
			wantError(t, off.admin("GET", "/v1/webhooks", ""), 404, "not_found", "")
			wantError(t, off.admin("PUT", "/v1/webhooks/crm", hookCRM), 404, "not_found", "")
		})
	}
}

// Bad input is named by its field, every fault at once, and nothing is
// written.
func TestWebhookFaults(t *testing.T) {
	rdb := srv.Client(t)
	c := newHookEnv(t, rdb, hookConfig())
	before := keysSnapshot(t, rdb)
	r := c.admin("PUT", "/v1/webhooks/crm", `{"url": "http://crm.example.com/h", "events": ["enter", "teleport", "webhook.test"],
		"store_ids": ["s 1"], "secret": "hunter2", "colour": "red"}`)
	if r.Status != 400 {
		t.Fatalf("%d %s", r.Status, r.Raw)
	}
	var fields []string
	for _, d := range r.Body["error"].(map[string]any)["details"].([]any) {
		fields = append(fields, d.(map[string]any)["field"].(string))
	}
	if got := strings.Join(fields, " "); got != "colour events[1] events[2] secret store_ids[0] url" {
		t.Errorf("faults at %s: %s", got, r.Raw)
	}
	for _, bad := range []struct{ body, field string }{
		{`{"url": "https://169.254.169.254/latest/meta-data/", "events": ["enter"]}`, "url"},
		{`{"url": "https://10.0.0.7/h", "events": ["enter"]}`, "url"},
		{`{"url": "https://[fd00::1]/h", "events": ["enter"]}`, "url"},
		{`{"url": "https://crm.example.com/h"}`, "events"},
		{`{"url": "https://crm.example.com/h", "events": "enter"}`, "events"},
		{`{"id": "other", "url": "https://crm.example.com/h", "events": ["enter"]}`, "id"},
		{`{"url": "https://crm.example.com/h", "events": ["enter"], "store_tags": [""]}`, "store_tags[0]"},
	} {
		wantError(t, c.admin("PUT", "/v1/webhooks/crm", bad.body), 400, "invalid_argument", bad.field)
	}
	wantError(t, c.admin("PUT", "/v1/webhooks/a%20b", hookCRM), 400, "invalid_argument", "webhook_id")
	wantError(t, c.do("PUT", "/v1/webhooks/crm", "admin-key", "not json"), 400, "invalid_argument", "")
	wantError(t, c.request("PUT", "/v1/webhooks/crm", "admin-key", "text/plain", hookCRM, nil), 415, "unsupported_media_type", "")
	if after := keysSnapshot(t, rdb); after != before {
		t.Error("a refused subscription changed Redis")
	}

	if r := c.admin("PUT", "/v1/webhooks/crm", hookCRM); r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Raw)
	}
	wantError(t, c.admin("GET", "/v1/webhooks/crm/dead?limit=0", ""), 400, "invalid_argument", "limit")
	wantError(t, c.admin("GET", "/v1/webhooks/crm/dead?offset=-1", ""), 400, "invalid_argument", "offset")
	wantError(t, c.admin("POST", "/v1/webhooks/crm/dead/replay", `{"event_ids": ["ok", "not ok"]}`), 400, "invalid_argument", "event_ids[1]")
	wantError(t, c.admin("POST", "/v1/webhooks/crm/dead/replay", `{"ids": ["x"]}`), 400, "invalid_argument", "ids")
	wantError(t, c.admin("DELETE", "/v1/webhooks/crm/dead?event_id=a%7Bb%7D", ""), 400, "invalid_argument", "event_id[0]")
	wantError(t, c.admin("POST", "/v1/webhooks/crm/test", `{"now": true}`), 400, "invalid_argument", "now")
	for _, call := range []struct{ method, path string }{
		{"GET", "/v1/webhooks/nope/dead"}, {"POST", "/v1/webhooks/nope/dead/replay"}, {"DELETE", "/v1/webhooks/nope/dead"}, {"POST", "/v1/webhooks/nope/test"},
	} {
		wantError(t, c.admin(call.method, call.path, ""), 404, "not_found", "")
	}
	if r := c.admin("PUT", "/v1/webhooks/crm", strings.Replace(hookCRM, `"url"`, `"enabled": false, "url"`, 1)); r.Status != 200 {
		t.Fatalf("disable: %d %s", r.Status, r.Raw)
	}
	wantError(t, c.admin("POST", "/v1/webhooks/crm/test", ""), 422, "failed_precondition", "enabled")
}

// The test event reaches the subscription's receiver, signed with its
// secret, and shows in the health.
func TestWebhookTestEventArrives(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newHookEnv(t, be.New(t), hookConfig())
			c.deliver(t)
			secret := webhook.NewSecret()
			recv := hooktest.New(t, secret)
			body := fmt.Sprintf(`{"url": %q, "events": ["coupon.redeemed"], "store_ids": ["s-none"], "secret": %q}`, recv.URL(), secret)
			if r := c.admin("PUT", "/v1/webhooks/till", body); r.Status != 201 || r.Body["secret"] != secret {
				t.Fatalf("create: %d %s", r.Status, r.Raw)
			}
			r := c.admin("POST", "/v1/webhooks/till/test", "")
			id, _ := r.Body["event_id"].(string)
			if r.Status != 202 || id == "" {
				t.Fatalf("test: %d %s", r.Status, r.Raw)
			}
			if err := recv.WaitAccepted(1, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			q := recv.Accepted()[0]
			if q.VerifyErr != nil || q.ID != id || q.Event.Type != webhook.TypeTest || q.Event.ID != id {
				t.Fatalf("received %+v (%v)", q.Event, q.VerifyErr)
			}
			waitFor(t, "the delivery counted", func() bool {
				r := c.admin("GET", "/v1/webhooks/till", "")
				h, _ := r.Body["health"].(map[string]any)
				rep, _ := h["replica"].(map[string]any)
				return rep != nil && rep["delivered"] == 1.0 && h["lag"] == 0.0 && h["pending"] == 0.0
			})
		})
	}
}

// Events a receiver did not take become dead letters, which the API
// lists by page, replays to the receiver come back, and drops.
func TestWebhookDeadLettersThroughTheAPI(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			rdb := be.New(t)
			c := newHookEnv(t, rdb, hookConfig())
			c.deliver(t)
			secret := webhook.NewSecret()
			recv := hooktest.New(t, secret)
			recv.Answer(hooktest.Fail)
			if r := c.admin("PUT", "/v1/webhooks/crm", fmt.Sprintf(`{"url": %q, "events": ["enter"], "secret": %q}`, recv.URL(), secret)); r.Status != 201 {
				t.Fatalf("create: %d %s", r.Status, r.Raw)
			}
			waitFor(t, "the subscription live", func() bool { s := c.live.Current(); return s != nil && s.Subs["crm"] != nil })
			em := webhook.NewEmitter(rdb, 0)
			var ids []string
			for i, cust := range []string{"anna", "ben", "cleo"} {
				ev := webhook.Event{ID: fmt.Sprintf("evt-%d", i), Type: "enter", CustomerID: cust, StoreID: "s-alex"}
				if err := em.Emit(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, ev.ID)
			}
			waitFor(t, "three dead letters", func() bool {
				r := c.admin("GET", "/v1/webhooks/crm/dead", "")
				return r.Body["total"] == 3.0
			})
			r := c.admin("GET", "/v1/webhooks/crm/dead?offset=1&limit=2", "")
			var page struct {
				DeadLetters []webhook.DeadLetter `json:"dead_letters"`
				Total       int                  `json:"total"`
			}
			if err := json.Unmarshal([]byte(r.Raw), &page); err != nil || r.Status != 200 || page.Total != 3 || len(page.DeadLetters) != 2 {
				t.Fatalf("page: %d %s", r.Status, r.Raw)
			}
			for _, d := range page.DeadLetters {
				if d.Attempts < 1 || d.LastStatus != 500 || d.Event.Type != "enter" {
					t.Errorf("dead letter %+v", d)
				}
			}
			if h := c.admin("GET", "/v1/webhooks/crm", "").Body["health"].(map[string]any); h["dead_letters"] != 3.0 {
				t.Errorf("health: %v", h)
			}

			recv.Answer(hooktest.OK)
			if r := c.admin("POST", "/v1/webhooks/crm/dead/replay", `{"event_ids": ["`+ids[1]+`"]}`); r.Status != 200 || r.Body["replayed"] != 1.0 {
				t.Fatalf("replay one: %d %s", r.Status, r.Raw)
			}
			if err := recv.WaitAccepted(1, 5*time.Second); err != nil || recv.Accepted()[0].ID != ids[1] {
				t.Fatalf("replayed: %v", err)
			}
			if r := c.admin("POST", "/v1/webhooks/crm/dead/replay", "{}"); r.Status != 200 || r.Body["replayed"] != 2.0 {
				t.Fatalf("replay all: %d %s", r.Status, r.Raw)
			}
			if err := recv.WaitAccepted(3, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			for _, q := range recv.Accepted() {
				if q.VerifyErr != nil {
					t.Errorf("%s: %v", q.ID, q.VerifyErr)
				}
			}
			if r := c.admin("GET", "/v1/webhooks/crm/dead", ""); r.Body["total"] != 0.0 {
				t.Errorf("after the replays: %s", r.Raw)
			}

			// Dropped: by event id, then all.
			recv.Answer(hooktest.Fail)
			for i, cust := range []string{"dana", "eve", "finn"} {
				if err := em.Emit(context.Background(), webhook.Event{ID: fmt.Sprintf("evt-drop-%d", i), Type: "enter", CustomerID: cust}); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "three more dead letters", func() bool { return c.admin("GET", "/v1/webhooks/crm/dead", "").Body["total"] == 3.0 })
			if r := c.admin("DELETE", "/v1/webhooks/crm/dead?event_id=evt-drop-0&event_id=evt-drop-2&event_id=evt-never", ""); r.Status != 200 || r.Body["dropped"] != 2.0 {
				t.Fatalf("drop two: %d %s", r.Status, r.Raw)
			}
			r = c.admin("GET", "/v1/webhooks/crm/dead", "")
			if r.Body["total"] != 1.0 || !strings.Contains(r.Raw, `"evt-drop-1"`) {
				t.Fatalf("left: %s", r.Raw)
			}
			if r := c.admin("DELETE", "/v1/webhooks/crm/dead", ""); r.Status != 200 || r.Body["dropped"] != 1.0 {
				t.Fatalf("drop all: %d %s", r.Status, r.Raw)
			}
			if r := c.admin("GET", "/v1/webhooks/crm/dead", ""); r.Body["total"] != 0.0 {
				t.Errorf("after dropping: %s", r.Raw)
			}
		})
	}
}

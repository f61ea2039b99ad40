package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/nearcast/nearcast/api"
	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/engine/webhook"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/internal/sandbox"
	"github.com/nearcast/nearcast/rules"
)

var srv *redistest.Server

func TestMain(m *testing.M) { redistest.Main(m, &srv) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type client struct {
	t   testing.TB
	app *fiber.App
	rdb redis.UniversalClient
}

func newClient(t testing.TB, rdb redis.UniversalClient) *client {
	t.Helper()
	return newClientWith(t, rdb, nil)
}

// newClientWith is newClient with its dependencies changed by with.
func newClientWith(t testing.TB, rdb redis.UniversalClient, with func(*api.Deps)) *client {
	t.Helper()
	live := rules.NewLive(rdb, quiet)
	if err := live.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg := engine.DefaultConfig()
	cfg.QuietHours = [2]int{} // tests run at any hour
	eng := engine.New(rdb, live, engine.NewCodeSigner([]byte("s")), cfg, quiet, nil)
	deps := api.Deps{
		Live: live, Customers: engine.NewCustomers(rdb), Engine: eng, Ledger: engine.NewLedger(rdb, engine.NewCodeSigner([]byte("s")), nil, nil), Redis: rdb, Sandbox: sandbox.Miniredis,
		Ready:   func(ctx context.Context) error { return rdb.Ping(ctx).Err() },
		AppKeys: []string{"app-key"}, AdminKeys: []string{"admin-key"}, Log: quiet,
	}
	if with != nil {
		with(&deps)
	}
	app := api.New(deps)
	return &client{t: t, app: app, rdb: rdb}
}

type response struct {
	Status int
	Body   map[string]any
	Raw    string
	Header http.Header
}

func (c *client) do(method, path, key, body string) response {
	c.t.Helper()
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	return c.request(method, path, key, ct, body, nil)
}

// request sends any request; headers may be nil.
func (c *client) request(method, path, key, contentType, body string, headers map[string]string) response {
	c.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := c.app.Test(req, 120000)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	raw, _ := io.ReadAll(res.Body)
	r := response{Status: res.StatusCode, Raw: string(raw), Header: res.Header}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

func (c *client) admin(method, path, body string) response {
	return c.do(method, path, "admin-key", body)
}

// wantError checks the contract's error shape.
func wantError(t *testing.T, r response, status int, code, field string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Raw)
	}
	e, ok := r.Body["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object: %s", r.Raw)
	}
	if e["code"] != code || e["message"] == "" {
		t.Fatalf("error %v, want code %s", e, code)
	}
	got, _ := e["field"].(string)
	if got != field {
		t.Fatalf("error field %q, want %q: %s", got, field, r.Raw)
	}
}

// keysSnapshot lists every key and its type, to show a refused request
// changed nothing.
func keysSnapshot(t *testing.T, rdb redis.UniversalClient) string {
	keys, err := redistest.Keys(context.Background(), rdb, "*")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		// A hash by its sorted fields: its DUMP follows the order of its
		// table, which Redis's incremental rehashing changes on reads.
		if m, err := rdb.HGetAll(context.Background(), k).Result(); err == nil {
			fields := make([]string, 0, len(m))
			for f, v := range m {
				fields = append(fields, f+":"+v)
			}
			slices.Sort(fields)
			b.WriteString(k + "=" + strings.Join(fields, ",") + ";")
			continue
		}
		v, _ := rdb.Dump(context.Background(), k).Result()
		b.WriteString(k + "=" + v + ";")
	}
	return b.String()
}

const storeAlex = `{"name": "Alexanderplatz", "lat": 52.5219, "lng": 13.4132, "radius_m": 100,
 "tags": ["coffee", "berlin"], "timezone": "Europe/Berlin", "opening_hours": {"mon": ["07:00-20:00"]}}`

const ruleLatte = `{"name": "Morning Flat White", "enabled": true, "priority": 10,
 "trigger": {"on": "enter", "stores": {"tags": ["coffee"]}},
 "audience": "customer.attributes.tier == 'gold'",
 "caps": {"per_customer_per_day": 1},
 "offer": {
   "title": {"de": "Guten Morgen, {{.customer.first_name}}!", "en": "Good morning, {{.customer.first_name}}!"},
   "body":  {"de": "{{.store.name}} ist {{.distance_m}} m entfernt: 20 % auf deinen {{.customer.attributes.favorite_drink}}.",
             "en": "{{.store.name}} is {{.distance_m}} m away: 20% off your {{.customer.attributes.favorite_drink}}."},
   "valid_for_s": 3600}}`

// declareTier declares the attribute ruleLatte's audience names, for a
// test that saves the rule before any profile carries it.
const declareTier = `{"attributes": [{"name": "tier", "type": "string", "description": "loyalty tier"}]}`

const customerAnna = `{"first_name": "Anna", "locale": "de", "timezone": "Europe/Berlin",
 "consent": {"location": true, "push": true}, "segments": ["commuter"],
 "attributes": {"tier": "gold", "favorite_drink": "Flat White", "visits_30d": 4}}`

func TestAuth(t *testing.T) {
	c := newClient(t, srv.Client(t))
	wantError(t, c.do("GET", "/v1/stores", "", ""), 401, "unauthenticated", "")
	wantError(t, c.do("GET", "/v1/stores", "wrong", ""), 401, "unauthenticated", "")
	wantError(t, c.do("GET", "/v1/stores", "app-key", ""), 403, "permission_denied", "")
	wantError(t, c.do("PUT", "/v1/rules/x", "app-key", ruleLatte), 403, "permission_denied", "")
	if r := c.do("GET", "/v1/stores", "admin-key", ""); r.Status != 200 {
		t.Fatalf("admin: %d %s", r.Status, r.Raw)
	}
	// App keys may send pings and register devices.
	if r := c.do("PUT", "/v1/customers/c-1/devices/d-1", "app-key", `{"fcm_token": "t", "platform": "ios"}`); r.Status != 200 {
		t.Fatalf("device with app key: %d %s", r.Status, r.Raw)
	}
	if r := c.do("POST", "/v1/pings", "app-key", `{"customer_id": "c-1", "lat": 1, "lng": 2}`); r.Status != 200 {
		t.Fatalf("ping with app key: %d %s", r.Status, r.Raw)
	}
	// Health needs no key.
	if r := c.do("GET", "/healthz", "", ""); r.Status != 200 {
		t.Fatalf("healthz %d", r.Status)
	}
	if r := c.do("GET", "/readyz", "", ""); r.Status != 200 {
		t.Fatalf("readyz %d %s", r.Status, r.Raw)
	}
	wantError(t, c.do("GET", "/v1/nothing", "admin-key", ""), 404, "not_found", "")
}

func TestStoresCRUD(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			if r := c.admin("PUT", "/v1/stores/s-alex", storeAlex); r.Status != 201 || r.Body["radius_m"] != 100.0 || r.Body["id"] != "s-alex" {
				t.Fatalf("create: %d %s", r.Status, r.Raw)
			}
			if r := c.admin("PUT", "/v1/stores/s-alex", strings.Replace(storeAlex, `"radius_m": 100`, `"radius_m": 150`, 1)); r.Status != 200 {
				t.Fatalf("replace: %d %s", r.Status, r.Raw)
			}
			r := c.admin("GET", "/v1/stores/s-alex", "")
			if r.Status != 200 || r.Body["radius_m"] != 150.0 || r.Body["name"] != "Alexanderplatz" {
				t.Fatalf("get: %d %s", r.Status, r.Raw)
			}
			if r := c.admin("GET", "/v1/stores", ""); r.Status != 200 || len(r.Body["stores"].([]any)) != 1 {
				t.Fatalf("list: %s", r.Raw)
			}
			if r := c.admin("DELETE", "/v1/stores/s-alex", ""); r.Status != 204 {
				t.Fatalf("delete: %d", r.Status)
			}
			wantError(t, c.admin("GET", "/v1/stores/s-alex", ""), 404, "not_found", "")
			wantError(t, c.admin("DELETE", "/v1/stores/s-alex", ""), 404, "not_found", "")
		})
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			c.admin("PUT", "/v1/stores/s-alex", storeAlex)
			c.admin("PUT", "/v1/customers/c-42", customerAnna) // first: the rule names her attributes
			c.admin("PUT", "/v1/rules/latte", ruleLatte)
			before := keysSnapshot(t, c.rdb)
			tests := []struct {
				name, method, path, key, body string
				status                        int
				code, field                   string
			}{
				{"malformed store", "PUT", "/v1/stores/s-alex", "admin-key", `{"name": "x",`, 400, "invalid_argument", ""},
				{"store lat out of range", "PUT", "/v1/stores/s-alex", "admin-key", `{"name": "x", "lat": 91, "lng": 13}`, 400, "invalid_argument", "lat"},
				{"store radius out of range", "PUT", "/v1/stores/s-alex", "admin-key", `{"name": "x", "lat": 52, "lng": 13, "radius_m": 60000}`, 400, "invalid_argument", "radius_m"},
				{"store unknown field", "PUT", "/v1/stores/s-alex", "admin-key", `{"name": "x", "lat": 52, "lng": 13, "radius": 60}`, 400, "invalid_argument", "radius"},
				{"store wrong type", "PUT", "/v1/stores/s-alex", "admin-key", `{"name": "x", "lat": "52", "lng": 13}`, 400, "invalid_argument", "lat"},
				{"store body id differs", "PUT", "/v1/stores/s-alex", "admin-key", `{"id": "other", "name": "x", "lat": 52, "lng": 13}`, 400, "invalid_argument", "id"},
				{"store bad id", "PUT", "/v1/stores/s%7Bx%7D", "admin-key", storeAlex, 400, "invalid_argument", "store_id"},
				{"rule expression does not compile", "PUT", "/v1/rules/latte", "admin-key", strings.Replace(ruleLatte, "customer.attributes.tier == 'gold'", "customer.attributes.tier ==", 1), 422, "failed_precondition", "audience"},
				{"rule expression unknown field", "PUT", "/v1/rules/latte", "admin-key", strings.Replace(ruleLatte, "customer.attributes.tier", "customer.tier", 1), 422, "failed_precondition", "audience"},
				{"rule unknown nested field", "PUT", "/v1/rules/latte", "admin-key", strings.Replace(ruleLatte, `"valid_for_s"`, `"valid_for"`, 1), 400, "invalid_argument", "offer.valid_for"},
				{"rule template unknown field", "PUT", "/v1/rules/latte", "admin-key", strings.Replace(ruleLatte, "{{.store.name}} is {{", "{{.store.title}} is {{", 1), 422, "failed_precondition", "offer.body.en"},
				{"rule bad trigger", "PUT", "/v1/rules/latte", "admin-key", strings.Replace(ruleLatte, `"on": "enter"`, `"on": "arrive"`, 1), 400, "invalid_argument", "trigger.on"},
				{"rule names an unknown tag", "PUT", "/v1/rules/latte", "admin-key", strings.Replace(ruleLatte, `"tags": ["coffee"]`, `"tags": ["cofee"]`, 1), 422, "failed_precondition", "trigger.stores.tags[0]"},
				{"rule names an unknown store", "PUT", "/v1/rules/latte", "admin-key", strings.Replace(ruleLatte, `"tags": ["coffee"]`, `"ids": ["s-alex", "s-nowhere"]`, 1), 422, "failed_precondition", "trigger.stores.ids[1]"},
				{"customer unknown field", "PUT", "/v1/customers/c-42", "admin-key", `{"firstname": "A"}`, 400, "invalid_argument", "firstname"},
				{"customer bad attribute", "PUT", "/v1/customers/c-42", "admin-key", `{"attributes": {"x": {"y": 1}}}`, 400, "invalid_argument", "attributes.x"},
				{"device bad platform", "PUT", "/v1/customers/c-42/devices/d-1", "app-key", `{"fcm_token": "t", "platform": "nokia"}`, 400, "invalid_argument", "platform"},
				{"ping malformed", "POST", "/v1/pings", "app-key", `{"customer_id": "c-42", "lat": 52.5`, 400, "invalid_argument", ""},
				{"ping lat out of range", "POST", "/v1/pings", "app-key", `{"customer_id": "c-42", "lat": 95, "lng": 13.4}`, 400, "invalid_argument", "lat"},
				{"ping lng out of range", "POST", "/v1/pings", "app-key", `{"customer_id": "c-42", "lat": 52.5, "lng": -181}`, 400, "invalid_argument", "lng"},
				{"ping missing lat", "POST", "/v1/pings", "app-key", `{"customer_id": "c-42", "lng": 13.4}`, 400, "invalid_argument", "lat"},
				{"ping unknown field", "POST", "/v1/pings", "app-key", `{"customer_id": "c-42", "lat": 52.5219, "lng": 13.4132, "latitude": 1}`, 400, "invalid_argument", "latitude"},
				{"ping bad ts", "POST", "/v1/pings", "app-key", `{"customer_id": "c-42", "lat": 52.5219, "lng": 13.4132, "ts": "yesterday"}`, 400, "invalid_argument", "ts"},
				{"ping no customer", "POST", "/v1/pings", "app-key", `{"lat": 52.5219, "lng": 13.4132}`, 400, "invalid_argument", "customer_id"},
				{"ping bad query", "POST", "/v1/pings?dry_run=maybe", "app-key", `{"customer_id": "c-42", "lat": 52.5219, "lng": 13.4132}`, 400, "invalid_argument", "dry_run"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					wantError(t, c.do(tt.method, tt.path, tt.key, tt.body), tt.status, tt.code, tt.field)
				})
			}
			if after := keysSnapshot(t, c.rdb); after != before {
				t.Fatal("a refused request changed what Redis holds")
			}
			// Several faults come at once, each with its path.
			r := c.admin("PUT", "/v1/stores/s-alex", `{"lat": 95, "lng": 200, "radius_m": 1}`)
			e := r.Body["error"].(map[string]any)
			if d, _ := e["details"].([]any); len(d) != 4 {
				t.Fatalf("want 4 details (name, lat, lng, radius_m): %s", r.Raw)
			}
		})
	}
}

func TestUnsupportedMediaType(t *testing.T) {
	c := newClient(t, srv.Client(t))
	wantError(t, c.request("PUT", "/v1/stores/s", "admin-key", "application/x-www-form-urlencoded", "name=x", nil), 415, "unsupported_media_type", "")
}

func TestRulesAndPingOverHTTP(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			c.admin("PUT", "/v1/stores/s-alex", strings.Replace(storeAlex, `, "opening_hours": {"mon": ["07:00-20:00"]}`, "", 1))
			c.admin("PUT", "/v1/attributes", declareTier) // no profile carries it yet
			if r := c.admin("PUT", "/v1/rules/latte?dry_run=true", ruleLatte); r.Status != 200 || r.Body["valid"] != true {
				t.Fatalf("dry run: %d %s", r.Status, r.Raw)
			}
			wantError(t, c.admin("GET", "/v1/rules/latte", ""), 404, "not_found", "")
			r := c.admin("PUT", "/v1/rules/latte", ruleLatte)
			if r.Status != 201 || r.Body["version"] != 1.0 {
				t.Fatalf("create rule: %d %s", r.Status, r.Raw)
			}
			// The marketer's language order survives the round trip.
			if r := c.admin("GET", "/v1/rules/latte", ""); !strings.Contains(r.Raw, `"title":{"de":"Guten Morgen`) {
				t.Fatalf("get rule: %s", r.Raw)
			}
			if r := c.admin("PUT", "/v1/rules/latte", ruleLatte); r.Status != 200 || r.Body["version"] != 2.0 {
				t.Fatalf("replace rule: %d %s", r.Status, r.Raw)
			}
			if r := c.admin("GET", "/v1/rules", ""); len(r.Body["rules"].([]any)) != 1 {
				t.Fatalf("list rules: %s", r.Raw)
			}
			if r := c.admin("PUT", "/v1/customers/c-42", customerAnna); r.Status != 201 {
				t.Fatalf("customer: %d %s", r.Status, r.Raw)
			}
			if r := c.admin("GET", "/v1/customers/c-42", ""); r.Body["first_name"] != "Anna" {
				t.Fatalf("get customer: %s", r.Raw)
			}
			c.do("PUT", "/v1/customers/c-42/devices/d-1", "app-key", `{"fcm_token": "tok", "platform": "android"}`)

			ping := `{"customer_id": "c-42", "device_id": "d-1", "lat": 52.5215, "lng": 13.4130, "accuracy_m": 12, "speed_mps": 1.2, "context": {"app_state": "background"}}`
			r = c.do("POST", "/v1/pings?explain=true", "admin-key", ping)
			if r.Status != 200 {
				t.Fatalf("ping: %d %s", r.Status, r.Raw)
			}
			var res struct {
				Events []engine.Event       `json:"events"`
				Offers []engine.IssuedOffer `json:"offers"`
				Expl   []engine.Explanation `json:"explain"`
			}
			json.Unmarshal([]byte(r.Raw), &res)
			if len(res.Events) != 1 || res.Events[0].StoreID != "s-alex" || res.Events[0].Type != "enter" {
				t.Fatalf("events: %s", r.Raw)
			}
			d := res.Events[0].DistanceM
			wantBody := "Alexanderplatz ist " + itoa(d) + " m entfernt: 20 % auf deinen Flat White."
			if len(res.Offers) != 1 || res.Offers[0].Title != "Guten Morgen, Anna!" || res.Offers[0].Body != wantBody {
				t.Fatalf("offers: %s", r.Raw)
			}
			if len(res.Expl) != 1 || res.Expl[0].Result != "sent" {
				t.Fatalf("explain: %s", r.Raw)
			}
			// The same ping again: nothing new.
			if r := c.do("POST", "/v1/pings", "app-key", ping); !strings.Contains(r.Raw, `"events":[]`) || !strings.Contains(r.Raw, `"offers":[]`) {
				t.Fatalf("second ping: %s", r.Raw)
			}
			// The ping above counts in the rule's funnel for today.
			r = c.admin("GET", "/v1/rules/latte/stats", "")
			days, _ := r.Body["days"].([]any)
			if r.Status != 200 || len(days) != 7 {
				t.Fatalf("stats: %d %s", r.Status, r.Raw)
			}
			if today := days[6].(map[string]any); today["evaluated"] != 1.0 || today["issued"] != 1.0 {
				t.Fatalf("today's funnel: %v", today)
			}
			wantError(t, c.admin("GET", "/v1/rules/latte/stats?from=yesterday", ""), 400, "invalid_argument", "from")
			wantError(t, c.admin("GET", "/v1/rules/latte/stats?from=2026-11-22&to=2026-11-01", ""), 400, "invalid_argument", "from")
			wantError(t, c.admin("GET", "/v1/rules/nope/stats", ""), 404, "not_found", "")
			if r := c.admin("DELETE", "/v1/rules/latte", ""); r.Status != 204 {
				t.Fatalf("delete rule: %d", r.Status)
			}
			// Without a log sender, /v1/dev/pushes is not there.
			wantError(t, c.admin("GET", "/v1/dev/pushes", ""), 404, "not_found", "")
		})
	}
}

// With Redis down, every operation of the contract that needs Redis
// answers 503 unavailable, never 500: each is called with a valid
// request (the catalog snapshot in memory, loaded before Redis went).
// The few that need no Redis are named, with the reason, and answer.
func TestUnavailableRedis(t *testing.T) {
	tokens, err := api.NewCustomerTokens([][]byte{[]byte("unavailable-test-secret-0123456789abcdef")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Tried once, with cmd/nearcast's client's timeouts.
	options := func(addr string) *redis.Options {
		return &redis.Options{Addr: addr, DialerRetries: 1, MaxRetries: 1, ContextTimeoutEnabled: true,
			DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, WriteTimeout: 500 * time.Millisecond,
			PoolTimeout: time.Second}
	}
	t.Run("down", func(t *testing.T) {
		_, m := redistest.Mini(t)
		rdb := redis.NewClient(options(m.Addr()))
		t.Cleanup(func() { rdb.Close() })
		c := newClientWith(t, rdb, func(d *api.Deps) { d.Tokens, d.Webhooks = tokens, webhook.NewStore(rdb) })
		m.Close()
		walkEveryOperation(t, c, false)
	})
	// A Redis that hangs (SIGSTOP: it accepts, and answers nothing): every
	// operation answers 503 as for one that is down, each bounded by its
	// deadline. They run at once, as a hung Redis's callers do.
	t.Run("hung", func(t *testing.T) {
		rs, err := redistest.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rs.Stop)
		rdb := redis.NewClient(options(rs.Addr))
		t.Cleanup(func() { rdb.Close() })
		c := newClientWith(t, rdb, func(d *api.Deps) { d.Tokens, d.Webhooks = tokens, webhook.NewStore(rdb) })
		if err := rs.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rs.Resume() })
		walkEveryOperation(t, c, true)
	})
}

// walkEveryOperation calls each operation of api/openapi.yaml on a Redis
// that cannot answer: those that need Redis get 503 unavailable, the
// others their answer. At once, a hung Redis's calls are each bounded:
// the request's Redis budget is 500 ms (api.DefaultRequestTimeout), a
// bulk upload's each command's 500 ms and one retry; a call still waiting
// after 5 s hangs.
func walkEveryOperation(t *testing.T, c *client, atOnce bool) {
	code := engine.NewCodeSigner([]byte("s")).NewCode() // well signed: the ledger asks Redis for it
	rule := `{"name": "R", "enabled": true, "trigger": {"on": "enter"}, "offer": {"title": {"en": "Hi"}, "body": {"en": "Hello"}}}`
	type request struct{ method, path, key, contentType, body string }
	needRedis := map[string]request{
		"POST /v1/pings":       {"POST", "/v1/pings", "app-key", "", `{"customer_id": "c-1", "lat": 52.52, "lng": 13.41}`},
		"POST /v1/pings/batch": {"POST", "/v1/pings/batch", "app-key", "", `{"customer_id": "c-1", "fixes": [{"lat": 52.52, "lng": 13.41, "ts": "2026-11-22T08:00:00Z"}]}`},
		"GET /v1/stores":       {"GET", "/v1/stores", "admin-key", "", ""},
		"POST /v1/stores": {"POST", "/v1/stores", "admin-key", "application/x-ndjson",
			`{"id": "s-1", "name": "S", "lat": 52.52, "lng": 13.41, "radius_m": 50}`},
		"PUT /v1/stores/{store_id}":    {"PUT", "/v1/stores/s-1", "admin-key", "", `{"name": "S", "lat": 52.52, "lng": 13.41, "radius_m": 50}`},
		"GET /v1/stores/{store_id}":    {"GET", "/v1/stores/s-1", "admin-key", "", ""},
		"DELETE /v1/stores/{store_id}": {"DELETE", "/v1/stores/s-1", "admin-key", "", ""},
		// A store the snapshot has is answered from memory; one it does
		// not have yet is looked for in Redis.
		"GET /v1/stores/{store_id}/cells": {"GET", "/v1/stores/s-1/cells", "admin-key", "", ""},
		"POST /v1/customers": {"POST", "/v1/customers", "admin-key", "application/x-ndjson",
			`{"id": "c-1", "consent": {"location": true, "push": true}}`},
		"PUT /v1/customers/{customer_id}":           {"PUT", "/v1/customers/c-1", "admin-key", "", customerAnna},
		"PATCH /v1/customers/{customer_id}":         {"PATCH", "/v1/customers/c-1", "admin-key", "application/merge-patch+json", `{"first_name": "Ann"}`},
		"GET /v1/customers/{customer_id}":           {"GET", "/v1/customers/c-1", "admin-key", "", ""},
		"DELETE /v1/customers/{customer_id}":        {"DELETE", "/v1/customers/c-1", "admin-key", "", ""},
		"GET /v1/customers/{customer_id}/export":    {"GET", "/v1/customers/c-1/export", "admin-key", "", ""},
		"POST /v1/customers/{customer_id}/tokens":   {"POST", "/v1/customers/c-1/tokens", "admin-key", "", ""},
		"DELETE /v1/customers/{customer_id}/tokens": {"DELETE", "/v1/customers/c-1/tokens", "admin-key", "", ""},
		"GET /v1/customers/{customer_id}/devices":   {"GET", "/v1/customers/c-1/devices", "admin-key", "", ""},
		"PUT /v1/customers/{customer_id}/devices/{device_id}": {"PUT", "/v1/customers/c-1/devices/d-1", "app-key", "",
			`{"fcm_token": "tok", "platform": "android"}`},
		"DELETE /v1/customers/{customer_id}/devices/{device_id}": {"DELETE", "/v1/customers/c-1/devices/d-1", "app-key", "", ""},
		"GET /v1/attributes":               {"GET", "/v1/attributes", "admin-key", "", ""},
		"PUT /v1/attributes":               {"PUT", "/v1/attributes", "admin-key", "", `{"attributes": [{"name": "tier", "type": "string"}]}`},
		"GET /v1/rules":                    {"GET", "/v1/rules", "admin-key", "", ""},
		"PUT /v1/rules/{rule_id}":          {"PUT", "/v1/rules/r-1", "admin-key", "", rule},
		"GET /v1/rules/{rule_id}":          {"GET", "/v1/rules/r-1", "admin-key", "", ""},
		"DELETE /v1/rules/{rule_id}":       {"DELETE", "/v1/rules/r-1", "admin-key", "", ""},
		"GET /v1/rules/{rule_id}/versions": {"GET", "/v1/rules/r-1/versions", "admin-key", "", ""},
		"GET /v1/rules/{rule_id}/stats":    {"GET", "/v1/rules/r-1/stats", "admin-key", "", ""},
		// The rule given whole; the customer is read from Redis.
		"POST /v1/rules/{rule_id}/preview":                    {"POST", "/v1/rules/r-1/preview", "admin-key", "", `{"customer_id": "c-1", "rule": ` + rule + `}`},
		"GET /v1/rules/{rule_id}/versions/{version}":          {"GET", "/v1/rules/r-1/versions/1", "admin-key", "", ""},
		"POST /v1/rules/{rule_id}/versions/{version}/restore": {"POST", "/v1/rules/r-1/versions/1/restore", "admin-key", "", ""},
		"GET /v1/coupons/{code}":                              {"GET", "/v1/coupons/" + code, "admin-key", "", ""},
		"POST /v1/coupons/{code}/redeem":                      {"POST", "/v1/coupons/" + code + "/redeem", "admin-key", "", `{"store_id": "s-1"}`},
		"POST /v1/coupons/{code}/opened":                      {"POST", "/v1/coupons/" + code + "/opened", "app-key", "", ""},
		"GET /v1/fraud":                                       {"GET", "/v1/fraud", "admin-key", "", ""},
		"POST /v1/simulate":                                   {"POST", "/v1/simulate", "admin-key", "", `{"customer_id": "c-1", "pings": [{"lat": 52.52, "lng": 13.41}]}`},
		"GET /readyz":                                         {"GET", "/readyz", "", "", ""},
		"GET /v1/webhooks":                                    {"GET", "/v1/webhooks", "admin-key", "", ""},
		"PUT /v1/webhooks/{webhook_id}":                       {"PUT", "/v1/webhooks/crm", "admin-key", "", `{"url": "https://crm.example.com/h", "events": ["enter"]}`},
		"GET /v1/webhooks/{webhook_id}":                       {"GET", "/v1/webhooks/crm", "admin-key", "", ""},
		"DELETE /v1/webhooks/{webhook_id}":                    {"DELETE", "/v1/webhooks/crm", "admin-key", "", ""},
		"GET /v1/webhooks/{webhook_id}/versions":              {"GET", "/v1/webhooks/crm/versions", "admin-key", "", ""},
		"GET /v1/webhooks/{webhook_id}/dead":                  {"GET", "/v1/webhooks/crm/dead", "admin-key", "", ""},
		"DELETE /v1/webhooks/{webhook_id}/dead":               {"DELETE", "/v1/webhooks/crm/dead", "admin-key", "", ""},
		"POST /v1/webhooks/{webhook_id}/dead/replay":          {"POST", "/v1/webhooks/crm/dead/replay", "admin-key", "", ""},
		"POST /v1/webhooks/{webhook_id}/test":                 {"POST", "/v1/webhooks/crm/test", "admin-key", "", ""},
		// An answer of the admin key for a customer: the question is
		// looked for in Redis (the app's own is counted there first).
		"POST /v1/feedback/{feedback_id}":    {"POST", "/v1/feedback/" + code, "admin-key", "", `{"customer_id": "c-1", "score": 9}`},
		"GET /v1/stores/{store_id}/feedback": {"GET", "/v1/stores/s-1/feedback", "admin-key", "", ""},
		"GET /v1/rules/{rule_id}/feedback":   {"GET", "/v1/rules/r-1/feedback", "admin-key", "", ""},
	}
	needNoRedis := map[string]struct {
		why string
		req request
	}{
		"GET /healthz":       {"the process's own liveness", request{"GET", "/healthz", "", "", ""}},
		"GET /metrics":       {"Prometheus reads the process's own registry", request{"GET", "/metrics", "", "", ""}},
		"GET /v1/dev/pushes": {"the log sender's memory (404 with FCM, as here)", request{"GET", "/v1/dev/pushes?customer_id=c-1", "admin-key", "", ""}},
		// Served beside the contract, not in its paths.
		"GET /v1/openapi.yaml": {"the spec is in the binary", request{"GET", "/v1/openapi.yaml", "", "", ""}},
		"GET /console/":        {"the console's static files are in the binary", request{"GET", "/console/", "", "", ""}},
	}

	var spec struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &spec); err != nil {
		t.Fatal(err)
	}
	documented := 0
	for path, item := range spec.Paths {
		if item["x-nearcast-status"] == "planned" {
			continue
		}
		for method := range item {
			if method == "parameters" || strings.HasPrefix(method, "x-") {
				continue
			}
			op := strings.ToUpper(method) + " " + path
			documented++
			_, needs := needRedis[op]
			_, none := needNoRedis[op]
			if !needs && !none {
				t.Errorf("%s: no request for it here; add one (or say why it needs no Redis)", op)
			}
		}
	}
	if documented < 30 {
		t.Fatalf("only %d operations in the spec: the check would prove little", documented)
	}
	send := func(t *testing.T, r request) response {
		own := *c // each its own t: they may run at once
		own.t = t
		ct := r.contentType
		if ct == "" && r.body != "" {
			ct = "application/json"
		}
		return own.request(r.method, r.path, r.key, ct, r.body, nil)
	}
	t.Run("ops", func(t *testing.T) {
		for op, r := range needRedis {
			t.Run(op, func(t *testing.T) {
				if atOnce {
					t.Parallel()
				}
				start := time.Now()
				got := send(t, r)
				took := time.Since(start)
				t.Logf("%d in %s", got.Status, took.Round(time.Millisecond))
				wantError(t, got, 503, "unavailable", "")
				if took > 5*time.Second {
					t.Errorf("took %s: it hangs on a Redis that does", took)
				}
			})
		}
		for op, n := range needNoRedis {
			t.Run(op, func(t *testing.T) {
				if atOnce {
					t.Parallel()
				}
				if got := send(t, n.req); got.Status >= 500 {
					t.Errorf("%d, but it needs no Redis (%s): %s", got.Status, n.why, got.Raw)
				}
			})
		}
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func (c *client) ndjson(body string) response { return c.ndjsonTo("/v1/stores", body) }

func TestBulkStoresAndNear(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			body := strings.Join([]string{
				`{"id": "s-alex", "name": "Alexanderplatz", "lat": 52.5219, "lng": 13.4132, "radius_m": 100}`,
				`{"id": "s-bad-json", "name": `,
				`{"id": "s-hack", "name": "Hackescher Markt", "lat": 52.5225, "lng": 13.4025, "radius_m": 80}`,
				`{"id": "s-far", "name": "Out of range", "lat": 152.5, "lng": 13.4}`,
				``,
				`{"id": "s-mall", "name": "Mall", "polygon": [[52.5100, 13.3750], [52.5100, 13.3770], [52.5090, 13.3770], [52.5090, 13.3750]]}`,
				`{"id": "s-bowtie", "name": "Crossed", "polygon": [[52.0, 13.0], [52.01, 13.01], [52.0, 13.01], [52.01, 13.0]]}`,
				`{"id": "s-hack", "name": "Hackescher Markt (moved)", "lat": 52.5226, "lng": 13.4026, "radius_m": 80}`,
			}, "\n")
			r := c.ndjson(body)
			if r.Status != 200 || r.Body["written"] != 3.0 || r.Body["failed"] != 3.0 {
				t.Fatalf("bulk: %d %s", r.Status, r.Raw)
			}
			errs := r.Body["errors"].([]any)
			wantLines := []struct {
				line  float64
				field string
			}{{2, ""}, {4, "lat"}, {7, "polygon[2]"}}
			for i, w := range wantLines {
				e := errs[i].(map[string]any)
				inner := e["error"].(map[string]any)
				if e["line"] != w.line || (inner["field"] != nil && inner["field"] != w.field) || (inner["field"] == nil && w.field != "") {
					t.Fatalf("error %d: %v, want line %v field %q", i, e, w.line, w.field)
				}
			}
			if r := c.admin("GET", "/v1/stores/s-hack", ""); r.Body["name"] != "Hackescher Markt (moved)" {
				t.Fatalf("the last line for an id wins: %s", r.Raw)
			}
			// Near Alexanderplatz: Alexanderplatz first (inside), then Hackescher Markt.
			r = c.admin("GET", "/v1/stores?near=52.5219,13.4132&radius_m=1000", "")
			stores := r.Body["stores"].([]any)
			if len(stores) != 2 || stores[0].(map[string]any)["id"] != "s-alex" || stores[0].(map[string]any)["inside"] != true || stores[1].(map[string]any)["id"] != "s-hack" {
				t.Fatalf("near: %s", r.Raw)
			}
			// The mall polygon is found near its edge, and pings inside it enter it.
			r = c.admin("GET", "/v1/stores?near=52.5095,13.3760&radius_m=10", "")
			if stores := r.Body["stores"].([]any); len(stores) != 1 || stores[0].(map[string]any)["id"] != "s-mall" {
				t.Fatalf("near the mall: %s", r.Raw)
			}
			wantError(t, c.admin("GET", "/v1/stores?near=91,13", ""), 400, "invalid_argument", "near")
			wantError(t, c.admin("GET", "/v1/stores?near=52,13&radius_m=-1", ""), 400, "invalid_argument", "radius_m")
			c.admin("PUT", "/v1/customers/c-1", `{"consent": {"location": true, "push": true}}`)
			r = c.do("POST", "/v1/pings", "app-key", `{"customer_id": "c-1", "lat": 52.5095, "lng": 13.3760, "accuracy_m": 5}`)
			if !strings.Contains(r.Raw, `"type":"enter","store_id":"s-mall"`) {
				t.Fatalf("ping in the mall: %s", r.Raw)
			}
			// Refused outright: the wrong media type.
			wantError(t, c.request("POST", "/v1/stores", "admin-key", "application/json", body, nil), 415, "unsupported_media_type", "")
		})
	}
}

func TestRuleVersionsAndConcurrentEdits(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			c.admin("PUT", "/v1/stores/s-alex", storeAlex)
			c.admin("PUT", "/v1/customers/c-42", customerAnna) // the rule names her attributes
			put := func(body, ifMatch string) (response, string) {
				var h map[string]string
				if ifMatch != "" {
					h = map[string]string{"If-Match": ifMatch}
				}
				r := c.request("PUT", "/v1/rules/latte", "admin-key", "application/json", body, h)
				return r, r.Header.Get("ETag")
			}
			r, etag := put(ruleLatte, "")
			if r.Status != 201 || etag != `"1"` {
				t.Fatalf("create: %d %q %s", r.Status, etag, r.Raw)
			}
			// Two marketers read version 1; the first save wins, the second is told.
			if r, etag := put(strings.Replace(ruleLatte, `"priority": 10`, `"priority": 20`, 1), `"1"`); r.Status != 200 || etag != `"2"` {
				t.Fatalf("first edit: %d %q %s", r.Status, etag, r.Raw)
			}
			wantError(t, mustFirst(put(strings.Replace(ruleLatte, `"priority": 10`, `"priority": 30`, 1), `"1"`)), 409, "conflict", "")
			if r := c.admin("GET", "/v1/rules/latte", ""); r.Body["priority"] != 20.0 || r.Body["version"] != 2.0 {
				t.Fatalf("the refused edit changed the rule: %s", r.Raw)
			}
			wantError(t, mustFirst(put(ruleLatte, "yesterday")), 400, "invalid_argument", "If-Match")
			// Versions are listed, readable, and an old one can be restored as the next.
			r = c.admin("GET", "/v1/rules/latte/versions", "")
			if vs := r.Body["versions"].([]any); len(vs) != 2 || vs[0].(map[string]any)["priority"] != 10.0 {
				t.Fatalf("versions: %s", r.Raw)
			}
			if r := c.admin("GET", "/v1/rules/latte/versions/1", ""); r.Body["version"] != 1.0 {
				t.Fatalf("version 1: %s", r.Raw)
			}
			wantError(t, c.admin("GET", "/v1/rules/latte/versions/9", ""), 404, "not_found", "")
			if r := c.admin("POST", "/v1/rules/latte/versions/1/restore", ""); r.Status != 200 || r.Body["version"] != 3.0 || r.Body["priority"] != 10.0 {
				t.Fatalf("restore: %d %s", r.Status, r.Raw)
			}
			if r := c.admin("GET", "/v1/rules/latte", ""); r.Body["priority"] != 10.0 || r.Body["version"] != 3.0 {
				t.Fatalf("after restore: %s", r.Raw)
			}
		})
	}
}

func mustFirst(r response, _ string) response { return r }

func TestPatchCustomer(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			c.admin("PUT", "/v1/customers/c-42", customerAnna)
			patch := func(body string) response {
				return c.request("PATCH", "/v1/customers/c-42", "admin-key", "application/merge-patch+json", body, nil)
			}
			r := patch(`{"attributes": {"tier": "platinum", "visits_30d": null}, "consent": {"push": false}}`)
			if r.Status != 200 {
				t.Fatalf("patch: %d %s", r.Status, r.Raw)
			}
			got := c.admin("GET", "/v1/customers/c-42", "").Body
			attrs := got["attributes"].(map[string]any)
			consent := got["consent"].(map[string]any)
			if attrs["tier"] != "platinum" || attrs["favorite_drink"] != "Flat White" || attrs["visits_30d"] != nil ||
				consent["push"] != false || consent["location"] != true || got["first_name"] != "Anna" {
				t.Fatalf("after patch: %v", got)
			}
			before := keysSnapshot(t, c.rdb)
			wantError(t, patch(`{"firstname": "A"}`), 400, "invalid_argument", "firstname")
			wantError(t, patch(`{"attributes": {"x": {"deep": 1}}}`), 400, "invalid_argument", "attributes.x")
			wantError(t, patch(`{"locale": 7}`), 400, "invalid_argument", "locale")
			if keysSnapshot(t, c.rdb) != before {
				t.Fatal("a refused patch changed the profile")
			}
			wantError(t, c.request("PATCH", "/v1/customers/nobody", "admin-key", "application/merge-patch+json", `{"first_name": "X"}`, nil), 404, "not_found", "")
		})
	}
}

func (c *client) ndjsonTo(path, body string) response {
	c.t.Helper()
	return c.request("POST", path, "admin-key", "application/x-ndjson", body, nil)
}

func TestBulkCustomers(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			body := strings.Join([]string{
				`{"id": "c-1", "first_name": "Anna", "consent": {"location": true, "push": true}, "attributes": {"tier": "gold", "visits": 3, "vip": true, "tags": ["a", "b"]}}`,
				`{"id": "c-2", "first_name": "Ben", "locale": "not a locale!"}`,
				`{"id": "c-3", "firstname": "Cem"}`,
				`{"id": "c-4", "first_name": "Dora"}`,
			}, "\n")
			r := c.ndjsonTo("/v1/customers", body)
			if r.Status != 200 || r.Body["written"] != 2.0 || r.Body["failed"] != 2.0 {
				t.Fatalf("bulk: %d %s", r.Status, r.Raw)
			}
			errs := r.Body["errors"].([]any)
			if e := errs[0].(map[string]any); e["line"] != 2.0 || e["error"].(map[string]any)["field"] != "locale" {
				t.Fatalf("line 2: %v", e)
			}
			if e := errs[1].(map[string]any); e["line"] != 3.0 || e["error"].(map[string]any)["field"] != "firstname" {
				t.Fatalf("line 3: %v", e)
			}
			got := c.admin("GET", "/v1/customers/c-1", "").Body
			attrs := got["attributes"].(map[string]any)
			if attrs["visits"] != 3.0 || attrs["vip"] != true || len(attrs["tags"].([]any)) != 2 {
				t.Fatalf("typed attributes: %v", got)
			}
			if r := c.admin("GET", "/v1/customers/c-4", ""); r.Status != 200 {
				t.Fatalf("c-4: %s", r.Raw)
			}
		})
	}
}

func TestCouponRedemption(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			c.admin("PUT", "/v1/stores/s-alex", strings.Replace(storeAlex, `, "opening_hours": {"mon": ["07:00-20:00"]}`, "", 1))
			c.admin("PUT", "/v1/customers/c-42", customerAnna) // first: the rule names her attributes
			c.admin("PUT", "/v1/rules/latte", ruleLatte)
			r := c.do("POST", "/v1/pings", "app-key", `{"customer_id": "c-42", "lat": 52.5219, "lng": 13.4132, "accuracy_m": 5}`)
			var res struct{ Offers []engine.IssuedOffer }
			json.Unmarshal([]byte(r.Raw), &res)
			if len(res.Offers) != 1 {
				t.Fatalf("no coupon: %s", r.Raw)
			}
			code := res.Offers[0].CouponCode
			if r := c.admin("GET", "/v1/coupons/"+code, ""); r.Status != 200 || r.Body["status"] != "active" || r.Body["rule_id"] != "latte" {
				t.Fatalf("get: %d %s", r.Status, r.Raw)
			}
			// A forged code: the right shape, the wrong signature.
			forged := code[:8] + "0000"
			if forged == code {
				forged = code[:8] + "1111"
			}
			wantError(t, c.admin("GET", "/v1/coupons/"+forged, ""), 404, "not_found", "")
			wantError(t, c.admin("POST", "/v1/coupons/"+forged+"/redeem", ""), 404, "not_found", "")
			// 100 tills at once: exactly one succeeds; typed in lower case with dashes.
			typed := strings.ToLower(code[:4] + "-" + code[4:8] + "-" + code[8:])
			var wg sync.WaitGroup
			var mu sync.Mutex
			statuses := map[int]int{}
			for range 100 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := c.do("POST", "/v1/coupons/"+typed+"/redeem", "admin-key", `{"store_id": "s-alex"}`)
					mu.Lock()
					statuses[r.Status]++
					mu.Unlock()
				}()
			}
			wg.Wait()
			if statuses[200] != 1 || statuses[409] != 99 {
				t.Fatalf("100 concurrent redeems: %v", statuses)
			}
			if r := c.admin("GET", "/v1/coupons/"+code, ""); r.Body["status"] != "redeemed" || r.Body["redeemed_store_id"] != "s-alex" {
				t.Fatalf("after redeeming: %s", r.Raw)
			}
			// The app reports the coupon opened: the first time counts.
			r1 := c.do("POST", "/v1/coupons/"+code+"/opened", "app-key", "")
			r2 := c.do("POST", "/v1/coupons/"+code+"/opened", "app-key", "")
			if r1.Status != 200 || r1.Body["opened_at"] == nil || r2.Body["opened_at"] != r1.Body["opened_at"] {
				t.Fatalf("opened: %s / %s", r1.Raw, r2.Raw)
			}
			wantError(t, c.do("POST", "/v1/coupons/"+forged+"/opened", "app-key", ""), 404, "not_found", "")
			wantError(t, c.do("POST", "/v1/coupons/"+code+"/redeem", "app-key", ""), 403, "permission_denied", "")

			// A coupon good only at its issuing store.
			c.admin("PUT", "/v1/stores/s-hack", `{"name": "Hackescher Markt", "lat": 52.5225, "lng": 13.4025, "tags": ["coffee"]}`)
			only := strings.Replace(ruleLatte, `"valid_for_s": 3600}`, `"valid_for_s": 3600, "redeem_at_issuing_store": true}`, 1)
			only = strings.Replace(only, `"caps": {"per_customer_per_day": 1}`, `"caps": {}`, 1)
			if r := c.admin("PUT", "/v1/rules/latte", only); r.Status != 200 {
				t.Fatalf("rule: %s", r.Raw)
			}
			c.admin("PUT", "/v1/customers/c-9", strings.Replace(customerAnna, "Anna", "Bea", 1))
			r = c.do("POST", "/v1/pings", "app-key", `{"customer_id": "c-9", "lat": 52.5219, "lng": 13.4132, "accuracy_m": 5}`)
			res.Offers = nil
			json.Unmarshal([]byte(r.Raw), &res)
			if len(res.Offers) != 1 {
				t.Fatalf("no coupon for c-9: %s", r.Raw)
			}
			code9 := res.Offers[0].CouponCode
			wantError(t, c.admin("POST", "/v1/coupons/"+code9+"/redeem", `{"store_id": "s-hack"}`), 422, "failed_precondition", "store_id")
			if r := c.admin("POST", "/v1/coupons/"+code9+"/redeem", `{"store_id": "s-alex"}`); r.Status != 200 {
				t.Fatalf("at the issuing store: %s", r.Raw)
			}
		})
	}
}

func TestExpiredCoupon(t *testing.T) {
	rdb := srv.Client(t)
	coupons := engine.NewCodeSigner([]byte("s"))
	code := coupons.NewCode()
	rdb.HSet(context.Background(), "nc:coupon:"+code, "rule_id", "r", "store_id", "s", "issued_at", 1, "expires_at", 2)
	later := func() time.Time { return time.UnixMilli(3) }
	l := engine.NewLedger(rdb, coupons, nil, later)
	if _, err := l.Redeem(context.Background(), code, ""); !errors.Is(err, engine.ErrExpired) {
		t.Fatalf("redeem an expired coupon: %v", err)
	}
	if cp, _ := l.Get(context.Background(), code); cp.Status != "expired" {
		t.Fatalf("status %s", cp.Status)
	}
}

// A simulated walk remembers its pings: it enters, stays, leaves and
// comes back (capped, the rule allows one a day), at the walk's own times
// (the store is closed in the evening), every step explained; and Redis is
// exactly as before. Bad pings are named by their place in the walk.
func TestSimulateWalk(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			c.admin("PUT", "/v1/stores/s-alex", storeAlex)
			c.admin("PUT", "/v1/customers/c-42", customerAnna) // first: the rule names her attributes
			c.admin("PUT", "/v1/rules/latte", ruleLatte)
			c.do("PUT", "/v1/customers/c-42/devices/d-1", "app-key", `{"fcm_token": "tok", "platform": "android"}`)
			before := keysSnapshot(t, c.rdb)

			// Monday 30 November 2026, from 09:00 in Berlin.
			walk := `{"customer_id": "c-42", "device_id": "d-1", "pings": [
			  {"lat": 52.5264, "lng": 13.4132, "ts": "2026-11-30T08:00:00Z"},
			  {"lat": 52.5220, "lng": 13.4132, "ts": "2026-11-30T08:03:00Z"},
			  {"lat": 52.5221, "lng": 13.4132, "ts": "2026-11-30T08:04:00Z"},
			  {"lat": 52.5264, "lng": 13.4132, "ts": "2026-11-30T08:10:00Z"},
			  {"lat": 52.5220, "lng": 13.4132, "ts": "2026-11-30T08:20:00Z"},
			  {"lat": 52.5264, "lng": 13.4132, "ts": "2026-11-30T08:30:00Z"},
			  {"lat": 52.5220, "lng": 13.4132, "ts": "2026-11-30T20:30:00Z"}]}`
			r := c.admin("POST", "/v1/simulate", walk)
			if r.Status != 200 || r.Body["simulated"] != true {
				t.Fatalf("simulate: %d %s", r.Status, r.Raw)
			}
			var res struct {
				Steps []struct {
					TS     string
					Events []struct {
						Type    string
						StoreID string `json:"store_id"`
					}
					Offers []struct {
						RuleID string `json:"rule_id"`
						Title  string
					}
					Explain []struct{ RuleID, Result string }
				}
			}
			if err := json.Unmarshal([]byte(r.Raw), &res); err != nil || len(res.Steps) != 7 {
				t.Fatalf("steps: %v %s", err, r.Raw)
			}
			type want struct {
				events, result string
				offers         int
			}
			for i, w := range []want{
				{"", "", 0}, {"enter", "sent", 1}, {"", "", 0}, {"exit", "", 0},
				{"enter", "frequency_cap", 0}, {"exit", "", 0}, {"enter", "store_closed", 0},
			} {
				s := res.Steps[i]
				var events []string
				for _, e := range s.Events {
					events = append(events, e.Type)
				}
				result := ""
				for _, x := range s.Explain {
					result = x.Result
				}
				if strings.Join(events, ",") != w.events || result != w.result || len(s.Offers) != w.offers {
					t.Errorf("step %d at %s: events %v, explained %q, %d offers; want %q, %q, %d", i, s.TS, events, result, len(s.Offers), w.events, w.result, w.offers)
				}
			}
			if res.Steps[1].Offers[0].Title != "Guten Morgen, Anna!" {
				t.Errorf("offer: %+v", res.Steps[1].Offers[0])
			}
			if after := keysSnapshot(t, c.rdb); after != before {
				t.Fatal("a simulation changed Redis")
			}

			bad := c.admin("POST", "/v1/simulate", `{"customer_id": "c-42", "pings": [{"lat": 52.5, "lng": 13.4}, {"lat": 200, "lng": 13.4}]}`)
			wantError(t, bad, 400, "invalid_argument", "pings[1].lat")
			wantError(t, c.admin("POST", "/v1/simulate", `{"customer_id": "nobody", "pings": [{"lat": 52.5, "lng": 13.4}]}`), 404, "not_found", "customer_id")
			wantError(t, c.do("POST", "/v1/simulate", "app-key", walk), 403, "permission_denied", "")
		})
	}
}

// What the app says in a ping's context reaches the audiences (the
// scanner keeps it as the JSON it came as, decoded when a rule reads it):
// the same walk in, foreground gets the offer, background does not.
func TestPingContextReachesAudiences(t *testing.T) {
	const rule = `{"name": "In the app", "enabled": true,
 "trigger": {"on": "enter", "stores": {"tags": ["coffee"]}},
 "audience": "context.app_state == 'foreground' && context.battery > 0.2",
 "offer": {"title": {"de": "Hallo"}, "body": {"de": "Jetzt"}, "valid_for_s": 600}}`
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			c.admin("PUT", "/v1/stores/s-alex", strings.Replace(storeAlex, `, "opening_hours": {"mon": ["07:00-20:00"]}`, "", 1))
			if r := c.admin("PUT", "/v1/rules/in-app", rule); r.Status != 201 {
				t.Fatalf("rule: %d %s", r.Status, r.Raw)
			}
			for _, tc := range []struct {
				customer, context string
				offers            int
			}{
				{"c-1", `{"app_state": "background", "battery": 0.9}`, 0},
				{"c-2", `{"app_state":"foreground","battery":0.9}`, 1},
				{"c-3", `{"battery": 0.1, "app_state": "foreground"}`, 0},
				{"c-4", `null`, 0},
			} {
				if r := c.admin("PUT", "/v1/customers/"+tc.customer, customerAnna); r.Status != 201 {
					t.Fatalf("customer: %d %s", r.Status, r.Raw)
				}
				ping := `{"customer_id": "` + tc.customer + `", "lat": 52.5215, "lng": 13.4130, "accuracy_m": 12, "context": ` + tc.context + `}`
				r := c.do("POST", "/v1/pings", "admin-key", ping)
				if r.Status != 200 {
					t.Fatalf("ping: %d %s", r.Status, r.Raw)
				}
				if got := len(r.Body["offers"].([]any)); got != tc.offers || len(r.Body["events"].([]any)) != 1 {
					t.Fatalf("context %s: %d offers, want %d: %s", tc.context, got, tc.offers, r.Raw)
				}
			}
		})
	}
}

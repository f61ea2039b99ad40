package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nearcast/nearcast/api/console"
)

// The console's pages are public, but carry a policy that loads nothing
// from elsewhere; its endpoints, like every data call, need an admin key.
func TestConsoleFilesAndAuth(t *testing.T) {
	c := newClient(t, srv.Client(t))
	for _, path := range []string{"/console", "/console/", "/console/index.html", "/console/app.js", "/console/style.css", "/console/webhooks.js",
		"/console/rules.js", "/console/results.js", "/console/charts.js", "/console/voice.js", "/console/stores.js"} {
		r := c.do("GET", path, "", "")
		if r.Status != 200 {
			t.Fatalf("GET %s: %d %s", path, r.Status, r.Raw)
		}
		if got := r.Header.Get("Content-Security-Policy"); got != console.ContentSecurityPolicy || !strings.HasPrefix(got, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, got)
		}
	}
	if r := c.do("GET", "/console/", "", ""); !strings.Contains(r.Header.Get("Content-Type"), "text/html") || !strings.Contains(r.Raw, `src="/console/app.js"`) {
		t.Errorf("index: %s %s", r.Header.Get("Content-Type"), r.Raw)
	}
	if r := c.do("GET", "/console/app.js", "", ""); !strings.HasPrefix(r.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("app.js is served as %q", r.Header.Get("Content-Type"))
	}
	wantError(t, c.do("GET", "/console/nothing.js", "", ""), 404, "not_found", "")
	wantError(t, c.do("GET", "/console/../go.mod", "", ""), 404, "not_found", "")
	wantError(t, c.do("POST", "/console/index.html", "", ""), 405, "not_found", "")

	for _, call := range []struct{ method, path, body string }{
		{"GET", "/v1/stores/s-alex/cells", ""},
		{"GET", "/v1/stores/s-alex/feedback", ""},
		{"GET", "/v1/rules/latte/feedback", ""},
		{"POST", "/v1/rules/latte/preview", `{"customer_id": "c-42"}`},
		{"GET", "/v1/webhooks", ""},
		{"POST", "/v1/webhooks/crm/test", ""},
		{"POST", "/v1/webhooks/crm/dead/replay", ""},
	} {
		wantError(t, c.do(call.method, call.path, "", call.body), 401, "unauthenticated", "")
		wantError(t, c.do(call.method, call.path, "wrong", call.body), 401, "unauthenticated", "")
		wantError(t, c.do(call.method, call.path, "app-key", call.body), 403, "permission_denied", "")
	}
}

func TestStoreCells(t *testing.T) {
	c := newClient(t, srv.Client(t))
	if r := c.admin("PUT", "/v1/stores/s-alex", storeAlex); r.Status != 201 {
		t.Fatalf("store: %d %s", r.Status, r.Raw)
	}
	r := c.admin("GET", "/v1/stores/s-alex/cells", "")
	if r.Status != 200 {
		t.Fatalf("cells: %d %s", r.Status, r.Raw)
	}
	cells := r.Body["cells"].([]any)
	if len(cells) < 3 || len(cells) > 40 {
		t.Fatalf("%d cells for a 100 m fence: %s", len(cells), r.Raw)
	}
	for _, x := range cells {
		cell := x.(map[string]any)
		b := cell["boundary"].([]any)
		if len(b) < 5 || cell["cell"] == "" {
			t.Fatalf("cell %v", cell)
		}
		p := b[0].([]any)
		if lat, lng := p[0].(float64), p[1].(float64); lat < 52.50 || lat > 52.54 || lng < 13.39 || lng > 13.44 {
			t.Fatalf("a cell of Alexanderplatz at %v,%v", lat, lng)
		}
	}
	wantError(t, c.admin("GET", "/v1/stores/nowhere/cells", ""), 404, "not_found", "")
}

func TestRulePreview(t *testing.T) {
	rdb := srv.Client(t)
	c := newClient(t, rdb)
	for _, put := range []struct{ path, body string }{
		{"/v1/stores/s-alex", storeAlex}, {"/v1/customers/c-42", customerAnna}, {"/v1/rules/latte", ruleLatte},
	} {
		if r := c.admin("PUT", put.path, put.body); r.Status != 201 {
			t.Fatalf("PUT %s: %d %s", put.path, r.Status, r.Raw)
		}
	}
	before := keysSnapshot(t, rdb)

	r := c.admin("POST", "/v1/rules/latte/preview", `{"customer_id": "c-42", "distance_m": 37}`)
	if r.Status != 200 || r.Body["customer_language"] != "de" || r.Body["store_id"] != "s-alex" {
		t.Fatalf("preview: %d %s", r.Status, r.Raw)
	}
	msgs := r.Body["messages"].([]any)
	want := []map[string]any{
		{"lang": "de", "title": "Guten Morgen, Anna!", "body": "Alexanderplatz ist 37 m entfernt: 20 % auf deinen Flat White."},
		{"lang": "en", "title": "Good morning, Anna!", "body": "Alexanderplatz is 37 m away: 20% off your Flat White."},
	}
	if len(msgs) != len(want) {
		t.Fatalf("messages: %s", r.Raw)
	}
	for i, w := range want {
		for k, v := range w {
			if msgs[i].(map[string]any)[k] != v {
				t.Errorf("message %d %s = %q, want %q", i, k, msgs[i].(map[string]any)[k], v)
			}
		}
	}

	// An unsaved rule is previewed as written, and its faults are named
	// where they lie in the request.
	draft := strings.Replace(ruleLatte, "Good morning", "Hi there", 1)
	r = c.admin("POST", "/v1/rules/latte/preview", `{"customer_id": "c-42", "rule": `+draft+`}`)
	if r.Status != 200 || !strings.Contains(r.Raw, "Hi there, Anna!") {
		t.Fatalf("draft preview: %d %s", r.Status, r.Raw)
	}
	bad := strings.Replace(ruleLatte, "{{.customer.first_name}}!\", \"en\"", "{{.customer.firstname}}!\", \"en\"", 1)
	wantError(t, c.admin("POST", "/v1/rules/latte/preview", `{"customer_id": "c-42", "rule": `+bad+`}`), 422, "failed_precondition", "rule.offer.title.de")
	wantError(t, c.admin("POST", "/v1/rules/latte/preview", `{"customer_id": "c-nobody"}`), 404, "not_found", "customer_id")
	wantError(t, c.admin("POST", "/v1/rules/nothing/preview", `{"customer_id": "c-42"}`), 404, "not_found", "")
	wantError(t, c.admin("POST", "/v1/rules/latte/preview", `{}`), 400, "invalid_argument", "customer_id")

	if after := keysSnapshot(t, rdb); after != before {
		t.Fatal("a preview changed Redis")
	}
}

// The preview of an offer with variants, as the rule editor shows it:
// every variant in every language, in order, each message naming its
// variant, and the variant the customer gets by weight, which is the one
// a ping then offers. An unsaved rule's variant faults are named where
// they lie in the request. Nothing is written.
func TestRulePreviewVariants(t *testing.T) {
	rdb := srv.Client(t)
	c := newClient(t, rdb)
	for _, put := range []struct{ path, body string }{
		{"/v1/stores/s-zoo", `{"name": "Zoo", "lat": 52.5079, "lng": 13.3376, "radius_m": 80}`},
		{"/v1/customers/c-42", customerAnna}, {"/v1/rules/flat-white", ruleVariants},
	} {
		if r := c.admin("PUT", put.path, put.body); r.Status != 201 {
			t.Fatalf("PUT %s: %d %s", put.path, r.Status, r.Raw)
		}
	}
	before := keysSnapshot(t, rdb)
	r := c.admin("POST", "/v1/rules/flat-white/preview", `{"customer_id": "c-42", "distance_m": 30}`)
	var p struct {
		CustomerLanguage string `json:"customer_language"`
		CustomerVariant  string `json:"customer_variant"`
		Messages         []struct{ Variant, Lang, Title, Body string }
	}
	if err := json.Unmarshal([]byte(r.Raw), &p); r.Status != 200 || err != nil {
		t.Fatalf("preview: %d %v %s", r.Status, err, r.Raw)
	}
	want := []struct{ variant, lang, title string }{
		{"a", "en", "10% off your flat white, Anna"}, {"a", "de", "10 % auf deinen Flat White, Anna"},
		{"b", "en", "A free size-up, Anna"}, {"b", "de", "Gratis eine Größe größer, Anna"},
	}
	if len(p.Messages) != len(want) || p.CustomerLanguage != "de" || (p.CustomerVariant != "a" && p.CustomerVariant != "b") {
		t.Fatalf("preview: %s", r.Raw)
	}
	for i, w := range want {
		if m := p.Messages[i]; m.Variant != w.variant || m.Lang != w.lang || m.Title != w.title {
			t.Errorf("message %d: %+v, want %+v", i, m, w)
		}
	}
	if after := keysSnapshot(t, rdb); after != before {
		t.Fatal("a preview changed Redis")
	}
	// The variant the preview names is the one the customer is offered.
	ping := c.admin("POST", "/v1/pings", `{"customer_id": "c-42", "device_id": "d-1", "lat": 52.5079, "lng": 13.3376, "accuracy_m": 5}`)
	offers, _ := ping.Body["offers"].([]any)
	if ping.Status != 200 || len(offers) != 1 || offers[0].(map[string]any)["variant"] != p.CustomerVariant {
		t.Fatalf("the ping was offered %s, the preview said variant %s", ping.Raw, p.CustomerVariant)
	}

	bad := strings.Replace(ruleVariants, `"weight": 3`, `"weight": 1001`, 1)
	wantError(t, c.admin("POST", "/v1/rules/flat-white/preview", `{"customer_id": "c-42", "rule": `+bad+`}`), 400, "invalid_argument", "rule.offer.variants[1].weight")
	bad = strings.Replace(ruleVariants, `"Jeder Flat White bei {{.store.name}}"`, `"Jeder Flat White bei {{.store.nam}}"`, 1)
	wantError(t, c.admin("POST", "/v1/rules/flat-white/preview", `{"customer_id": "c-42", "rule": `+bad+`}`), 422, "failed_precondition", "rule.offer.variants[1].body.de")
}

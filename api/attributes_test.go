package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// attributesOf is GET /v1/attributes as name → the attribute.
func attributesOf(t *testing.T, c *client) map[string]map[string]any {
	t.Helper()
	r := c.admin("GET", "/v1/attributes", "")
	if r.Status != 200 {
		t.Fatalf("GET /v1/attributes: %d %s", r.Status, r.Raw)
	}
	out := map[string]map[string]any{}
	for _, x := range r.Body["attributes"].([]any) {
		a := x.(map[string]any)
		out[a["name"].(string)] = a
	}
	return out
}

// GET /v1/attributes lists what the profiles carry, learned as they are
// written (PUT, PATCH, bulk) and erased; PUT /v1/attributes declares
// names, and a bad declaration is refused naming its field, with nothing
// changed.
func TestAttributesRoutes(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			if got := attributesOf(t, c); len(got) != 0 {
				t.Fatalf("an empty catalog lists %v", got)
			}
			c.admin("PUT", "/v1/customers/c-42", customerAnna)
			c.request("POST", "/v1/customers", "admin-key", "application/x-ndjson",
				`{"id": "c-1", "attributes": {"tier": "silver", "interests": ["tea"]}}`+"\n"+`{"id": "c-2", "attributes": {"tier": 2}}`, nil)
			got := attributesOf(t, c)
			if tier := got["tier"]; tier["profiles"] != 3.0 || tier["type"] != "mixed" || tier["declared"] != false ||
				tier["types"].(map[string]any)["string"] != 2.0 || got["interests"]["type"] != "list" || got["visits_30d"]["type"] != "number" {
				t.Fatalf("learned: %v", got)
			}
			c.request("PATCH", "/v1/customers/c-42", "admin-key", "application/merge-patch+json", `{"attributes": {"visits_30d": null}}`, nil)
			c.admin("DELETE", "/v1/customers/c-2", "")
			got = attributesOf(t, c)
			if _, ok := got["visits_30d"]; ok || got["tier"]["profiles"] != 2.0 || got["tier"]["type"] != "string" {
				t.Fatalf("after a patch and an erasure: %v", got)
			}

			r := c.admin("PUT", "/v1/attributes", `{"attributes": [{"name": "birthday", "type": "string", "description": "YYYY-MM-DD"}, {"name": "tier", "type": "string"}]}`)
			if r.Status != 200 {
				t.Fatalf("declare: %d %s", r.Status, r.Raw)
			}
			got = attributesOf(t, c)
			if b := got["birthday"]; b["declared"] != true || b["profiles"] != 0.0 || b["description"] != "YYYY-MM-DD" || got["tier"]["declared"] != true {
				t.Fatalf("declared: %v", got)
			}

			before := keysSnapshot(t, c.rdb)
			for _, bad := range []struct{ name, body, field string }{
				{"no list", `{}`, "attributes"},
				{"unknown field", `{"attributes": [{"name": "a", "kind": "string"}]}`, "attributes[0].kind"},
				{"bad type", `{"attributes": [{"name": "a", "type": "date"}]}`, "attributes[0].type"},
				{"empty name", `{"attributes": [{"name": "", "type": "bool"}]}`, "attributes[0].name"},
				{"twice", `{"attributes": [{"name": "a", "type": "bool"}, {"name": "a", "type": "bool"}]}`, "attributes[1].name"},
				{"too long", `{"attributes": [{"name": "` + strings.Repeat("a", rules.MaxAttributeKeyBytes+1) + `", "type": "bool"}]}`, "attributes[0].name"},
				{"too many", `{"attributes": [` + strings.Repeat(`{"name": "a", "type": "bool"},`, rules.MaxDeclaredAttributes) + `{"name": "b", "type": "bool"}]}`, "attributes"},
			} {
				t.Run(bad.name, func(t *testing.T) {
					wantError(t, c.admin("PUT", "/v1/attributes", bad.body), 400, "invalid_argument", bad.field)
				})
			}
			wantError(t, c.do("GET", "/v1/attributes", "app-key", ""), 403, "permission_denied", "")
			wantError(t, c.do("PUT", "/v1/attributes", "app-key", `{"attributes": []}`), 403, "permission_denied", "")
			if keysSnapshot(t, c.rdb) != before {
				t.Fatal("a refused declaration changed Redis")
			}
			// [] declares none; what profiles carry stays.
			if r := c.admin("PUT", "/v1/attributes", `{"attributes": []}`); r.Status != 200 {
				t.Fatalf("declare none: %d %s", r.Status, r.Raw)
			}
			got = attributesOf(t, c)
			if _, ok := got["birthday"]; ok || got["tier"]["declared"] != false || got["tier"]["profiles"] != 2.0 {
				t.Fatalf("after declaring none: %v", got)
			}
		})
	}
}

// A rule naming an attribute nobody has is refused at its save, its dry
// run and its preview, with a hint; one some profile carries, or one
// declared, is accepted; and a rule saved while a profile carried its
// attribute stays in force when none does any more.
func TestRuleAttributeTypos(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			c.admin("PUT", "/v1/stores/s-alex", storeAlex)
			c.admin("PUT", "/v1/customers/c-42", customerAnna)
			typo := strings.Replace(ruleLatte, "customer.attributes.tier", "customer.attributes.teir", 1)
			before := keysSnapshot(t, c.rdb)
			for _, path := range []string{"/v1/rules/latte", "/v1/rules/latte?dry_run=true"} {
				r := c.admin("PUT", path, typo)
				wantError(t, r, 422, "failed_precondition", "audience")
				msg := r.Body["error"].(map[string]any)["message"].(string)
				if !strings.Contains(msg, `"teir"`) || !strings.Contains(msg, "did you mean tier?") {
					t.Fatalf("%s: %s", path, msg)
				}
			}
			indexed := strings.Replace(ruleLatte, "customer.attributes.tier", `customer.attributes[\"teir\"]`, 1)
			wantError(t, c.admin("PUT", "/v1/rules/latte", indexed), 422, "failed_precondition", "audience")
			r := c.admin("POST", "/v1/rules/latte/preview", `{"customer_id": "c-42", "rule": `+typo+`}`)
			wantError(t, r, 422, "failed_precondition", "rule.audience")
			// With other faults: every one named.
			r = c.admin("PUT", "/v1/rules/latte", strings.Replace(typo, `"priority": 10`, `"priority": 10, "holdout_pct": 200`, 1))
			if d, _ := r.Body["error"].(map[string]any)["details"].([]any); len(d) != 2 {
				t.Fatalf("want 2 faults, holdout_pct and audience: %s", r.Raw)
			}
			if keysSnapshot(t, c.rdb) != before {
				t.Fatal("a refused rule changed Redis")
			}

			// Carried by a profile: saved. A dynamic index is not checked.
			if r := c.admin("PUT", "/v1/rules/latte", ruleLatte); r.Status != 201 {
				t.Fatalf("save: %d %s", r.Status, r.Raw)
			}
			dynamic := strings.Replace(ruleLatte, "customer.attributes.tier", "customer.attributes[customer.locale]", 1)
			if r := c.admin("PUT", "/v1/rules/latte?dry_run=true", dynamic); r.Status != 200 {
				t.Fatalf("dynamic: %d %s", r.Status, r.Raw)
			}
			// Declared: saved, though no profile has it.
			c.admin("PUT", "/v1/attributes", `{"attributes": [{"name": "teir", "type": "string"}]}`)
			if r := c.admin("PUT", "/v1/rules/typo?dry_run=true", typo); r.Status != 200 {
				t.Fatalf("declared: %d %s", r.Status, r.Raw)
			}

			// Nobody carries tier any more: the rule stays in force (a
			// replica starting now loads it), and only a new save is refused.
			c.admin("DELETE", "/v1/customers/c-42", "")
			live := rules.NewLive(c.rdb, quiet)
			if err := live.Refresh(context.Background()); err != nil || len(live.Current().Rules) != 1 {
				t.Fatalf("loaded: %v", err)
			}
			if r := c.admin("GET", "/v1/rules/latte", ""); r.Status != 200 {
				t.Fatalf("read: %d %s", r.Status, r.Raw)
			}
			wantError(t, c.admin("PUT", "/v1/rules/latte", ruleLatte), 422, "failed_precondition", "audience")
		})
	}
}

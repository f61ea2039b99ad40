package api_test

import (
	"testing"

	"github.com/nearcast/nearcast/internal/redistest"
)

// Ids in paths are percent-decoded: a customer whose id holds an @ can
// be read and erased through the id as a client library escapes it.
func TestPathIDsArePercentDecoded(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			c := newClient(t, be.New(t))
			if r := c.admin("PUT", "/v1/customers/anna%40example.com", customerAnna); r.Status != 201 || r.Body["id"] != "anna@example.com" {
				t.Fatalf("put: %d %s", r.Status, r.Raw)
			}
			if r := c.admin("GET", "/v1/customers/anna@example.com", ""); r.Status != 200 {
				t.Fatalf("get, unescaped: %d %s", r.Status, r.Raw)
			}
			if r := c.admin("GET", "/v1/customers/anna%40example.com/export", ""); r.Status != 200 {
				t.Fatalf("export: %d %s", r.Status, r.Raw)
			}
			if r := c.admin("DELETE", "/v1/customers/anna%40example.com", ""); r.Status != 204 {
				t.Fatalf("erase: %d %s", r.Status, r.Raw)
			}
			wantError(t, c.admin("GET", "/v1/customers/anna%40example.com", ""), 404, "not_found", "")
			// A decoded slash reaches no other route and no id.
			if r := c.admin("DELETE", "/v1/customers/x%2Fdevices%2Fd-1", ""); r.Status != 400 && r.Status != 404 {
				t.Fatalf("an escaped slash: %d %s", r.Status, r.Raw)
			}
		})
	}
}

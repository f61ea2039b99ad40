package engine

import (
	"encoding/json"
	"testing"

	"github.com/nearcast/nearcast/rules"
)

// A profile's attributes are worked out from its stored document when it
// is replaced or erased: the same lines the catalog counted when it was
// written, for every kind of attribute value a profile may carry
// (rules.Customer.Normalize refuses any other).
func TestAttrLinesOfTheStoredDocument(t *testing.T) {
	c := &rules.Customer{ID: "c-1", Attributes: map[string]any{
		"tier": "gold", "visits_30d": 10.0, "spend": 12.5, "vip": true, "no_news": false, "brands": []any{"a", "b"}, "none_yet": []any{},
	}}
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	doc, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := attrLines(c)
	if want == "" {
		t.Fatal("no attribute counted at all")
	}
	if got := attrLinesOf(string(doc)); got != want {
		t.Fatalf("from the document %q, written with %q", got, want)
	}
	if got := attrLinesOf(""); got != "" {
		t.Fatalf("no document: %q", got)
	}
}

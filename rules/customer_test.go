package rules

import (
	"errors"
	"strings"
	"testing"
)

// TestCustomerLimits: a profile's lists and strings are bounded when it
// is written, since audiences and templates walk and print them.
func TestCustomerLimits(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	list := func(n, size int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = long(size)
		}
		return out
	}
	many := func(n int) map[string]any {
		m := map[string]any{}
		for i := range n {
			m[long(i+1)] = true
		}
		return m
	}
	tests := []struct {
		name  string
		c     Customer
		field string // "": valid
		msg   string
	}{
		{"at the limits", Customer{ID: "c", Segments: segments(MaxListLen, MaxListItemBytes),
			Attributes: map[string]any{"note": long(MaxAttributeBytes), "tags": list(MaxListLen, MaxListItemBytes), "n": 3.0, "vip": true}}, "", ""},
		{"too many segments", Customer{ID: "c", Segments: segments(MaxListLen+1, 10)}, "segments", "at most 100 segments"},
		{"a segment too long", Customer{ID: "c", Segments: []string{long(MaxListItemBytes + 1)}}, "segments[0]", "1 to 64 characters"},
		{"an empty segment", Customer{ID: "c", Segments: []string{""}}, "segments[0]", "1 to 64 characters"},
		{"a string attribute too long", Customer{ID: "c", Attributes: map[string]any{"note": long(MaxAttributeBytes + 1)}}, "attributes.note", "at most 256 characters"},
		{"a list attribute too long", Customer{ID: "c", Attributes: map[string]any{"tags": list(MaxListLen+1, 1)}}, "attributes.tags", "at most 100 items"},
		{"an item of a list attribute too long", Customer{ID: "c", Attributes: map[string]any{"tags": list(1, MaxListItemBytes+1)}}, "attributes.tags", "at most 64 characters"},
		{"a list attribute of numbers", Customer{ID: "c", Attributes: map[string]any{"tags": []any{1.0}}}, "attributes.tags", "only strings"},
		{"an object attribute", Customer{ID: "c", Attributes: map[string]any{"o": map[string]any{}}}, "attributes.o", "a string, a number"},
		{"too many attributes", Customer{ID: "c", Attributes: many(MaxAttributes + 1)}, "attributes", "at most 50 attributes"},
		{"an attribute name too long", Customer{ID: "c", Attributes: map[string]any{long(MaxAttributeKeyBytes + 1): true}}, "attributes." + long(MaxAttributeKeyBytes+1), "1 to 64 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Normalize()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Normalize = %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Normalize = %v, want a ValidationError", err)
			}
			for _, f := range ve.Faults {
				if f.Field == tt.field && strings.Contains(f.Message, tt.msg) {
					return
				}
			}
			t.Fatalf("faults %+v, want one at %s containing %q", ve.Faults, tt.field, tt.msg)
		})
	}
}

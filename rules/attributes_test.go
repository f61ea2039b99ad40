package rules

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/nearcast/nearcast/internal/redistest"
)

// The attributes an audience names by a constant, in every form it may
// name one; a name computed at run time is not one of them.
func TestAudienceAttributes(t *testing.T) {
	tests := []struct {
		audience string
		want     []string
	}{
		{"customer.attributes.tier == 'gold'", []string{"tier"}},
		{`customer.attributes["tier"] == 'gold' && customer.attributes['visits'] > 2`, []string{"tier", "visits"}},
		{"customer?.attributes?.tier == 'gold' || customer.attributes?.vip", []string{"tier", "vip"}},
		{"'vip' in customer.attributes && !('lapsed' in customer.attributes)", []string{"vip", "lapsed"}},
		{"any(customer.attributes.interests, # == 'tea') and customer.attributes.tier == customer.attributes.tier", []string{"interests", "tier"}},
		{"(customer.attributes.tier ?? 'none') != 'none'", []string{"tier"}},
		{"customer.attributes[customer.id] == 1 && customer.attributes[lower('X')] == 2", []string{}},
		{"customer.tier == 'gold' && store.attributes.x == 1", []string{}}, // not the customer's attributes
		{"customer.attributes.tier ==", []string{}},                        // does not parse: compileAudience says why
		{"", []string{}},
	}
	for _, tt := range tests {
		if got := AudienceAttributes(tt.audience); !slices.Equal(got, tt.want) {
			t.Errorf("AudienceAttributes(%q) = %q, want %q", tt.audience, got, tt.want)
		}
	}
}

// A name nobody has is a fault at "audience" naming it, pointing at it,
// with the nearest known name as a hint when one is near.
func TestUnknownAttributeFaults(t *testing.T) {
	known := []string{"favorite_drink", "tier", "visits_30d", "vip"}
	tests := []struct {
		audience string
		want     []string // each fault's start; none: accepted
	}{
		{"customer.attributes.tier == 'gold'", nil},
		{"customer.attributes.teir == 'gold'", []string{`no profile has the attribute "teir" and it is not declared (PUT /v1/attributes); did you mean tier? (1:21)`}},
		{`customer.attributes["Tier"] == 'gold'`, []string{`no profile has the attribute "Tier"` + " and it is not declared (PUT /v1/attributes); did you mean tier?"}},
		{"customer.attributes.favourite_drink != ''", []string{`no profile has the attribute "favourite_drink" and it is not declared (PUT /v1/attributes); did you mean favorite_drink?`}},
		{"'vipp' in customer.attributes", []string{`no profile has the attribute "vipp" and it is not declared (PUT /v1/attributes); did you mean vip?`}},
		{"customer.attributes.birthday == '01-01'", []string{`no profile has the attribute "birthday" and it is not declared (PUT /v1/attributes) (1:21)`}},
		{"customer.attributes.x == 1 || customer.attributes.teir == 'a' || customer.attributes.x == 2",
			[]string{`no profile has the attribute "x"`, `no profile has the attribute "teir"`}},
		{"customer.attributes[customer.id] == 1", nil},
	}
	for _, tt := range tests {
		fs := UnknownAttributeFaults(tt.audience, known)
		if len(fs) != len(tt.want) {
			t.Errorf("%s: %d faults, want %d: %v", tt.audience, len(fs), len(tt.want), fs)
			continue
		}
		for i, f := range fs {
			if f.Field != "audience" || !f.Precondition || !strings.HasPrefix(f.Message, tt.want[i]) {
				t.Errorf("%s: fault %+v, want at audience, a precondition, starting %q", tt.audience, f, tt.want[i])
			}
		}
	}
	// The snippet points at the name.
	fs := UnknownAttributeFaults("customer.locale == 'de' &&\n  customer.attributes.teir == 'gold'", known)
	if len(fs) != 1 || !strings.HasSuffix(fs[0].Message, "(2:23)\n |   customer.attributes.teir == 'gold'\n | ......................^") {
		t.Fatalf("the snippet: %+v", fs)
	}
}

func TestNearestName(t *testing.T) {
	known := []string{"a", "age", "tier", "tiers", "visits", "visits_30d", "zip"}
	for name, want := range map[string]string{
		"teir": "tier", "tire": "tier", "TIER": "tier", "tiers": "tiers", "tierz": "tier",
		"vists": "visits", "visits_30": "visits_30d", "b": "", "zap": "zip", "xyz": "", "agee": "age",
		"something_else": "",
	} {
		if got := nearestName(name, known); got != want {
			t.Errorf("nearestName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestCheckAttributeDecls(t *testing.T) {
	ok := []AttributeDecl{{Name: "tier", Type: "string", Description: "gold, silver or bronze"}, {Name: "vip", Type: "bool"},
		{Name: "visits_30d", Type: "number"}, {Name: "interests", Type: "list"}, {Name: "Größe", Type: "number"}}
	if err := CheckAttributeDecls(ok); err != nil {
		t.Fatal(err)
	}
	err := CheckAttributeDecls([]AttributeDecl{
		{Name: "", Type: "string"},
		{Name: "tier", Type: "date"},
		{Name: "tier", Type: "string", Description: strings.Repeat("x", MaxAttributeDescriptionBytes+1)},
		{Name: strings.Repeat("n", MaxAttributeKeyBytes+1), Type: "bool"},
		{Name: "tab\there", Type: "bool"},
	})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("CheckAttributeDecls = %v", err)
	}
	var fields []string
	for _, f := range ve.Faults {
		fields = append(fields, f.Field)
	}
	want := []string{"attributes[0].name", "attributes[1].type", "attributes[2].name", "attributes[2].description", "attributes[3].name", "attributes[4].name"}
	if !slices.Equal(fields, want) {
		t.Fatalf("faults at %q, want %q: %v", fields, want, err)
	}
	err = CheckAttributeDecls(make([]AttributeDecl, MaxDeclaredAttributes+1))
	if !errors.As(err, &ve) || len(ve.Faults) != 1 || ve.Faults[0].Field != "attributes" {
		t.Fatalf("too many: %v", err)
	}
}

// A catalog that checks attributes refuses, on save and on a dry run, an
// audience naming a name nobody has, with the other faults of the rule;
// it reads the names only for an audience that names one; and a rule
// stored before, naming a name nobody has now, still loads.
func TestCatalogChecksAttributes(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			rdb := be.New(t)
			cat := NewCatalog(rdb)
			// Before the check: a rule naming what no profile has is saved.
			stored := goodRule()
			stored.ID = "old"
			stored.Audience = "customer.attributes.teir == 'gold'"
			if err := cat.PutRule(ctx, stored, false); err != nil {
				t.Fatal(err)
			}
			reads := 0
			known := []string{"tier"}
			cat.CheckAttributes(func(context.Context) ([]string, error) { reads++; return known, nil })
			for _, dry := range []bool{true, false} {
				r := goodRule()
				r.Audience = "customer.attributes.teir == 'gold'"
				r.Caps.Total = -1
				err := cat.PutRule(ctx, r, dry)
				var ve *ValidationError
				if !errors.As(err, &ve) || len(ve.Faults) != 2 || ve.Faults[0].Field != "caps.total" ||
					ve.Faults[1].Field != "audience" || !strings.Contains(ve.Faults[1].Message, "did you mean tier?") {
					t.Fatalf("dry run %v: %v", dry, err)
				}
			}
			if _, err := cat.GetRule(ctx, "latte"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a refused save saved the rule: %v", err)
			}
			r := goodRule()
			r.Audience = "customer.attributes.tier == 'gold'"
			if err := cat.PutRule(ctx, r, false); err != nil {
				t.Fatal(err)
			}
			// Declared (or carried) since: accepted.
			known = []string{"teir", "tier"}
			if err := cat.PutRule(ctx, stored, true); err != nil {
				t.Fatal(err)
			}
			before := reads
			r = goodRule()
			r.Audience = "customer.locale == 'de'"
			if err := cat.PutRule(ctx, r, false); err != nil || reads != before {
				t.Fatalf("an audience naming no attribute: %v, %d reads", err, reads-before)
			}
			// The names cannot be read: the save fails as the read did.
			cat.CheckAttributes(func(context.Context) ([]string, error) { return nil, ErrUnavailable })
			if err := cat.PutRule(ctx, stored, true); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("names unread: %v", err)
			}

			// Loading never checks: the rule saved before, naming teir, is in force.
			live := NewLive(rdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
			live.Catalog().CheckAttributes(func(context.Context) ([]string, error) { return nil, nil })
			if err := live.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if n := len(live.Current().Rules); n != 2 {
				t.Fatalf("%d rules loaded, want 2", n)
			}
		})
	}
}

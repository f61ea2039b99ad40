package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/nearcast/nearcast/engine"
	"github.com/nearcast/nearcast/internal/redistest"
	"github.com/nearcast/nearcast/rules"
)

// attrCounts is the catalog as name → "profiles type declared".
func attrCounts(t *testing.T, a *engine.Attributes) map[string]string {
	t.Helper()
	list, err := a.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, x := range list {
		out[x.Name] = fmt.Sprintf("%d %s %v", x.Profiles, x.Type, x.Declared)
	}
	return out
}

func wantCounts(t *testing.T, a *engine.Attributes, want map[string]string) {
	t.Helper()
	got := attrCounts(t, a)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("catalog of attributes:\n got %v\nwant %v", got, want)
	}
}

func profile(id string, attrs map[string]any) *rules.Customer {
	return &rules.Customer{ID: id, Consent: rules.Consent{Location: true, Push: true}, Attributes: attrs}
}

// The catalog of attributes learns, as profiles are written (one, in
// bulk, patched through Put) and erased, which attributes they carry, of
// which type, and how many carry each.
func TestAttributesLearned(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			rdb := be.New(t)
			cs := engine.NewCustomers(rdb)
			a := cs.Attributes()
			put := func(c *rules.Customer) {
				t.Helper()
				if _, err := cs.Put(ctx, c); err != nil {
					t.Fatal(err)
				}
			}
			wantCounts(t, a, map[string]string{})
			put(profile("c-1", map[string]any{"tier": "gold", "visits": 3.0}))
			put(profile("c-2", map[string]any{"tier": "silver", "vip": true}))
			wantCounts(t, a, map[string]string{"tier": "2 string false", "visits": "1 number false", "vip": "1 bool false"})
			// Written again unchanged: nothing moves.
			put(profile("c-1", map[string]any{"tier": "gold", "visits": 3.0}))
			wantCounts(t, a, map[string]string{"tier": "2 string false", "visits": "1 number false", "vip": "1 bool false"})
			// c-1 loses visits, gains interests, and its tier turns a number.
			put(profile("c-1", map[string]any{"tier": 1.0, "interests": []any{"tea"}}))
			wantCounts(t, a, map[string]string{"interests": "1 list false", "tier": "2 mixed false", "vip": "1 bool false"})
			list, _ := a.List(ctx)
			if tier := list[1]; tier.Name != "tier" || tier.Types["string"] != 1 || tier.Types["number"] != 1 {
				t.Fatalf("tier's types: %+v", tier)
			}

			// In bulk: the same counting, one round trip a batch.
			many := []*rules.Customer{
				profile("c-2", map[string]any{"vip": true}), // loses tier
				profile("c-3", map[string]any{"tier": "gold"}),
				profile("c-4", map[string]any{"tier": "gold", "vip": false}),
			}
			for _, c := range many {
				if err := c.Normalize(); err != nil {
					t.Fatal(err)
				}
			}
			if n, err := cs.PutMany(ctx, many); err != nil || n != 3 {
				t.Fatalf("PutMany = %d, %v", n, err)
			}
			wantCounts(t, a, map[string]string{"interests": "1 list false", "tier": "3 mixed false", "vip": "2 bool false"})

			// Erased, a customer's attributes are no longer counted.
			for _, id := range []string{"c-1", "c-2"} {
				if err := cs.Delete(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			wantCounts(t, a, map[string]string{"tier": "2 string false", "vip": "1 bool false"})
			for _, id := range []string{"c-3", "c-4"} {
				if err := cs.Delete(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			wantCounts(t, a, map[string]string{})
			if n := rdb.Exists(ctx, "nc:{attrs}:count", "nc:{attrs}:types").Val(); n != 0 {
				t.Fatalf("%d keys of counts at 0 left", n)
			}

			// A profile written before the catalog is counted once written again.
			rdb.HSet(ctx, "nc:{c:c-old}:profile", "doc", `{"id":"c-old","attributes":{"tier":"gold"}}`, "loc", "1", "push", "1")
			put(profile("c-old", map[string]any{"tier": "gold"}))
			wantCounts(t, a, map[string]string{"tier": "1 string false"})
		})
	}
}

// Declared attributes are listed with their type and description, even
// when no profile carries them; a declaration replaces the one before,
// and a bad one is refused, naming the field, with nothing changed.
func TestAttributesDeclared(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			cs := engine.NewCustomers(be.New(t))
			a := cs.Attributes()
			if _, err := cs.Put(ctx, profile("c-1", map[string]any{"tier": "gold"})); err != nil {
				t.Fatal(err)
			}
			decls := []rules.AttributeDecl{{Name: "tier", Type: "string", Description: "loyalty tier"}, {Name: "birthday", Type: "string"}}
			if err := a.Declare(ctx, decls); err != nil {
				t.Fatal(err)
			}
			wantCounts(t, a, map[string]string{"birthday": "0 string true", "tier": "1 string true"})
			known, err := a.Known(ctx)
			if err != nil || fmt.Sprint(known) != "[birthday tier]" {
				t.Fatalf("Known = %v, %v", known, err)
			}
			list, _ := a.List(ctx)
			if list[1].Description != "loyalty tier" {
				t.Fatalf("description: %+v", list[1])
			}
			for _, bad := range []struct {
				decls []rules.AttributeDecl
				field string
			}{
				{[]rules.AttributeDecl{{Name: "", Type: "string"}}, "attributes[0].name"},
				{[]rules.AttributeDecl{{Name: "a", Type: "string"}, {Name: "a", Type: "number"}}, "attributes[1].name"},
				{[]rules.AttributeDecl{{Name: "a", Type: "date"}}, "attributes[0].type"},
				{[]rules.AttributeDecl{{Name: "a\nb", Type: "string"}}, "attributes[0].name"},
				{make([]rules.AttributeDecl, rules.MaxDeclaredAttributes+1), "attributes"},
			} {
				err := a.Declare(ctx, bad.decls)
				var ve *rules.ValidationError
				if !errors.As(err, &ve) || ve.Faults[0].Field != bad.field {
					t.Fatalf("Declare(%v) = %v, want a fault at %s", bad.decls, err, bad.field)
				}
			}
			wantCounts(t, a, map[string]string{"birthday": "0 string true", "tier": "1 string true"})
			// Declaring none leaves what profiles carry.
			if err := a.Declare(ctx, nil); err != nil {
				t.Fatal(err)
			}
			wantCounts(t, a, map[string]string{"tier": "1 string false"})
		})
	}
}

// Names are learned up to engine.MaxLearnedAttributes; beyond, a new name
// is not learned unless declared, and its profiles are stored as ever.
func TestAttributesCapped(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			cs := engine.NewCustomers(be.New(t))
			var many []*rules.Customer
			for i := 0; i < engine.MaxLearnedAttributes/rules.MaxAttributes; i++ {
				attrs := map[string]any{}
				for j := 0; j < rules.MaxAttributes; j++ {
					attrs[fmt.Sprintf("a%04d", i*rules.MaxAttributes+j)] = 1.0
				}
				many = append(many, profile(fmt.Sprintf("c-%d", i), attrs))
			}
			if _, err := cs.PutMany(ctx, many); err != nil {
				t.Fatal(err)
			}
			if err := cs.Attributes().Declare(ctx, []rules.AttributeDecl{{Name: "declared", Type: "bool"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := cs.Put(ctx, profile("c-late", map[string]any{"late": "x", "declared": true, "a0000": 2.0})); err != nil {
				t.Fatal(err)
			}
			if got, err := cs.Get(ctx, "c-late"); err != nil || got.Attributes["late"] != "x" {
				t.Fatalf("the profile beyond the cap: %+v, %v", got, err)
			}
			list, err := cs.Attributes().List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, x := range list {
				got[x.Name] = x.Profiles
			}
			if len(list) != engine.MaxLearnedAttributes+1 || got["a0000"] != 2 || got["declared"] != 1 {
				t.Fatalf("%d names, a0000 %d, declared %d", len(list), got["a0000"], got["declared"])
			}
			if _, ok := got["late"]; ok {
				t.Fatal("a name beyond the cap was learned")
			}
		})
	}
}

// Concurrent writes of the same profiles, each gaining and losing
// attributes, add up to exact counts: each write counts against the
// profile it replaced.
func TestAttributesConcurrentWrites(t *testing.T) {
	for _, be := range redistest.Backends(srv) {
		t.Run(be.Name, func(t *testing.T) {
			ctx := context.Background()
			rdb := be.New(t)
			cs := engine.NewCustomers(rdb)
			const writers, rounds, customers = 8, 40, 4
			shapes := []map[string]any{
				{"tier": "gold"}, {"tier": "gold", "vip": true}, {"vip": false, "visits": 2.0}, {}, {"tier": 3.0, "visits": 1.0},
			}
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := range rounds {
						id := fmt.Sprintf("c-%d", (w+r)%customers)
						if _, err := cs.Put(ctx, profile(id, shapes[(w*7+r)%len(shapes)])); err != nil {
							errs <- err
							return
						}
						if r%10 == 9 {
							if err := cs.Delete(ctx, id); err != nil && !errors.Is(err, rules.ErrNotFound) {
								errs <- err
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// What the profiles now carry, counted afresh.
			want := map[string]string{}
			counts, types := map[string]int{}, map[string]map[string]bool{}
			for i := range customers {
				c, err := cs.Get(ctx, fmt.Sprintf("c-%d", i))
				if errors.Is(err, rules.ErrNotFound) {
					continue
				} else if err != nil {
					t.Fatal(err)
				}
				for name, v := range c.Attributes {
					counts[name]++
					if types[name] == nil {
						types[name] = map[string]bool{}
					}
					types[name][rules.AttributeType(v)] = true
				}
			}
			for name, n := range counts {
				typ := ""
				for t := range types[name] {
					typ = t
				}
				if len(types[name]) > 1 {
					typ = engine.TypeMixed
				}
				want[name] = fmt.Sprintf("%d %s false", n, typ)
			}
			wantCounts(t, cs.Attributes(), want)
			for field, v := range rdb.HGetAll(ctx, "nc:{attrs}:count").Val() {
				if v == "0" || v[0] == '-' {
					t.Errorf("count %s = %s", field, v)
				}
			}
		})
	}
}

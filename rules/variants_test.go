package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// variantRule is a rule whose offer has two variants, a and b, in
// English and German, by weight 1:1.
func variantRule() *Rule {
	r := goodRule()
	r.Offer = Offer{ValidForS: 3600, Variants: []Variant{
		{ID: "a", Discount: "10%",
			Title: Texts{{"en", "10% off, {{.customer.first_name}}"}, {"de", "10 % Rabatt, {{.customer.first_name}}"}},
			Body:  Texts{{"en", "At {{.store.name}}"}, {"de", "Bei {{.store.name}}"}}},
		{ID: "b", Discount: "size-up",
			Title: Texts{{"en", "A free size-up"}, {"de", "Gratis eine Größe größer"}},
			Body:  Texts{{"en", "Any flat white at {{.store.name}}"}, {"de", "Jeder Flat White bei {{.store.name}}"}}},
	}}
	return r
}

// moreVariants gives the offer n variants, v0 … v<n-1>, copies of a.
func moreVariants(r *Rule, n int) {
	a := r.Offer.Variants[0]
	r.Offer.Variants = nil
	for i := range n {
		v := a
		v.ID = fmt.Sprint("v", i)
		r.Offer.Variants = append(r.Offer.Variants, v)
	}
}

// bandit makes the offer's selection a bandit with the settings given.
func bandit(r *Rule, b Bandit) {
	r.Offer.Selection = SelectBandit
	r.Offer.Bandit = &b
}

// Every fault of an offer with variants, and of its bandit, names its
// field; each case's document has that fault and no other.
func TestVariantFaults(t *testing.T) {
	long := strings.Repeat("x", 65)
	tests := []struct {
		name   string
		mutate func(r *Rule)
		fields []string // every fault's field, in order (one fault repeated for each variant counts once)
		msg    string   // in the first fault's message
	}{
		{"one variant", func(r *Rule) { r.Offer.Variants = r.Offer.Variants[:1] }, []string{"offer.variants"}, "2 to 8 variants, not 1"},
		{"nine variants", func(r *Rule) { moreVariants(r, 9) }, []string{"offer.variants"}, "2 to 8 variants, not 9"},
		{"an empty id", func(r *Rule) { r.Offer.Variants[1].ID = "" }, []string{"offer.variants[1].id"}, "a variant id is 1 to 32"},
		{"an id in capitals", func(r *Rule) { r.Offer.Variants[0].ID = "A" }, []string{"offer.variants[0].id"}, "a-z, 0-9"},
		{"an id beginning with a dash", func(r *Rule) { r.Offer.Variants[0].ID = "-a" }, []string{"offer.variants[0].id"}, "beginning with a letter or digit"},
		{"an id with a bar", func(r *Rule) { r.Offer.Variants[0].ID = "a|b" }, []string{"offer.variants[0].id"}, "a variant id"},
		{"an id of 33", func(r *Rule) { r.Offer.Variants[0].ID = strings.Repeat("a", 33) }, []string{"offer.variants[0].id"}, "1 to 32"},
		{"an id given twice", func(r *Rule) { r.Offer.Variants[1].ID = "a" }, []string{"offer.variants[1].id"}, `variant id "a" is given twice`},
		{"a negative weight", func(r *Rule) { r.Offer.Variants[1].Weight = -1 }, []string{"offer.variants[1].weight"}, "a weight is 1 to 1000"},
		{"a weight over 1,000", func(r *Rule) { r.Offer.Variants[0].Weight = 1001 }, []string{"offer.variants[0].weight"}, "a weight is 1 to 1000"},
		{"a validity too short", func(r *Rule) { r.Offer.Variants[1].ValidForS = 59 }, []string{"offer.variants[1].valid_for_s"}, "between 60 and 2592000"},
		{"a validity too long", func(r *Rule) { r.Offer.Variants[0].ValidForS = MaxValidForS + 1 }, []string{"offer.variants[0].valid_for_s"}, "between 60"},
		{"a negative validity", func(r *Rule) { r.Offer.Variants[0].ValidForS = -60 }, []string{"offer.variants[0].valid_for_s"}, "between 60"},
		{"a discount with a comma", func(r *Rule) { r.Offer.Variants[1].Discount = "1,50 €" }, []string{"offer.variants[1].discount"}, "without commas, bars or line breaks"},
		{"a discount with a bar", func(r *Rule) { r.Offer.Variants[1].Discount = "a|b" }, []string{"offer.variants[1].discount"}, "without commas"},
		{"a discount with a line break", func(r *Rule) { r.Offer.Variants[1].Discount = "a\nb" }, []string{"offer.variants[1].discount"}, "without commas"},
		{"a discount of 65", func(r *Rule) { r.Offer.Variants[1].Discount = long }, []string{"offer.variants[1].discount"}, "at most 64 characters"},
		{"a variant in other languages", func(r *Rule) {
			v := &r.Offer.Variants[1]
			v.Title, v.Body = Texts{{"en", "Hi"}, {"fr", "Salut"}}, Texts{{"en", "Hi"}, {"fr", "Salut"}}
		}, []string{"offer.variants[1].title"}, "every variant is written in the same languages (de, en)"},
		{"a variant in fewer languages", func(r *Rule) {
			v := &r.Offer.Variants[1]
			v.Title, v.Body = v.Title[:1], v.Body[:1]
		}, []string{"offer.variants[1].title"}, "same languages"},
		{"a variant's body in other languages than its title", func(r *Rule) { r.Offer.Variants[0].Body = r.Offer.Variants[0].Body[:1] },
			[]string{"offer.variants[0].body"}, "offer.variants[0].title and offer.variants[0].body must be written in the same languages"},
		{"a variant without a title", func(r *Rule) { r.Offer.Variants[1].Title = nil }, []string{"offer.variants[1].title"}, "needs a text in at least one language"},
		{"a variant's empty text", func(r *Rule) { r.Offer.Variants[1].Body[1].Template = " " }, []string{"offer.variants[1].body.de"}, "must not be empty"},
		{"a variant's template refused", func(r *Rule) { r.Offer.Variants[1].Body[0].Template = "{{.store.nam}}" }, []string{"offer.variants[1].body.en"}, `store has no field "nam"`},
		{"a fallback not among the variants' languages", func(r *Rule) { r.Offer.DefaultLocale = "fr" },
			[]string{"offer.default_locale"}, `default_locale "fr" is not one of the languages of offer.variants[0].title (de, en)`},
		{"a title on the offer too", func(r *Rule) { r.Offer.Title = Texts{{"en", "Hi"}} }, []string{"offer.title"}, "leave offer.title and offer.body out"},
		{"a body on the offer too", func(r *Rule) { r.Offer.Body = Texts{{"en", "Hi"}} }, []string{"offer.title"}, "has its texts in each variant"},
		{"an unknown selection", func(r *Rule) { r.Offer.Selection = "random" }, []string{"offer.selection"}, `"weighted"`},
		{"a selection without variants", func(r *Rule) { *r = *goodRule(); r.Offer.Selection = SelectBandit }, []string{"offer.selection"}, "belongs to an offer with variants"},
		{"a bandit without variants", func(r *Rule) { *r = *goodRule(); r.Offer.Bandit = &Bandit{} }, []string{"offer.bandit"}, "belongs to an offer with variants"},
		{"a bandit on a weighted offer", func(r *Rule) { r.Offer.Bandit = &Bandit{MinPerVariant: 10} }, []string{"offer.bandit"}, `selection "bandit"`},
		{"a bandit on an offer weighted in so many words", func(r *Rule) { r.Offer.Selection, r.Offer.Bandit = SelectWeighted, &Bandit{} }, []string{"offer.bandit"}, `selection "bandit"`},
		{"a negative minimum", func(r *Rule) { bandit(r, Bandit{MinPerVariant: -1}) }, []string{"offer.bandit.min_per_variant"}, "1 to 1,000,000"},
		{"a minimum over a million", func(r *Rule) { bandit(r, Bandit{MinPerVariant: 1_000_001}) }, []string{"offer.bandit.min_per_variant"}, "1 to 1,000,000"},
		{"a negative floor", func(r *Rule) { bandit(r, Bandit{FloorPct: -1}) }, []string{"offer.bandit.floor_pct"}, "at most 50 with 2 variants"},
		{"a floor that is not a number", func(r *Rule) { bandit(r, Bandit{FloorPct: math.NaN()}) }, []string{"offer.bandit.floor_pct"}, "floor_pct"},
		{"floors over 100 in all", func(r *Rule) { bandit(r, Bandit{FloorPct: 50.5}) }, []string{"offer.bandit.floor_pct"}, "at most 50 with 2 variants"},
		{"floors over 100 in all, three variants", func(r *Rule) { moreVariants(r, 3); bandit(r, Bandit{FloorPct: 34}) }, []string{"offer.bandit.floor_pct"}, "at most 33.33 with 3 variants"},
		{"floors over 100 in all, eight variants", func(r *Rule) { moreVariants(r, 8); bandit(r, Bandit{FloorPct: 12.6}) }, []string{"offer.bandit.floor_pct"}, "at most 12.5 with 8 variants"},
		{"a segment_by of another form", func(r *Rule) { bandit(r, Bandit{SegmentBy: "customer.tier", Segments: []string{"gold"}}) },
			[]string{"offer.bandit.segment_by"}, `"customer.attributes.<name>" or "store.tags"`},
		{"a segment_by of the store's other fields", func(r *Rule) { bandit(r, Bandit{SegmentBy: "store.name", Segments: []string{"x"}}) },
			[]string{"offer.bandit.segment_by"}, `"store.tags"`},
		{"a segment_by without an attribute's name", func(r *Rule) { bandit(r, Bandit{SegmentBy: "customer.attributes.", Segments: []string{"gold"}}) },
			[]string{"offer.bandit.segment_by"}, "followed by an attribute's name"},
		{"a segment_by with a bad attribute name", func(r *Rule) {
			bandit(r, Bandit{SegmentBy: "customer.attributes.the tier", Segments: []string{"gold"}})
		},
			[]string{"offer.bandit.segment_by"}, "followed by an attribute's name"},
		{"a segment_by without segments", func(r *Rule) { bandit(r, Bandit{SegmentBy: "store.tags"}) }, []string{"offer.bandit.segments"}, "1 to 16 segments"},
		{"seventeen segments", func(r *Rule) {
			var segs []string
			for i := range 17 {
				segs = append(segs, fmt.Sprint("s", i))
			}
			bandit(r, Bandit{SegmentBy: "store.tags", Segments: segs})
		}, []string{"offer.bandit.segments"}, `1 to 16 segments (the values learnt apart; others are learnt as "other")`},
		{"segments without segment_by", func(r *Rule) { bandit(r, Bandit{Segments: []string{"gold"}}) }, []string{"offer.bandit.segments"}, "belong to a bandit with segment_by"},
		{"a segment given twice", func(r *Rule) {
			bandit(r, Bandit{SegmentBy: "customer.attributes.tier", Segments: []string{"gold", "silver", "gold"}})
		},
			[]string{"offer.bandit.segments[2]"}, "given once"},
		{"a segment named other", func(r *Rule) {
			bandit(r, Bandit{SegmentBy: "customer.attributes.tier", Segments: []string{"gold", "other"}})
		},
			[]string{"offer.bandit.segments[1]"}, `and not "other"`},
		{"an empty segment", func(r *Rule) { bandit(r, Bandit{SegmentBy: "store.tags", Segments: []string{""}}) }, []string{"offer.bandit.segments[0]"}, "1 to 64 characters"},
		{"a segment of 65", func(r *Rule) { bandit(r, Bandit{SegmentBy: "store.tags", Segments: []string{"ok", long}}) }, []string{"offer.bandit.segments[1]"}, "1 to 64 characters"},
		{"a segment with a comma", func(r *Rule) { bandit(r, Bandit{SegmentBy: "store.tags", Segments: []string{"a,b"}}) }, []string{"offer.bandit.segments[0]"}, "without bars, commas or line breaks"},
		{"a segment with a bar", func(r *Rule) { bandit(r, Bandit{SegmentBy: "store.tags", Segments: []string{"a|b"}}) }, []string{"offer.bandit.segments[0]"}, "without bars"},
		{"faults of two variants and the bandit at once", func(r *Rule) {
			r.Offer.Variants[0].ID = "A"
			r.Offer.Variants[1].Weight = 5000
			bandit(r, Bandit{FloorPct: 60})
		}, []string{"offer.variants[0].id", "offer.variants[1].weight", "offer.bandit.floor_pct"}, "a variant id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := variantRule()
			tt.mutate(r)
			_, err := Compile(r)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Compile = %v, want a ValidationError", err)
			}
			var fields []string
			for _, f := range ve.Faults {
				fields = append(fields, f.Field)
			}
			if !slices.Equal(slices.Compact(fields), tt.fields) || !strings.Contains(ve.Faults[0].Message, tt.msg) {
				t.Fatalf("faults %+v, want fields %q, the first's message containing %q", ve.Faults, tt.fields, tt.msg)
			}
		})
	}
}

// What a valid experiment may be: the bounds themselves pass.
func TestVariantBoundsAccepted(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(r *Rule)
	}{
		{"eight variants", func(r *Rule) { moreVariants(r, 8) }},
		{"ids of 1 and 32, digits, _ and -", func(r *Rule) { r.Offer.Variants[0].ID, r.Offer.Variants[1].ID = "0", "b_"+strings.Repeat("-", 30) }},
		{"weights 1 and 1,000", func(r *Rule) { r.Offer.Variants[0].Weight, r.Offer.Variants[1].Weight = 1, MaxWeight }},
		{"validities of 60 s and 30 days", func(r *Rule) {
			r.Offer.Variants[0].ValidForS, r.Offer.Variants[1].ValidForS = MinValidForS, MaxValidForS
		}},
		{"a discount of 64 and none", func(r *Rule) {
			r.Offer.Variants[0].Discount, r.Offer.Variants[1].Discount = strings.Repeat("x", 64), ""
		}},
		{"languages in another order", func(r *Rule) {
			v := &r.Offer.Variants[1]
			slices.Reverse(v.Title)
			slices.Reverse(v.Body)
		}},
		{"the fallback a language of the variants", func(r *Rule) { r.Offer.DefaultLocale = "de" }},
		{"selection weighted in so many words", func(r *Rule) { r.Offer.Selection = SelectWeighted }},
		{"a floor of 50 with two variants", func(r *Rule) { bandit(r, Bandit{FloorPct: 50}) }},
		{"a floor of 12.5 with eight", func(r *Rule) { moreVariants(r, 8); bandit(r, Bandit{FloorPct: 12.5}) }},
		{"a minimum of 1", func(r *Rule) { bandit(r, Bandit{MinPerVariant: 1}) }},
		{"a minimum of a million", func(r *Rule) { bandit(r, Bandit{MinPerVariant: 1_000_000}) }},
		{"store tags", func(r *Rule) { bandit(r, Bandit{SegmentBy: "store.tags", Segments: []string{"mall", "station"}}) }},
		{"an attribute, 16 segments", func(r *Rule) {
			var segs []string
			for i := range MaxSegments {
				segs = append(segs, fmt.Sprint("tier-", i))
			}
			bandit(r, Bandit{SegmentBy: "customer.attributes.tier", Segments: segs})
		}},
		{"a weighted offer without variants", func(r *Rule) { *r = *goodRule(); r.Offer.Selection = SelectWeighted }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := variantRule()
			tt.mutate(r)
			if _, err := Compile(r); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Saving fills in what a variant and a bandit leave out: weight 1, the
// offer's validity, weighted selection, a bandit's minimum and floor,
// and the fallback language.
func TestVariantDefaults(t *testing.T) {
	r := variantRule()
	r.Offer.Variants[1].ValidForS = 1800
	r.Offer.Variants[1].Weight = 3
	c, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	o := r.Offer
	if o.Selection != SelectWeighted || o.Bandit != nil || c.Bandit() != nil {
		t.Fatalf("selection %q, bandit %+v", o.Selection, o.Bandit)
	}
	if o.Variants[0].Weight != 1 || o.Variants[0].ValidForS != 3600 || o.Variants[1].Weight != 3 || o.Variants[1].ValidForS != 1800 {
		t.Fatalf("variants as saved: %+v", o.Variants)
	}
	if o.DefaultLocale != "en" {
		t.Fatalf("default_locale %q, want the first variant's first language", o.DefaultLocale)
	}
	if c.Variants() != 2 || c.VariantID(0) != "a" || c.VariantID(1) != "b" || c.VariantIndex("b") != 1 || c.VariantIndex("c") != -1 || c.VariantIndex("") != -1 {
		t.Fatalf("variants %d: %q %q", c.Variants(), c.VariantID(0), c.VariantID(1))
	}
	if !slices.Equal(c.Weights(), []int{1, 3}) || c.ValidFor(0) != time.Hour || c.ValidFor(1) != 30*time.Minute {
		t.Fatalf("weights %v, validities %v %v", c.Weights(), c.ValidFor(0), c.ValidFor(1))
	}
	// The offer's own validity, when it is the default, is each variant's.
	r = variantRule()
	r.Offer.ValidForS = 0
	if _, err := Compile(r); err != nil || r.Offer.Variants[0].ValidForS != DefaultValidForS {
		t.Fatalf("%v: %+v", err, r.Offer.Variants[0])
	}

	// A bandit left out, or left at zero, gets its defaults.
	for _, b := range []*Bandit{nil, {}} {
		r := variantRule()
		r.Offer.Selection, r.Offer.Bandit = SelectBandit, b
		c, err := Compile(r)
		if err != nil {
			t.Fatal(err)
		}
		got := c.Bandit()
		if got == nil || got.MinPerVariant != DefaultMinArm || got.FloorPct != DefaultFloorPct || got.SegmentBy != "" || got.Segments != nil {
			t.Fatalf("bandit %+v, want min_per_variant 100, floor_pct 5", got)
		}
		if DefaultMinArm != 100 || DefaultFloorPct != 5 {
			t.Fatalf("the documented defaults are 100 and 5, not %d and %v", DefaultMinArm, DefaultFloorPct)
		}
	}

	// An offer without variants has one version, with no id.
	c, err = Compile(goodRule())
	if err != nil {
		t.Fatal(err)
	}
	if c.Variants() != 0 || c.VariantID(0) != "" || c.VariantIndex("") != -1 || c.Assign("c-42") != 0 || c.Bandit() != nil {
		t.Fatalf("an offer without variants: %d variants, id %q", c.Variants(), c.VariantID(0))
	}
}

// The document as saved reads back the same: variants keep their order,
// their texts their languages' order, the bandit its settings.
func TestVariantsRoundTrip(t *testing.T) {
	r := variantRule()
	bandit(r, Bandit{MinPerVariant: 50, FloorPct: 2.5, SegmentBy: "store.tags", Segments: []string{"mall", "station"}})
	if _, err := Compile(r); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"title":{},"body":{}`,
		`"variants":[{"id":"a","title":{"en":"10% off, {{.customer.first_name}}","de":"10 % Rabatt, {{.customer.first_name}}"}`,
		`"valid_for_s":3600,"discount":"10%","weight":1}`,
		`"selection":"bandit","bandit":{"min_per_variant":50,"floor_pct":2.5,"segment_by":"store.tags","segments":["mall","station"]}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("saved as %s\nwant %s in it", b, want)
		}
	}
	var back Rule
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if _, err := Compile(&back); err != nil {
		t.Fatalf("the saved document does not compile again: %v", err)
	}
	b2, _ := json.Marshal(&back)
	if string(b2) != string(b) {
		t.Fatalf("read back as\n%s\nnot\n%s", b2, b)
	}
}

// Assign gives a customer the same variant every time, by the weights:
// over 10,000 customers the shares follow weights 1:3 within 2 points;
// and raising a variant's weight moves customers only to it.
func TestAssign(t *testing.T) {
	r := variantRule()
	r.Offer.Variants[1].Weight = 3
	c, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10_000
	counts := [2]int{}
	first := make([]int, n)
	for i := range n {
		id := fmt.Sprint("c-", i)
		v := c.Assign(id)
		if v < 0 || v > 1 {
			t.Fatalf("Assign(%s) = %d", id, v)
		}
		counts[v]++
		first[i] = v
	}
	if share := float64(counts[1]) / n; math.Abs(share-0.75) > 0.02 {
		t.Fatalf("variant b got %.1f%% of %d customers at weights 1:3, want 75%% ± 2", 100*share, n)
	}

	// Sticky: the same customer, the same variant, from the same rule
	// compiled again (another process, a restart).
	again, err := Compile(variantRuleWeights(1, 3))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprint("c-", i)
		if c.Assign(id) != first[i] || again.Assign(id) != first[i] {
			t.Fatalf("%s got variant %d, then %d, %d", id, first[i], c.Assign(id), again.Assign(id))
		}
	}

	// Another rule splits the customers otherwise: the hash is of rule
	// and customer.
	other := variantRuleWeights(1, 3)
	other.ID = "espresso"
	oc, err := Compile(other)
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for i := range n {
		if oc.Assign(fmt.Sprint("c-", i)) == first[i] {
			same++
		}
	}
	// Independent splits at 1:3 agree for 1/16 + 9/16 of the customers.
	if frac := float64(same) / n; math.Abs(frac-0.625) > 0.03 {
		t.Fatalf("two rules agree on %.1f%% of the customers, want about 62.5%% (independent hashes)", 100*frac)
	}

	// From 1:3 to 1:9: b's customers stay; some of a's move to b, none the other way.
	more, err := Compile(variantRuleWeights(1, 9))
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for i := range n {
		v := more.Assign(fmt.Sprint("c-", i))
		if first[i] == 1 && v != 1 {
			t.Fatalf("c-%d moved from b to a when b's weight rose", i)
		}
		if v != first[i] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no customer moved to b when its weight rose")
	}

	// Equal weights over eight variants: each about an eighth.
	r = variantRule()
	moreVariants(r, 8)
	c8, err := Compile(r)
	if err != nil {
		t.Fatal(err)
	}
	per := make([]int, 8)
	for i := range n {
		per[c8.Assign(fmt.Sprint("c-", i))]++
	}
	for v, k := range per {
		if share := float64(k) / n; math.Abs(share-0.125) > 0.02 {
			t.Fatalf("variant %d of 8 got %.1f%%, want 12.5%% ± 2", v, 100*share)
		}
	}
}

func variantRuleWeights(a, b int) *Rule {
	r := variantRule()
	r.Offer.Variants[0].Weight, r.Offer.Variants[1].Weight = a, b
	return r
}

// PickByWeight: u in [0, 1) falls in one weight's share, the last when
// rounding leaves it at the very top; HashUnit stays in [0, 1).
func TestPickByWeight(t *testing.T) {
	w := []int{1, 3}
	for _, tt := range []struct {
		u    float64
		want int
	}{{0, 0}, {0.2499, 0}, {0.25, 1}, {0.9999999, 1}, {1, 1}} {
		if got := PickByWeight(w, tt.u); got != tt.want {
			t.Errorf("PickByWeight(%v, %v) = %d, want %d", w, tt.u, got, tt.want)
		}
	}
	if PickByWeight([]int{5, 0, 5}, 0.5) != 2 {
		t.Error("a weight of 0 takes a share")
	}
	for i := range 1000 {
		if u := HashUnit("r", fmt.Sprint(i)); u < 0 || u >= 1 {
			t.Fatalf("HashUnit = %v", u)
		}
	}
	if HashUnit("ab", "c") == HashUnit("a", "bc") {
		t.Error("HashUnit does not tell its parts apart")
	}
}

// Segment: a customer's attribute, or the first of the segments a store
// carries; any other value is "other"; an unsegmented bandit, "".
func TestSegment(t *testing.T) {
	tier := &Bandit{SegmentBy: "customer.attributes.tier", Segments: []string{"gold", "silver", "true", "5"}}
	cust := func(v any) *Customer { return &Customer{ID: "c", Attributes: map[string]any{"tier": v}} }
	for _, tt := range []struct {
		name string
		c    *Customer
		want string
	}{
		{"a value among the segments", cust("gold"), "gold"},
		{"another", cust("silver"), "silver"},
		{"a value not among them", cust("bronze"), SegmentOther},
		{"a value differing in case", cust("Gold"), SegmentOther},
		{"a boolean", cust(true), "true"},
		{"a number", cust(5.0), "5"},
		{"a number not among them", cust(5.5), SegmentOther},
		{"a list", cust([]any{"gold"}), SegmentOther},
		{"no such attribute", &Customer{ID: "c"}, SegmentOther},
		{"no customer", nil, SegmentOther},
	} {
		if got := tier.Segment(tt.c, []string{"gold"}); got != tt.want {
			t.Errorf("%s: Segment = %q, want %q", tt.name, got, tt.want)
		}
	}

	tags := &Bandit{SegmentBy: "store.tags", Segments: []string{"station", "mall"}}
	for _, tt := range []struct {
		tags []string
		want string
	}{
		{[]string{"coffee", "mall"}, "mall"},
		{[]string{"mall", "station"}, "station"}, // the first of the segments, not of the tags
		{[]string{"coffee"}, SegmentOther},
		{nil, SegmentOther},
	} {
		if got := tags.Segment(cust("gold"), tt.tags); got != tt.want {
			t.Errorf("store tags %v: Segment = %q, want %q", tt.tags, got, tt.want)
		}
	}

	if got := (&Bandit{}).Segment(cust("gold"), []string{"mall"}); got != "" {
		t.Errorf("an unsegmented bandit: %q", got)
	}
	var none *Bandit
	if got := none.Segment(cust("gold"), nil); got != "" {
		t.Errorf("no bandit: %q", got)
	}
}

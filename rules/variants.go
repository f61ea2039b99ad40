package rules

import (
	"fmt"
	"hash/fnv"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Variant is one version of an offer in an experiment: its texts, and
// optionally its own validity and a discount tag that the results report
// it by ("10%", "free-size-up").
type Variant struct {
	ID        string `json:"id"`
	Title     Texts  `json:"title"`
	Body      Texts  `json:"body"`
	ValidForS int    `json:"valid_for_s,omitempty"` // 0: the offer's valid_for_s
	Discount  string `json:"discount,omitempty"`
	// Weight is the variant's share under "weighted" selection, and
	// while a bandit explores before its minimum (1 to 1,000; default 1).
	Weight int `json:"weight,omitempty"`
}

// Bandit tunes the "bandit" selection: Thompson sampling on each
// variant's redemption rate (engine/variants.go).
type Bandit struct {
	// MinPerVariant is how many offers each variant gets, by weight,
	// before the bandit exploits what it learnt (default 100).
	MinPerVariant int `json:"min_per_variant"`
	// FloorPct is the least share of offers each variant keeps once the
	// bandit exploits, so that it goes on learning (default 5; at most
	// 100 divided by the number of variants).
	FloorPct float64 `json:"floor_pct"`
	// SegmentBy learns apart per segment: "customer.attributes.<name>"
	// (the attribute's value) or "store.tags" (the first of Segments the
	// store carries); empty: one for everyone.
	SegmentBy string `json:"segment_by,omitempty"`
	// Segments are the values learnt apart (at most 16); any other value
	// is learnt as "other". Required with SegmentBy.
	Segments []string `json:"segments,omitempty"`
}

// Selection values.
const (
	SelectWeighted = "weighted"
	SelectBandit   = "bandit"
)

// Bounds of variants.
const (
	MinVariants     = 2
	MaxVariants     = 8
	MaxWeight       = 1000
	MaxSegments     = 16
	DefaultMinArm   = 100
	DefaultFloorPct = 5.0
	// SegmentOther is the segment of a value not among Bandit.Segments.
	SegmentOther = "other"
)

var variantIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// compileArms compiles the offer's texts, or its variants' when it has
// some, checking the experiment's settings.
func compileArms(fs *faults, o *Offer, trial bool) []arm {
	if len(o.Variants) == 0 {
		if o.Selection != "" && o.Selection != SelectWeighted {
			fs.add("offer.selection", "offer.selection belongs to an offer with variants")
		}
		if o.Bandit != nil {
			fs.add("offer.bandit", "offer.bandit belongs to an offer with variants and selection \"bandit\"")
		}
		title, body := compileOfferTexts(fs, "offer", o.Title, o.Body, trial)
		return []arm{{title: title, body: body, fallback: o.defaultLocale(fs, "offer.title", o.Title),
			validFor: time.Duration(o.ValidForS) * time.Second, weight: 1}}
	}
	if len(o.Title) > 0 || len(o.Body) > 0 {
		fs.add("offer.title", "an offer with variants has its texts in each variant: leave offer.title and offer.body out")
	}
	if len(o.Variants) < MinVariants || len(o.Variants) > MaxVariants {
		fs.add("offer.variants", "an offer has %d to %d variants, not %d", MinVariants, MaxVariants, len(o.Variants))
	}
	arms := make([]arm, 0, len(o.Variants))
	seen := map[string]bool{}
	var langs []string
	for i := range o.Variants {
		v := &o.Variants[i]
		path := fmt.Sprintf("offer.variants[%d]", i)
		if !variantIDPattern.MatchString(v.ID) {
			fs.add(path+".id", "a variant id is 1 to 32 of a-z, 0-9, _ and -, beginning with a letter or digit, such as \"a\" or \"ten-percent\"")
		} else if seen[v.ID] {
			fs.add(path+".id", "variant id %q is given twice", v.ID)
		}
		seen[v.ID] = true
		if v.Weight == 0 {
			v.Weight = 1
		}
		if v.Weight < 1 || v.Weight > MaxWeight {
			fs.add(path+".weight", "a weight is 1 to %d", MaxWeight)
		}
		if v.ValidForS == 0 {
			v.ValidForS = o.ValidForS
		}
		if v.ValidForS < MinValidForS || v.ValidForS > MaxValidForS {
			fs.add(path+".valid_for_s", "valid_for_s must be between %d and %d seconds", MinValidForS, MaxValidForS)
		}
		if len(v.Discount) > 64 || strings.ContainsAny(v.Discount, ",|\n") {
			fs.add(path+".discount", "a discount tag is at most 64 characters, without commas, bars or line breaks")
		}
		title, body := compileOfferTexts(fs, path, v.Title, v.Body, trial)
		if i == 0 {
			langs = textLangs(v.Title)
		} else if len(v.Title) > 0 && !slices.Equal(langs, textLangs(v.Title)) {
			fs.add(path+".title", "every variant is written in the same languages (%s), so that each customer can get any", strings.Join(langs, ", "))
		}
		// default_locale is checked once, against the first variant: the
		// others are written in its languages (or faulted above).
		var fallback int
		if i == 0 {
			fallback = o.defaultLocale(fs, path+".title", v.Title)
		} else {
			fallback = max(slices.IndexFunc(v.Title, func(t Text) bool { return t.Lang == o.DefaultLocale }), 0)
		}
		arms = append(arms, arm{id: v.ID, title: title, body: body, fallback: fallback,
			validFor: time.Duration(v.ValidForS) * time.Second, weight: v.Weight})
	}
	switch o.Selection {
	case "":
		o.Selection = SelectWeighted
	case SelectWeighted, SelectBandit:
	default:
		fs.add("offer.selection", "offer.selection is \"weighted\" (by weight: the default) or \"bandit\" (learns which redeems best)")
	}
	if o.Selection == SelectBandit {
		if o.Bandit == nil {
			o.Bandit = &Bandit{}
		}
		o.Bandit.check(fs, len(o.Variants))
	} else if o.Bandit != nil {
		fs.add("offer.bandit", "offer.bandit belongs to an offer with selection \"bandit\"")
	}
	return arms
}

// check fills in a bandit's defaults and checks its bounds.
func (b *Bandit) check(fs *faults, variants int) {
	if b.MinPerVariant == 0 {
		b.MinPerVariant = DefaultMinArm
	}
	if b.MinPerVariant < 1 || b.MinPerVariant > 1_000_000 {
		fs.add("offer.bandit.min_per_variant", "min_per_variant is 1 to 1,000,000 offers")
	}
	if b.FloorPct == 0 {
		b.FloorPct = DefaultFloorPct
	}
	if math.IsNaN(b.FloorPct) || b.FloorPct < 0 || variants > 0 && b.FloorPct*float64(variants) > 100 {
		fs.add("offer.bandit.floor_pct", "floor_pct is the percentage of offers each variant keeps: above 0 and at most %.4g with %d variants (left out: 5)", 100/float64(max(variants, 1)), variants)
	}
	switch {
	case b.SegmentBy == "":
		if len(b.Segments) > 0 {
			fs.add("offer.bandit.segments", "segments belong to a bandit with segment_by")
		}
		return
	case b.SegmentBy == "store.tags":
	case strings.HasPrefix(b.SegmentBy, "customer.attributes."):
		if err := ValidID("offer.bandit.segment_by", strings.TrimPrefix(b.SegmentBy, "customer.attributes.")); err != nil {
			fs.add("offer.bandit.segment_by", "customer.attributes. is followed by an attribute's name")
		}
	default:
		fs.add("offer.bandit.segment_by", "segment_by is \"customer.attributes.<name>\" or \"store.tags\"")
	}
	if len(b.Segments) == 0 || len(b.Segments) > MaxSegments {
		fs.add("offer.bandit.segments", "a segmented bandit names 1 to %d segments (the values learnt apart; others are learnt as %q)", MaxSegments, SegmentOther)
	}
	for i, s := range b.Segments {
		if s == "" || len(s) > 64 || strings.ContainsAny(s, "|,\n") || s == SegmentOther || slices.Index(b.Segments, s) != i {
			fs.add(fmt.Sprintf("offer.bandit.segments[%d]", i), "a segment is 1 to 64 characters without bars, commas or line breaks, given once, and not %q", SegmentOther)
		}
	}
}

// arm is version v of the offer (its own texts when it has no variants).
func (c *Compiled) arm(v int) *arm {
	if v < 0 || v >= len(c.arms) {
		v = 0
	}
	return &c.arms[v]
}

// Variants is how many variants the offer has (0: none, one version).
func (c *Compiled) Variants() int {
	if len(c.arms) < 2 && c.arms[0].id == "" {
		return 0
	}
	return len(c.arms)
}

// VariantID is variant v's id ("" for an offer without variants).
func (c *Compiled) VariantID(v int) string { return c.arm(v).id }

// VariantIndex is the position of the variant with id, or -1.
func (c *Compiled) VariantIndex(id string) int {
	for i, a := range c.arms {
		if a.id == id && id != "" {
			return i
		}
	}
	return -1
}

// Weights are the variants' weights, in order (worked out once, at
// compile time: not to be changed).
func (c *Compiled) Weights() []int { return c.weights }

// Bandit is the offer's bandit settings, nil unless it learns.
func (c *Compiled) Bandit() *Bandit {
	if c.Rule.Offer.Selection != SelectBandit {
		return nil
	}
	return c.Rule.Offer.Bandit
}

// Assign is the variant a customer gets by weight: a hash of rule and
// customer falls in one variant's share, so the same customer gets the
// same one every time (while the weights stay), with no Redis read.
func (c *Compiled) Assign(customerID string) int {
	return PickByWeight(c.Weights(), HashUnit(c.Rule.ID, "variant", customerID))
}

// PickByWeight is the index whose share of the weights' sum holds u in
// [0, 1).
func PickByWeight(weights []int, u float64) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := u * float64(total)
	for i, w := range weights {
		if x < float64(w) {
			return i
		}
		x -= float64(w)
	}
	return len(weights) - 1
}

// HashUnit maps its parts to a number in [0, 1), the same every time.
func HashUnit(parts ...string) float64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return float64(h.Sum64()>>11) / (1 << 53)
}

// Segment is the bandit's segment of a customer at a store: "" when the
// bandit is not segmented.
func (b *Bandit) Segment(c *Customer, storeTags []string) string {
	if b == nil || b.SegmentBy == "" {
		return ""
	}
	var v string
	if b.SegmentBy == "store.tags" {
		for _, s := range b.Segments {
			if slices.Contains(storeTags, s) {
				return s
			}
		}
		return SegmentOther
	}
	if c != nil {
		switch x := c.Attributes[strings.TrimPrefix(b.SegmentBy, "customer.attributes.")].(type) {
		case string:
			v = x
		case bool, float64:
			v = fmt.Sprint(x)
		}
	}
	if slices.Contains(b.Segments, v) {
		return v
	}
	return SegmentOther
}

// MaxValidity is how long the longest-lived of the offer's coupons is
// valid, whichever variant a customer gets.
func (c *Compiled) MaxValidity() time.Duration {
	var d time.Duration
	for i := range c.arms {
		d = max(d, c.arms[i].validFor)
	}
	return d
}

package engine

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// The results of a rule whose offer has variants (issue 21), from the
// funnel's per-variant and per-store counters (variantFields).
//
// Each rate comes with a 95% Wilson score interval, and each difference
// between two variants with Newcombe's hybrid score interval (Newcombe
// 1998, method 10), both sound at small counts and rates near 0, where
// the textbook normal interval is not. Below MinExperimentOffers offers a
// variant is reported with its counts and "not enough data yet".

// MinExperimentOffers is the least offers a variant (or a store) needs
// before its rates are compared.
const MinExperimentOffers = 100

// z95 is the normal quantile of a two-sided 95% interval.
const z95 = 1.959963984540054

// Rate is a share with its 95% interval.
type Rate struct {
	Value float64 `json:"value"`
	Low   float64 `json:"low"`
	High  float64 `json:"high"`
}

// Wilson is x successes of n as a Rate, with the 95% Wilson score
// interval; n = 0 gives 0 in [0, 1].
func Wilson(x, n int) Rate {
	if n <= 0 {
		return Rate{Low: 0, High: 1}
	}
	p, nf := float64(x)/float64(n), float64(n)
	d := 1 + z95*z95/nf
	c := (p + z95*z95/(2*nf)) / d
	h := z95 * math.Sqrt(p*(1-p)/nf+z95*z95/(4*nf*nf)) / d
	return Rate{Value: p, Low: math.Max(0, c-h), High: math.Min(1, c+h)}
}

// Newcombe is the difference a − b of two rates with the 95% hybrid
// score interval built from their Wilson intervals.
func Newcombe(a, b Rate) Rate {
	d := a.Value - b.Value
	return Rate{Value: d,
		Low:  d - math.Sqrt(sq(a.Value-a.Low)+sq(b.High-b.Value)),
		High: d + math.Sqrt(sq(a.High-a.Value)+sq(b.Value-b.Low))}
}

func sq(x float64) float64 { return x * x }

// VariantResult is one variant's funnel over the report's days.
type VariantResult struct {
	ID       string `json:"id"`
	Discount string `json:"discount,omitempty"`
	Issued   int    `json:"issued"`
	Sent     int    `json:"sent"`
	Opened   int    `json:"opened"`
	Redeemed int    `json:"redeemed"`
	// Revisits are the customers offered it who came back to the store
	// within 7 days.
	Revisits int `json:"revisits"`
	// Share is its share of the offers issued.
	Share         float64 `json:"share"`
	OpenRate      Rate    `json:"open_rate"`             // opened / sent
	RedeemRate    Rate    `json:"redeem_rate"`           // redeemed / issued
	RevisitRate   Rate    `json:"revisit_rate"`          // revisits / issued
	EnoughData    bool    `json:"enough_data"`           // at least MinExperimentOffers issued
	VersusBest    *Rate   `json:"versus_best,omitempty"` // its redeem rate minus the best's
	VersusHoldout *Rate   `json:"versus_holdout,omitempty"`
}

// StoreResult is a store's share of the experiment: each variant's
// offers and redemptions there, and the revisits against the holdout
// (the offer's incrementality at that store).
type StoreResult struct {
	StoreID  string         `json:"store_id"`
	Issued   int            `json:"issued"`
	Redeemed int            `json:"redeemed"`
	Variants map[string]int `json:"variants"` // offers issued per variant
	// RevisitRate of the customers offered, HoldoutRevisitRate of those
	// held out, and Uplift the difference, when both have enough.
	RevisitRate        Rate  `json:"revisit_rate"`
	Holdout            int   `json:"holdout"`
	HoldoutRevisitRate Rate  `json:"holdout_revisit_rate"`
	Uplift             *Rate `json:"uplift,omitempty"`
}

// AllocationDay is the share of a day's offers each variant got: a
// bandit's allocation over time.
type AllocationDay struct {
	Date   string             `json:"date"`
	Issued map[string]int     `json:"issued"`
	Share  map[string]float64 `json:"share"`
}

// ExperimentReport is a rule's variants compared.
type ExperimentReport struct {
	Selection string          `json:"selection"`
	Variants  []VariantResult `json:"variants"`
	// Best is the variant with the highest redeem rate among those with
	// enough data ("" until two have).
	Best string `json:"best,omitempty"`
	// Verdict says in a sentence what the data shows.
	Verdict    string          `json:"verdict"`
	Holdout    int             `json:"holdout"`
	Allocation []AllocationDay `json:"allocation"`
	// Stores are those with at least MinExperimentOffers offers, most
	// offers first.
	Stores []StoreResult `json:"stores"`
	// MinOffers is MinExperimentOffers, for readers of the report.
	MinOffers int `json:"min_offers"`
}

// Experiment compares the variants of a rule's offer over the UTC days
// from..to, from its funnel's counters; nil for a rule without variants.
func Experiment(ctx context.Context, rdb redis.UniversalClient, c *rules.Compiled, from, to time.Time) (*ExperimentReport, error) {
	if c.Variants() == 0 {
		return nil, nil
	}
	days, fields, err := funnelDays(ctx, rdb, c.Rule.ID, from, to)
	if err != nil {
		return nil, err
	}
	rep := &ExperimentReport{Selection: c.Rule.Offer.Selection, MinOffers: MinExperimentOffers,
		Allocation: []AllocationDay{}, Stores: []StoreResult{}}
	for i := range c.Variants() {
		v := c.Rule.Offer.Variants[i]
		rep.Variants = append(rep.Variants, VariantResult{ID: v.ID, Discount: v.Discount})
	}
	t := &experimentTally{rep: rep, byID: map[string]*VariantResult{}, stores: map[string]*storeCounts{}}
	for i := range rep.Variants {
		t.byID[rep.Variants[i].ID] = &rep.Variants[i]
	}
	for i, d := range days {
		if day := t.day(d, fields[i]); len(day.Issued) > 0 {
			rep.Allocation = append(rep.Allocation, day)
		}
	}
	best, enough := t.compare()
	rep.Verdict = verdict(rep, best, enough)
	rep.Stores = t.storeResults()
	return rep, nil
}

// funnelDays reads a rule's funnel counters for the UTC days from..to,
// inclusive, in one round trip.
func funnelDays(ctx context.Context, rdb redis.UniversalClient, rule string, from, to time.Time) ([]time.Time, []map[string]string, error) {
	return readDays(ctx, rdb, from, to, func(day string) string { return funnelKey(rule, day) })
}

// readDays reads the hashes of the UTC days from..to, inclusive (key
// names a day's, "yyyymmdd"), in one round trip.
func readDays(ctx context.Context, rdb redis.UniversalClient, from, to time.Time, key func(day string) string) ([]time.Time, []map[string]string, error) {
	var days []time.Time
	for d := from.UTC().Truncate(24 * time.Hour); !d.After(to); d = d.AddDate(0, 0, 1) {
		days = append(days, d)
	}
	cmds := make([]*redis.MapStringStringCmd, len(days))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, d := range days {
			cmds[i] = p.HGetAll(ctx, key(d.Format("20060102")))
		}
		return nil
	}); err != nil {
		return nil, nil, rules.RedisErr("read counters", err)
	}
	fields := make([]map[string]string, len(days))
	for i, c := range cmds {
		fields[i] = c.Val()
	}
	return days, fields, nil
}

// experimentTally adds up a rule's funnel days for its experiment.
type experimentTally struct {
	rep             *ExperimentReport
	byID            map[string]*VariantResult
	stores          map[string]*storeCounts
	returnedHoldout int
}

func (t *experimentTally) store(id string) *storeCounts {
	s := t.stores[id]
	if s == nil {
		s = &storeCounts{variants: map[string]int{}}
		t.stores[id] = s
	}
	return s
}

// day adds one day's counters, answering its allocation.
func (t *experimentTally) day(d time.Time, fields map[string]string) AllocationDay {
	day := AllocationDay{Date: d.Format("2006-01-02"), Issued: map[string]int{}, Share: map[string]float64{}}
	total := 0
	for k, raw := range fields {
		n, _ := strconv.Atoi(raw)
		field, variant, store := splitField(k)
		switch {
		case variant != "" && store == "":
			if v := t.byID[variant]; v != nil { // else a variant taken out of the rule since
				v.add(field, n)
				if field == "issued" {
					day.Issued[variant] += n
					total += n
				}
			}
		case variant != "" && store != "":
			if field == "issued" {
				t.store(store).variants[variant] += n
			}
		case store != "":
			t.store(store).add(field, n)
		case field == "holdout":
			t.rep.Holdout += n
		case field == "returned_holdout":
			t.returnedHoldout += n
		}
	}
	for id, n := range day.Issued {
		day.Share[id] = float64(n) / float64(total)
	}
	return day
}

func (v *VariantResult) add(field string, n int) {
	switch field {
	case "issued":
		v.Issued += n
	case "sent":
		v.Sent += n
	case "opened":
		v.Opened += n
	case "redeemed":
		v.Redeemed += n
	case "returned_treated":
		v.Revisits += n
	}
}

func (s *storeCounts) add(field string, n int) {
	switch field {
	case "issued":
		s.issued += n
	case "redeemed":
		s.redeemed += n
	case "returned_treated":
		s.revisits += n
	case "holdout":
		s.holdout += n
	case "returned_holdout":
		s.holdoutRevisits += n
	}
}

// compare works out each variant's rates and intervals, and each against
// the best and the holdout, answering the best (-1: none) and how many
// variants have enough data.
func (t *experimentTally) compare() (best, enough int) {
	rep := t.rep
	holdoutRate := Wilson(t.returnedHoldout, rep.Holdout)
	allIssued := 0
	for _, v := range rep.Variants {
		allIssued += v.Issued
	}
	best = -1
	for i := range rep.Variants {
		v := &rep.Variants[i]
		if allIssued > 0 {
			v.Share = float64(v.Issued) / float64(allIssued)
		}
		v.OpenRate, v.RedeemRate, v.RevisitRate = Wilson(v.Opened, v.Sent), Wilson(v.Redeemed, v.Issued), Wilson(v.Revisits, v.Issued)
		v.EnoughData = v.Issued >= MinExperimentOffers
		if !v.EnoughData {
			continue
		}
		enough++
		if rep.Holdout >= MinExperimentOffers {
			u := Newcombe(v.RevisitRate, holdoutRate)
			v.VersusHoldout = &u
		}
		if best < 0 || v.RedeemRate.Value > rep.Variants[best].RedeemRate.Value {
			best = i
		}
	}
	if enough < 2 {
		return best, enough
	}
	rep.Best = rep.Variants[best].ID
	for i := range rep.Variants {
		if v := &rep.Variants[i]; v.EnoughData && i != best {
			d := Newcombe(v.RedeemRate, rep.Variants[best].RedeemRate)
			v.VersusBest = &d
		}
	}
	return best, enough
}

// storeResults are the stores with enough offers, most offers first.
func (t *experimentTally) storeResults() []StoreResult {
	out := []StoreResult{}
	for id, s := range t.stores {
		if s.issued < MinExperimentOffers {
			continue
		}
		sr := StoreResult{StoreID: id, Issued: s.issued, Redeemed: s.redeemed, Variants: s.variants,
			RevisitRate: Wilson(s.revisits, s.issued), Holdout: s.holdout, HoldoutRevisitRate: Wilson(s.holdoutRevisits, s.holdout)}
		if s.holdout >= MinExperimentOffers {
			u := Newcombe(sr.RevisitRate, sr.HoldoutRevisitRate)
			sr.Uplift = &u
		}
		out = append(out, sr)
	}
	slices.SortFunc(out, func(a, b StoreResult) int {
		if a.Issued != b.Issued {
			return b.Issued - a.Issued
		}
		return strings.Compare(a.StoreID, b.StoreID)
	})
	return out
}

type storeCounts struct {
	issued, redeemed, revisits, holdout, holdoutRevisits int
	variants                                             map[string]int
}

// splitField reads a funnel field: "<field>", "<field>|v:<variant>",
// "<field>|s:<store>" or "<field>|v:<variant>|s:<store>".
func splitField(k string) (field, variant, store string) {
	field, rest, _ := strings.Cut(k, "|")
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(rest, "|")
		switch {
		case strings.HasPrefix(part, "v:"):
			variant = part[2:]
		case strings.HasPrefix(part, "s:"):
			store = part[2:]
		}
	}
	return field, variant, store
}

// verdict says in a sentence what the report shows.
func verdict(rep *ExperimentReport, best, enough int) string {
	if enough < 2 {
		return fmt.Sprintf("Not enough data yet: each variant needs %d offers before variants are compared.", MinExperimentOffers)
	}
	b := rep.Variants[best]
	var parts []string
	for _, v := range rep.Variants {
		if v.VersusBest == nil {
			continue
		}
		d := v.VersusBest
		pts := func(x float64) string {
			s := strconv.FormatFloat(-x*100, 'f', 1, 64)
			if s == "-0.0" {
				s = "0.0" // a bound a hair from 0, not a difference's sign
			}
			return s
		}
		if d.High < 0 {
			parts = append(parts, fmt.Sprintf("%s redeems %s points more than %s, 95%% interval %s to %s.",
				strings.ToUpper(b.ID), pts(d.Value), strings.ToUpper(v.ID), pts(d.High), pts(d.Low)))
		} else {
			parts = append(parts, fmt.Sprintf("%s and %s redeem alike so far: %s's lead is %s points, 95%% interval %s to %s, which includes no difference.",
				strings.ToUpper(b.ID), strings.ToUpper(v.ID), strings.ToUpper(b.ID), pts(d.Value), pts(d.High), pts(d.Low)))
		}
	}
	return strings.Join(parts, " ")
}

// OffersToSeparate is how many offers each of two variants needs, split
// evenly, for their 95% Wilson intervals not to overlap with the given
// probability (power), when their true redemption rates are p1 and p2:
// the normal approximation, n = ((z·(s1+s2) + z_power·√(s1²+s2²)) / |p2−p1|)²
// with s = √(p(1−p)). For 4% and 8% at 80% it is about 900 a variant.
func OffersToSeparate(p1, p2, power float64) int {
	s1, s2 := math.Sqrt(p1*(1-p1)), math.Sqrt(p2*(1-p2))
	zp := math.Sqrt2 * math.Erfinv(2*power-1)
	root := (z95*(s1+s2) + zp*math.Sqrt(s1*s1+s2*s2)) / math.Abs(p2-p1)
	return int(math.Ceil(root * root))
}

package engine

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"gonum.org/v1/gonum/stat/distuv"

	"github.com/nearcast/nearcast/rules"
)

// Variants (issue 21): a rule's offer may have 2 to 8 variants. A
// customer gets one by weight (a hash of rule and customer: no Redis
// read) or, under a bandit, by Thompson sampling on each variant's
// redemption rate, from posteriors this process keeps a copy of,
// refreshed in the background every BanditRefresh (never a round trip
// of the ping's own). Whichever way, the customer's step keeps the
// variant a customer was first given for the rule (caps "<rule>|v").

// banditKey holds a bandit rule's counts: per segment and variant,
// "<segment>|<variant>|n" offers issued and "<segment>|<variant>|r"
// those redeemed ("" is the segment of an unsegmented bandit), each
// raised with HINCRBY where the funnel counts (issue, redemption), so
// that concurrent redemptions all count. It lives with the rule's other
// counters, {rule:<id>}; no TTL (the rule's lifetime).
func banditKey(rule string) string { return "nc:{rule:" + rule + "}:bandit" }

// BanditRefresh is how often a process reads a bandit rule's counts.
const BanditRefresh = 5 * time.Second

// variantChooser picks each candidate's variant.
type variantChooser struct {
	rdb redis.UniversalClient
	log *slog.Logger
	now func() time.Time

	mu    sync.Mutex
	rules map[string]*banditCounts // by rule id
}

// banditCounts is a copy of a bandit rule's counts.
type banditCounts struct {
	counts  map[string][2]float64 // "<segment>|<variant>" → {issued, redeemed}
	read    time.Time             // when last read (zero: never)
	reading bool
}

func newVariantChooser(rdb redis.UniversalClient, log *slog.Logger, now func() time.Time) *variantChooser {
	return &variantChooser{rdb: rdb, log: log, now: now, rules: map[string]*banditCounts{}}
}

// choose is the variant a customer is given at a store now, before the
// step's stickiness, and the bandit's segment they are learnt in.
func (vc *variantChooser) choose(c *rules.Compiled, customerID string, cust *rules.Customer, store *rules.Store) (variant int, segment string) {
	if c.Variants() == 0 {
		return 0, ""
	}
	b := c.Bandit()
	if b == nil {
		return c.Assign(customerID), ""
	}
	var tags []string
	if store != nil {
		tags = store.Tags
	}
	seg := b.Segment(cust, tags)
	weights := c.Weights()
	arms := make([]Arm, len(weights))
	counts := vc.countsOf(c.Rule.ID)
	for i, w := range weights {
		n := counts[seg+"|"+c.VariantID(i)]
		arms[i] = Arm{Weight: w, Issued: n[0], Redeemed: n[1]}
	}
	return Thompson(arms, b.MinPerVariant, b.FloorPct, rand.Float64), seg
}

// countsOf answers the copy of a rule's counts, starting a read in the
// background when it is older than BanditRefresh (the first pick of a
// rule this process makes goes by weight, as in the warm-up).
func (vc *variantChooser) countsOf(rule string) map[string][2]float64 {
	vc.mu.Lock()
	defer vc.mu.Unlock()
	bc := vc.rules[rule]
	if bc == nil {
		bc = &banditCounts{}
		vc.rules[rule] = bc
	}
	if !bc.reading && vc.now().Sub(bc.read) > BanditRefresh {
		bc.reading = true
		go vc.refresh(rule, bc)
	}
	return bc.counts
}

func (vc *variantChooser) refresh(rule string, bc *banditCounts) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	raw, err := vc.rdb.HGetAll(ctx, banditKey(rule)).Result()
	counts := make(map[string][2]float64, len(raw)/2)
	for k, v := range raw {
		x, _ := strconv.ParseFloat(v, 64)
		i := strings.LastIndexByte(k, '|')
		if i < 0 {
			continue
		}
		c := counts[k[:i]]
		switch k[i+1:] {
		case "n":
			c[0] = x
		case "r":
			c[1] = x
		}
		counts[k[:i]] = c
	}
	vc.mu.Lock()
	defer vc.mu.Unlock()
	bc.reading = false
	if err != nil {
		vc.log.Warn("a bandit's counts not read; the last copy stays", "rule_id", rule, "err", err)
		bc.read = vc.now().Add(-BanditRefresh + time.Second) // try again in a second
		return
	}
	bc.counts, bc.read = counts, vc.now()
}

// Arm is what a bandit knows of one variant.
type Arm struct {
	Weight           int
	Issued, Redeemed float64
}

// Thompson picks a variant: by weight until each has minPer offers (the
// warm-up); then, with probability floorPct% times the variants, one at
// random (each keeps at least floorPct% of the offers, so it goes on
// learning); else the one whose draw from its Beta(1 + redeemed, 1 +
// issued - redeemed) posterior of the redemption rate is highest.
// random gives numbers in [0, 1).
func Thompson(arms []Arm, minPer int, floorPct float64, random func() float64) int {
	warm := false
	for _, a := range arms {
		if a.Issued < float64(minPer) {
			warm = true
		}
	}
	if warm {
		weights := make([]int, len(arms))
		for i, a := range arms {
			weights[i] = a.Weight
		}
		return rules.PickByWeight(weights, random())
	}
	if random() < floorPct/100*float64(len(arms)) {
		return min(int(random()*float64(len(arms))), len(arms)-1)
	}
	src := rand.New(rand.NewPCG(uint64(random()*(1<<53)), uint64(random()*(1<<53))))
	best, bestDraw := 0, -1.0
	for i, a := range arms {
		lost := max(a.Issued-a.Redeemed, 0)
		d := distuv.Beta{Alpha: 1 + a.Redeemed, Beta: 1 + lost, Src: src}.Rand()
		if d > bestDraw {
			best, bestDraw = i, d
		}
	}
	return best
}

// variantFields are the funnel fields a count of field adds to, besides
// field itself: per store ("<field>|s:<store>") and, for a variant, per
// variant ("<field>|v:<variant>") and per variant and store.
func variantFields(field, variant, store string) []string {
	out := make([]string, 0, 3)
	if store != "" {
		out = append(out, field+"|s:"+store)
	}
	if variant != "" {
		out = append(out, field+"|v:"+variant)
		if store != "" {
			out = append(out, field+"|v:"+variant+"|s:"+store)
		}
	}
	return out
}

// KeptVariant is the variant of a rule a customer was first given, which
// they keep ("" if none yet).
func (cs *Customers) KeptVariant(ctx context.Context, customerID, ruleID string) (string, error) {
	v, err := cs.rdb.HGet(ctx, customerKey(customerID, partCaps), ruleID+"|v").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return v, rules.RedisErr("read the customer's variant", err)
}

// Package engine makes the decision for one ping — presence (enter and
// exit), eligibility, frequency caps, arbitration and coupons — and owns
// the outbox that carries each issued coupon to a push Sender. Stores,
// rules and profiles come from package rules; the engine knows nothing of
// HTTP.
package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// Snapshots gives the catalog snapshot in force (rules.Live does).
type Snapshots interface {
	Current() *rules.Snapshot
}

// maxCommit bounds how many eligible offers one ping hands to the atomic
// step, which issues the first one its caps allow.
const maxCommit = 8

// Engine decides what a ping causes.
type Engine struct {
	rdb     redis.UniversalClient
	snaps   Snapshots
	coupons *CodeSigner
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	// funnelTTLs are the funnel keys this process gave their TTL today.
	funnelTTLs onceADay
	// tally is the funnel counts not written yet (funnel.go).
	tally funnelTally
	// batch sends the commands of concurrent pings together.
	batch *batcher
	// watched keeps what was watched near recent fixes (monitor.go).
	watched watchCache
	// variants picks each candidate's variant (variants.go).
	variants *variantChooser
	// behind keeps what runs after answers (behind.go).
	behind behind
	// seen remembers the customers whose pings may speculate (speculate.go).
	seen consentSeen
}

// New returns an engine. now may be nil for the wall clock.
func New(rdb redis.UniversalClient, snaps Snapshots, coupons *CodeSigner, cfg Config, log *slog.Logger, now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	if cfg.RedisLanes < 1 {
		cfg.RedisLanes = DefaultConfig().RedisLanes
	}
	return &Engine{rdb: rdb, snaps: snaps, coupons: coupons, cfg: cfg, log: log, now: now, batch: newBatcher(rdb, cfg.RedisLanes),
		variants: newVariantChooser(rdb, log, now)}
}

func onlyStore(c candidate) string {
	if c.rule.Rule.Offer.RedeemAtIssuingStore {
		return c.store.ID
	}
	return ""
}

// candidate is an offer the customer is eligible for at one store.
type candidate struct {
	rule      *rules.Compiled
	store     *rules.StoreEntry
	distanceM int
	visit     *rules.VisitEnv
	explain   int    // position in Result.Explain
	variant   int    // the offer's variant (rules.Compiled.Variants), 0 without
	segment   string // the bandit's segment of the customer ("" none)
}

// Evaluate decides what a ping causes, and counts what became of every
// rule looked at in the rules' funnels: beside the offer's announcement
// when an offer may be issued, else in the replica's tally (written every
// 100 ms, and by Settled), and not at all for a ping that looked at no
// rule.
func (e *Engine) Evaluate(ctx context.Context, p Ping, opt Options) (*Result, error) {
	res, err := e.evaluate(ctx, p, opt)
	if err != nil {
		return nil, err
	}
	if !opt.DryRun {
		e.cfg.Metrics.decided(res.Explain)
		e.cfg.Metrics.happened(res.Events)
	}
	if !opt.Explain {
		res.Explain = nil
	}
	return res, nil
}

// evaluate is Evaluate with every rule explained.
func (e *Engine) evaluate(ctx context.Context, p Ping, opt Options) (*Result, error) {
	snap := e.snaps.Current()
	if snap == nil {
		return nil, ErrNoSnapshot
	}
	now := e.now()
	p, ts := fixTime(p, now)
	res := &Result{Events: []Event{}, Offers: []IssuedOffer{}}
	if p.AccuracyM > MaxFixAccuracyM {
		// Too unsure to move presence either way; still a call of the
		// customer's, checked and counted as every call is.
		if opt.Explain || opt.DryRun {
			res.Reason = ReasonUnsure
		}
		return res, e.admit(ctx, p.CustomerID, p.DeviceID, p.TokenGen, opt.limitScale)
	}
	var buf [16]geo.Hit
	hits := snap.Index.Near(p.Lat, p.Lng, buf[:0])
	opt.spec = e.speculate(ctx, snap, p, ts, now, hits, opt)
	defer e.unspeculate(ctx, opt.spec, p.CustomerID)
	obs, skipped, err := e.observe(ctx, snap, p, ts, now, hits, opt)
	e.learnConsent(p.CustomerID, skipped, err)
	if err != nil {
		return nil, err
	}
	if skipped != "" {
		// No consent, no profile, or a fix older than the last: nothing
		// changes. Only the admin key's calls (explained, or dry runs) are
		// told which.
		if opt.Explain || opt.DryRun {
			res.Reason = e.whySkipped(ctx, p.CustomerID, skipped)
		}
		return res, nil
	}
	if !opt.DryRun {
		e.cfg.Metrics.trusted(obs.trust, obs.signals)
	}
	defer e.suspected(ctx, p, now, obs, opt, res) // a suspicious fix, once decided (fraud.go)
	if opt.Explain || opt.DryRun {
		res.Trust = &TrustOf{Level: obs.trust, Signals: append([]string{}, obs.signals...)}
	}
	e.pacing(snap, p, hits, obs, res)
	events := firedEvents(snap, p, hits, obs, res)
	if n := tooFastRules(snap, obs.tooFast); n > 0 {
		res.Explain = slices.Grow(res.Explain, n)
	}
	for _, id := range obs.tooFast {
		if pos, ok := snap.StoreByID(id); ok {
			for _, r := range snap.Candidates(pos, rules.OnEnter) {
				res.Explain = append(res.Explain, Explanation{RuleID: r.Rule.ID, StoreID: id, Result: ReasonSpeed})
			}
		}
	}
	if len(events) == 0 || obs.doc == "" {
		e.count(now, res.Explain, opt, obs.returns) // rules not fired for speed
		return res, nil
	}
	cust, err := decodeCustomer([]byte(obs.doc), obs.lastNPS)
	if err != nil {
		return nil, err
	}
	eligible := e.eligible(snap, p, ts, now, cust, obs, events, opt.ended, res)
	arbitrate(eligible, obs.affinity)
	if len(eligible) > 0 {
		if err := e.issue(ctx, now, p, cust, eligible, opt, obs.suspicion(), res, e.returnCmds(ctx, obs.returns)); err != nil {
			return nil, err
		}
	} else {
		e.count(now, res.Explain, opt, obs.returns)
	}
	for i := range res.Explain {
		if res.Explain[i].Result == "" {
			res.Explain[i].Result = ReasonLower
		}
	}
	return res, nil
}

// tooFastRules is how many rules the stores a fix passed too fast to
// enter are told of: one explanation each, in one allocation.
func tooFastRules(snap *rules.Snapshot, stores []string) int {
	n := 0
	for _, id := range stores {
		if pos, ok := snap.StoreByID(id); ok {
			n += len(snap.Candidates(pos, rules.OnEnter))
		}
	}
	return n
}

// fixTime is when the fix was taken, as the step takes it (now when it
// says none or a time to come), with the ping's signals of a fix from
// the future or an old one.
func fixTime(p Ping, now time.Time) (Ping, time.Time) {
	ts := p.TS
	switch {
	case ts.After(now.Add(time.Minute)):
		p.Signals = append(slices.Clip(p.Signals), signalFuture)
	case !ts.IsZero() && now.Sub(ts) > 24*time.Hour:
		p.Signals = append(slices.Clip(p.Signals), signalOld)
	}
	if ts.IsZero() || ts.After(now) {
		ts = now
	}
	return p, ts
}

// whySkipped tells an explained call why its ping changed nothing: a
// customer with no profile is told apart from one without consent here,
// and only here (an app is answered alike for both).
func (e *Engine) whySkipped(ctx context.Context, customerID, skipped string) string {
	if skipped == ReasonConsent {
		if n, err := e.rdb.Exists(ctx, customerKey(customerID, partProfile)).Result(); err == nil && n == 0 {
			return ReasonUnknown
		}
	}
	return skipped
}

// fired is a presence event at a store of the snapshot, which rules with
// that trigger at that store may answer.
type fired struct {
	on     string
	store  int32
	dist   int
	dwellS int
	visitS int // an exit's visit, in seconds
}

// firedEvents adds the events the observe step found to the result, and
// answers those at stores of the snapshot (a store deleted since is
// reported, and fires nothing).
func firedEvents(snap *rules.Snapshot, p Ping, hits []geo.Hit, obs observation, res *Result) []fired {
	distance := func(id string) (int32, int) {
		pos, ok := snap.StoreByID(id)
		if !ok {
			return -1, 0
		}
		for _, h := range hits {
			if h.Fence == pos {
				return pos, int(math.Round(h.DistanceM))
			}
		}
		s := snap.Stores[pos]
		return pos, int(math.Round(geo.DistanceM(p.Lat, p.Lng, *s.Lat, *s.Lng)))
	}
	var events []fired
	for _, id := range obs.entered {
		pos, d := distance(id)
		res.Events = append(res.Events, Event{Type: rules.OnEnter, StoreID: id, DistanceM: d})
		if pos >= 0 {
			events = append(events, fired{rules.OnEnter, pos, d, 0, 0})
		}
	}
	for _, x := range obs.dwelt {
		pos, d := distance(x.id)
		dw := x.dwellS
		res.Events = append(res.Events, Event{Type: rules.OnDwell, StoreID: x.id, DistanceM: d, DwellS: &dw})
		if pos >= 0 {
			events = append(events, fired{rules.OnDwell, pos, d, dw, dw})
		}
	}
	for _, x := range obs.exited {
		pos, d := distance(x.id)
		visit := int(x.visit / time.Second)
		res.Events = append(res.Events, Event{Type: rules.OnExit, StoreID: x.id, DistanceM: d, VisitS: &visit})
		if pos >= 0 {
			events = append(events, fired{rules.OnExit, pos, d, 0, visit})
		}
	}
	return events
}

// eligible checks each rule the events fire, and explains each: the first
// reason a rule fails is the one explained. It answers the rules that
// pass, with their stores.
func (e *Engine) eligible(snap *rules.Snapshot, p Ping, ts, now time.Time, cust *rules.Customer, obs observation, events []fired, ended map[int32]bool, res *Result) []candidate {
	var eligible []candidate
	late := now.Sub(ts) > e.cfg.LateFix
	app := p.appContext()
	for _, ev := range events {
		store := snap.Stores[ev.store]
		visit := visitEnv(obs, store.ID, ts)
		visit.DurationS = ev.visitS
		env := rules.AudienceEnv{Customer: cust, Store: store.Store, Context: pingContext(app, ts, store.Location()), Visit: visit}
		for _, r := range snap.Candidates(ev.store, ev.on) {
			if ev.on == rules.OnDwell && r.Rule.Trigger.DwellS != ev.dwellS {
				continue
			}
			reason := ""
			switch {
			case late:
				reason = ReasonLate
			case ended[ev.store]:
				reason = ReasonVisitEnded
			case !r.Trusts(obs.trust):
				reason = ReasonUntrusted
			case !cust.Consent.Push, r.IsFeedback() && !cust.Consent.Feedback:
				reason = ReasonConsent
			default:
				switch ok, err := r.Match(&env); {
				case err != nil:
					reason = ReasonAudienceError
				case !ok:
					reason = ReasonAudience
				default:
					reason = r.Allowed(ts, store, cust, e.cfg.QuietHours)
				}
			}
			res.Explain = append(res.Explain, Explanation{RuleID: r.Rule.ID, StoreID: store.ID, Result: reason})
			if reason == "" {
				eligible = append(eligible, candidate{rule: r, store: store, distanceM: ev.dist, visit: visit, explain: len(res.Explain) - 1})
			}
		}
	}
	return eligible
}

// arbitrate orders the eligible offers, the one to issue first: one offer
// per ping, the highest priority wins; among equals, the offer this
// customer is likeliest to use (the most redemptions of rules sharing its
// tags), then the nearest store, then the rule id, so the choice is the
// same on every replica.
func arbitrate(eligible []candidate, affinityByTag map[string]int) {
	affinity := func(c candidate) int {
		n := 0
		for _, t := range c.rule.Rule.Tags {
			n += affinityByTag[t]
		}
		return n
	}
	slices.SortStableFunc(eligible, func(a, b candidate) int {
		if a.rule.Rule.Priority != b.rule.Rule.Priority {
			return cmp.Compare(b.rule.Rule.Priority, a.rule.Rule.Priority)
		}
		if fa, fb := affinity(a), affinity(b); fa != fb {
			return cmp.Compare(fb, fa)
		}
		if a.distanceM != b.distanceM {
			return cmp.Compare(a.distanceM, b.distanceM)
		}
		return cmp.Compare(a.rule.Rule.ID, b.rule.Rule.ID)
	})
}

// appContext is the app's context: Context, or ContextJSON decoded (an
// object the API checked is flat; one that does not decode is no
// context).
func (p *Ping) appContext() map[string]any {
	if p.Context != nil || len(p.ContextJSON) == 0 {
		return p.Context
	}
	var m map[string]any
	if json.Unmarshal(p.ContextJSON, &m) != nil {
		return nil
	}
	return m
}

// pingContext is the context an audience sees: the app's own context plus
// the local hour and weekday at the store.
func pingContext(app map[string]any, ts time.Time, loc *time.Location) map[string]any {
	ctx := make(map[string]any, len(app)+2)
	for k, v := range app {
		ctx[k] = v
	}
	lt := ts.In(loc)
	ctx["local_hour"] = lt.Hour()
	ctx["local_weekday"] = strings.ToLower(lt.Weekday().String()[:3])
	return ctx
}

package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/rules"
)

// Issuing an offer touches keys that Redis Cluster may keep on three
// nodes: the customer's own (caps, coupons, visits and the coupon's
// record, under the customer's hash tag), a rule's shared counters (its
// budget and per-store caps, under the rule's tag) and the outbox (under
// its own). No command crosses slots, so an offer is issued in steps, each
// safe should the process die right after it:
//
//  1. Intent: the coupon code joins the outbox's intents with a deadline
//     (on Redis Cluster, for a fix surely inside a store with rules,
//     beside the presence step: speculate.go), and the best candidate's
//     rule reserves a unit of its budget and store cap, when it has them.
//  2. Commit: the customer's atomic step issues the first offer every cap
//     allows (records the coupon, counts it), and only before the deadline.
//  3. Announce, behind the answer (behind.go): the intent moves to the
//     outbox's stream (one atomic step of the outbox, so it happens once),
//     the code's index is written again with the winner's expiry (step 1
//     wrote it, or step 2 beside the step after a speculative intent, so
//     that the answer's coupon can be looked up at once),
//     reservations not used are given back, the funnels are counted.
//
// Should the process die between 2 and 3, the dispatcher finds the intent
// past its deadline and announces it, or drops it when nothing was issued.
// A reservation lost that way is a unit of budget not spent: a cap may
// under-issue by one, never over-issue.

// commitWindow is how long after its intent a commit may still issue.
const commitWindow = 2 * time.Second

// commitScript issues the first offer every customer cap allows, among
// candidates whose rule capacity is reserved (or who need none): it counts
// it in the customer's caps, records the coupon with its push, and marks
// the visit, in one step, so no two pings of a customer can both pass a
// cap. With dry it only checks.
//
// A candidate the script cannot decide on is handed back: {"need", i}
// when candidate i would win (be issued, or held out) but has no push
// rendered yet, or its rule's capacity is not reserved yet; the engine
// renders or reserves and asks again, and nothing was written. Past the
// deadline a candidate that would be issued is not: the answer is
// {"late"} and nothing is written (a holdout, which issues nothing, is
// still recorded).
//
// A customer with no profile (erased while this ping was in flight) or
// without push consent gets nothing: every candidate is no_consent, and
// nothing is written, so that an erasure wins every race.
//
// KEYS: caps, coupons, visits, the coupon's record, profile, the journal
// of events out (events.go).
// ARGV: n, customer_id, device_id, now_ms, retention_ms, dry ("1"), day
// field, week field, oldest day kept, oldest week kept, customer daily
// limit, least gap between two offers (ms), today (UTC), deadline (ms; 0:
// none), coupon code, the fix's suspicion ("" when it is not suspicious;
// else its signals, which the coupon's record keeps as "suspicion" for
// its redemption), then per candidate: rule_id, store_id, expires_ms,
// push JSON ("" when not rendered), per_customer_per_day,
// per_customer_per_week, per_customer_total (0: no cap), rule side (""
// needs no reservation, "r" reserved, "?" not reserved yet, or the reason
// the rule's capacity refused, or render_error), holdout ("1": the customer is in the
// rule's holdout group), the rule's tags (comma-separated, kept for
// affinity at redemption), the only store the coupon is good at ("" for
// any); after the candidates, the event types journaled (Events.Wanted).
// Returns one result per candidate looked at: "sent", "holdout" (it would
// have been sent; the customer gets nothing), or the cap's reason; the
// candidates after the last one looked at are lower_priority.
var commitScript = script("commit", "journal")

// reserveScript takes one unit of a rule's budget and of its cap at a
// store today, when both have room; with dry it only checks.
// KEYS: store-day counter, budget counter. ARGV: per-store-per-day cap,
// total cap (0: none), dry ("1"). Returns "r", "store_cap" or "budget".
var reserveScript = script("reserve")

// hasRuleCaps tells whether a rule's offers spend shared capacity.
func hasRuleCaps(r *rules.Compiled) bool {
	return r.Rule.Caps.PerStorePerDay > 0 || r.Rule.Caps.Total > 0
}

// issue hands the eligible offers, best first, to the customer's atomic
// step, which issues the first its caps allow, and counts the funnels of
// the rules looked at (and extra, the presence step's counts). An offer
// is issued in three steps, each safe should the process stop after it
// (docs/architecture.md, "The decision and the atomic step"): the intent
// and the best candidate's capacity; the customer's step, asked again
// while it needs a rendering or a reservation; the announcement, behind
// the answer.
func (e *Engine) issue(ctx context.Context, now time.Time, p Ping, cust *rules.Customer, eligible []candidate, opt Options, suspicion string, res *Result, extra []redis.Cmder) error {
	x := e.newIssuance(ctx, now, p, cust, eligible, opt, suspicion)
	if err := x.render(0); err != nil {
		return err
	}
	withCommit, intentCmd, err := x.begin()
	if err != nil {
		return err
	}
	results, err := x.decide(withCommit)
	if err != nil {
		return err
	}
	if err := x.ensureIntent(intentCmd, results); err != nil {
		return err
	}
	winner := x.explain(results, res)
	if opt.DryRun {
		return nil
	}
	counted := make([]Explanation, len(res.Explain))
	for i, c := range res.Explain {
		if c.Result == "" {
			c.Result = ReasonLower
		}
		counted[i] = c
	}
	e.runBehind(ctx, "an offer decided, its announcement or counts not all written", func(ctx context.Context) error {
		x.ctx = ctx
		return x.announce(winner, results, counted, extra)
	})
	return nil
}

// issuance is one ping's issue of an offer: the candidates, best first,
// the arguments of the customer's step, and what each step learns.
type issuance struct {
	e        *Engine
	ctx      context.Context
	now      time.Time
	p        Ping
	cust     *rules.Customer
	opt      Options
	eligible []candidate
	code     string // the coupon's code, whichever candidate wins
	intent   string
	deadline int64 // of the commit, unix ms of the wall clock (0 in a dry run)
	keys     []string
	args     []any         // the customer's step's: shared, then each candidate's
	at       []int         // where each candidate's arguments begin
	offers   []IssuedOffer // each candidate's, should it win
	ruleKeys [][]string    // each candidate's rule capacity keys (nil: none)
	rendered []bool
	// unrendered is each candidate's side before a rendering that failed
	// set it to render_error, for another variant to render.
	unrendered []any
	reserved   []bool // a unit of the rule's capacity is held for the candidate
	onRecord   []bool // the units on record with the intent
	sending    []bool // the units the record on its way holds
	// index writes the code's index with the intent, or with the
	// customer's step after a speculative intent (nil in a dry run).
	index *scripted
}

// Each candidate's arguments, from at[i]: rule, store, expiry, push,
// caps (three), side, holdout, tags, only store, variant id, the
// bandit's segment, the question (questionArg; "" for a coupon). The side says what the
// rule's capacity answered: "" none needed, "?" not asked yet, "r"
// reserved, or the reason it refused (as render_error does).
const (
	argExpires = 2
	argPush    = 3
	argSide    = 7
	argVariant = 11
)

func (e *Engine) newIssuance(ctx context.Context, now time.Time, p Ping, cust *rules.Customer, eligible []candidate, opt Options, suspicion string) *issuance {
	if len(eligible) > maxCommit {
		eligible = eligible[:maxCommit]
	}
	x := &issuance{e: e, ctx: ctx, now: now, p: p, cust: cust, opt: opt, eligible: eligible,
		offers: make([]IssuedOffer, len(eligible)), at: make([]int, len(eligible)), ruleKeys: make([][]string, len(eligible)),
		rendered: make([]bool, len(eligible)), reserved: make([]bool, len(eligible)), unrendered: make([]any, len(eligible)),
		onRecord: make([]bool, len(eligible)), sending: make([]bool, len(eligible))}
	if s := opt.spec; s != nil {
		// The intent written with the presence step (speculate.go),
		// this issuance's to settle from beginWritten on.
		x.code, x.intent, x.deadline = s.code, s.intent, s.deadline
	} else {
		x.code = e.coupons.NewCode()
		x.intent = intentOf(x.code, p.CustomerID)
		if !opt.DryRun {
			x.deadline = time.Now().Add(commitWindow).UnixMilli() // the wall clock, as Redis's
		}
	}
	local := now.In(cust.Location())
	day := local.Format("20060102")
	year, week := local.ISOWeek()
	oldestDay := local.AddDate(0, 0, -8).Format("20060102")
	oy, ow := local.AddDate(0, 0, -15).ISOWeek()
	x.keys = []string{customerKey(p.CustomerID, partCaps), customerKey(p.CustomerID, partCoupons),
		customerKey(p.CustomerID, partVisits), couponRecordKey(p.CustomerID, x.code), customerKey(p.CustomerID, partProfile),
		customerKey(p.CustomerID, partEvents)}
	x.args = []any{len(eligible), p.CustomerID, p.DeviceID, now.UnixMilli(), e.cfg.CouponRetention.Milliseconds(), luaBool(opt.DryRun),
		"d" + day, fmt.Sprintf("w%04d%02d", year, week), "d" + oldestDay, fmt.Sprintf("w%04d%02d", oy, ow), e.cfg.MaxOffersPerDay,
		e.cfg.MinOfferGap.Milliseconds(), now.UTC().Format("20060102"), x.deadline, x.code, suspicion}
	for i, c := range eligible {
		eligible[i].variant, eligible[i].segment = e.variants.choose(c.rule, p.CustomerID, cust, c.store.Store)
		c = eligible[i]
		expires := now.Add(c.rule.ValidFor(c.variant)).UTC().Truncate(time.Second)
		x.offers[i] = IssuedOffer{CouponCode: x.code, RuleID: c.rule.Rule.ID, StoreID: c.store.ID, ExpiresAt: expires, Variant: c.rule.VariantID(c.variant)}
		if c.rule.IsFeedback() {
			x.offers[i].Kind = rules.KindFeedback
		}
		side := ""
		if hasRuleCaps(c.rule) {
			side = "?"
			storeDay := now.In(c.store.Location()).Format("20060102")
			x.ruleKeys[i] = []string{storeDayKey(c.rule.Rule.ID, c.store.ID, storeDay), budgetKey(c.rule.Rule.ID)}
		}
		caps := c.rule.Rule.Caps
		x.at[i] = len(x.args)
		x.args = append(x.args, c.rule.Rule.ID, c.store.ID, expires.UnixMilli(), "",
			caps.PerCustomerPerDay, caps.PerCustomerPerWeek, caps.PerCustomerTotal, side,
			luaBool(c.rule.InHoldout(p.CustomerID)), strings.Join(c.rule.Rule.Tags, ","), onlyStore(c), c.rule.VariantID(c.variant), c.segment, questionArg(c.rule))
	}
	x.args = append(x.args, e.cfg.Events.Wanted(), e.cfg.FeedbackStoreGap.Milliseconds(), e.cfg.FeedbackPerMonth, "m"+local.Format("200601"))
	return x
}

// side is what a candidate's rule capacity answered, as the step reads it.
func (x *issuance) side(i int) any { return x.args[x.at[i]+argSide] }

// render writes a candidate's texts and push; only those that may win
// are rendered. A candidate whose texts fail to render is handed to the
// step as refused by render_error (as a rule's capacity refuses),
// reserves nothing, and is never sent.
func (x *issuance) render(i int) error {
	if x.rendered[i] {
		return nil
	}
	c, o := x.eligible[i], &x.offers[i]
	msg, err := c.rule.RenderMessage(rules.OfferData{Variant: c.variant, Customer: x.cust, Store: c.store.Store, DistanceM: c.distanceM, CouponCode: o.CouponCode, ExpiresAt: o.ExpiresAt, Visit: c.visit})
	if err != nil {
		x.unrendered[i] = x.args[x.at[i]+argSide]
		x.args[x.at[i]+argSide], x.rendered[i] = ReasonRenderError, true
		return nil
	}
	o.Title, o.Body = msg.Title, msg.Body
	pushExpires := x.now.Add(x.e.cfg.PushTTL)
	if o.ExpiresAt.Before(pushExpires) {
		pushExpires = o.ExpiresAt
	}
	data := map[string]string{
		"coupon_code": o.CouponCode, "rule_id": o.RuleID, "store_id": o.StoreID,
		"expires_at": o.ExpiresAt.Format(time.RFC3339), "title": msg.Title, "body": msg.Body,
	}
	if o.Variant != "" {
		data["variant"] = o.Variant
	}
	if q := c.rule.Rule.Offer.Question; c.rule.IsFeedback() && q != nil {
		// A question, not a coupon: the app shows the scale and, when
		// asked for, a comment box, and answers at POST /v1/feedback/{id}.
		delete(data, "coupon_code")
		data["kind"], data["feedback_id"], data["scale"] = rules.KindFeedback, o.CouponCode, q.Scale
		data["comment"] = strconv.FormatBool(q.Comment)
	}
	payload, err := json.Marshal(Push{
		ID: o.CouponCode, CustomerID: x.p.CustomerID, DeviceID: x.p.DeviceID,
		Title: msg.Title, Body: msg.Body,
		Data:        data,
		CollapseKey: o.RuleID, ExpiresAt: pushExpires, CreatedAt: x.now,
	})
	x.args[x.at[i]+argPush], x.rendered[i] = string(payload), true
	return err
}

// reserveCmd asks a candidate's rule for a unit of capacity (a check
// only, in a dry run); reserveDone reads its answer.
func (x *issuance) reserveCmd(i int) *scripted {
	c := x.eligible[i].rule.Rule.Caps
	return newScripted(x.ctx, reserveScript, x.ruleKeys[i], c.PerStorePerDay, c.Total, luaBool(x.opt.DryRun))
}

func (x *issuance) reserveDone(i int, cmd *scripted) error {
	side, err := cmd.result(x.ctx, x.e.rdb).Text()
	if err != nil {
		return rules.RedisErr("reserve a rule's capacity", err)
	}
	x.args[x.at[i]+argSide] = side
	x.reserved[i] = side == "r" && !x.opt.DryRun
	return nil
}

// unit is the unit of capacity candidate i's rule holds for it.
func (x *issuance) unit(i int) reservation {
	return reservation{x.eligible[i].rule.Rule.ID, x.eligible[i].store.ID, x.ruleKeys[i][0], x.ruleKeys[i][1]}
}

// reservations lists the units taken, but for candidate except's.
func (x *issuance) reservations(except int) []reservation {
	var out []reservation
	for i, r := range x.reserved {
		if r && i != except {
			out = append(out, x.unit(i))
		}
	}
	return out
}

// recordCmd records the units taken with the intent, so that whoever
// settles the intent gives back those no coupon used; it records nothing
// once the intent is settled (an erasure dropped it), and recorded says
// what became of it.
func (x *issuance) recordCmd() *scripted {
	rs := x.reservations(-1)
	if x.opt.DryRun || len(rs) == 0 {
		return nil
	}
	lines := make([]string, len(rs))
	for i, r := range rs {
		lines[i] = r.String()
	}
	copy(x.sending, x.reserved)
	return newScripted(x.ctx, recordScript, []string{keyIntents, keyReserved}, x.intent, strings.Join(lines, "\n"))
}

// recorded reads the record's answer. Refused, the intent was settled
// meanwhile (an erasure dropped it, or a dispatcher past its deadline):
// whoever did gave back the units then on record, and the units reserved
// since are given back here, for no one else will. (A record that failed
// leaves its units off it: lost, never over-spent.)
func (x *issuance) recorded(rec *scripted) {
	if rec == nil {
		return
	}
	n, err := rec.result(x.ctx, x.e.rdb).Int()
	switch {
	case err != nil:
	case n == 1:
		copy(x.onRecord, x.sending)
	default:
		var rs []reservation
		for i, r := range x.reserved {
			if r && !x.onRecord[i] {
				rs = append(rs, x.unit(i))
			}
			x.reserved[i] = false // given back, here or by whoever settled the intent
		}
		x.e.runScripts(x.ctx, giveBackCmds(x.ctx, rs))
	}
}

// abandon settles the intent of an offer that was not issued and gives
// back what it reserved.
func (x *issuance) abandon(cause error) error {
	// The index first: should taking it back fail, the intent stays, and
	// the dispatcher that drops it past its deadline takes it back.
	if !x.opt.DryRun && x.dropIndex() {
		x.e.settle(x.ctx, x.intent, x.code, x.p.CustomerID, x.reservations(-1))
	}
	return cause
}

// indexTTL is how long the code's index is kept should any candidate
// win: its coupon's life and retention, the longest any candidate's
// variants give.
func (x *issuance) indexTTL() time.Duration {
	var ttl time.Duration
	for _, c := range x.eligible {
		ttl = max(ttl, c.rule.MaxValidity())
	}
	return ttl + x.e.cfg.CouponRetention
}

// begin is step 1: the intent, and the best candidate's capacity. On one
// Redis a pipeline runs in order on one connection: with no capacity to
// reserve first, the intent goes in the commit's round trip, just before
// it (a round trip fewer for most offers), as withCommit.
func (x *issuance) begin() (withCommit []redis.Cmder, intentCmd *redis.IntCmd, err error) {
	if x.opt.spec != nil {
		return x.beginWritten()
	}
	var first []redis.Cmder
	if !x.opt.DryRun {
		intentCmd = redis.NewIntCmd(x.ctx, "zadd", keyIntents, x.deadline, x.intent)
		// The code's index goes with the intent, so that the coupon the
		// answer gives can be looked up at once, though the announcement
		// comes after the answer; it writes the index again with the
		// winner's expiry, or takes it back.
		x.index = indexCodeCmd(x.ctx, x.code, x.p.CustomerID, x.indexTTL())
		first = append(first, intentCmd, x.index.cmd)
	}
	var reserve0 *scripted
	if x.ruleKeys[0] != nil && x.side(0) == "?" {
		reserve0 = x.reserveCmd(0)
		first = append(first, reserve0.cmd)
	}
	if intentCmd != nil && reserve0 == nil && x.e.orderedPipelines() {
		return first, intentCmd, nil
	}
	if len(first) == 0 {
		return nil, intentCmd, nil
	}
	x.e.batch.do(x.ctx, first...)
	if reserve0 != nil {
		if err := x.reserveDone(0, reserve0); err != nil {
			return nil, nil, err // a unit may be held: lost, never over-spent
		}
	}
	if intentCmd != nil && intentCmd.Err() != nil {
		// No intent, so nobody else settles: give back at once, and take
		// back the index, which names the customer.
		x.e.runScripts(x.ctx, giveBackCmds(x.ctx, x.reservations(-1)))
		x.dropIndex()
		return nil, nil, rules.RedisErr("offer intent", intentCmd.Err())
	}
	return nil, intentCmd, nil
}

// beginWritten is begin for an intent the presence step wrote
// (speculate.go): a failed one stops the offer as a failed intent does;
// the code's index goes beside the customer's step (to its own node at
// once: the answer comes after both); the best candidate's capacity,
// when it has to be reserved first, in a round trip of its own.
func (x *issuance) beginWritten() (withCommit []redis.Cmder, intentCmd *redis.IntCmd, err error) {
	x.opt.spec.used = true
	intentCmd = x.opt.spec.zadd
	if err := intentCmd.Err(); err != nil {
		return nil, nil, rules.RedisErr("offer intent", err)
	}
	x.index = indexCodeCmd(x.ctx, x.code, x.p.CustomerID, x.indexTTL())
	if x.ruleKeys[0] != nil && x.side(0) == "?" {
		reserve0 := x.reserveCmd(0)
		x.e.batch.do(x.ctx, reserve0.cmd)
		if err := x.reserveDone(0, reserve0); err != nil {
			return nil, nil, err // a unit may be held: lost, never over-spent
		}
	}
	return []redis.Cmder{x.index.cmd}, intentCmd, nil
}

// dropIndex takes back the code's index begin (or the customer's step)
// wrote, for a code not
// issued: it names the customer, and no erasure would find it. It
// answers whether the index is gone.
func (x *issuance) dropIndex() bool {
	if x.index == nil {
		return true
	}
	del := redis.NewIntCmd(x.ctx, "del", codeIndexKey(x.code))
	x.e.batch.do(x.ctx, del)
	if err := del.Err(); err != nil {
		x.e.log.Warn("an offer not issued: its code's index not taken back", "err", err)
		return false
	}
	return true
}

// decide is step 2: the customer's atomic step, asked again while it
// needs a rendering or a reservation. The units reserved go on record
// with the intent before (or with) each try. It answers each candidate's
// result.
func (x *issuance) decide(withCommit []redis.Cmder) ([]string, error) {
	for attempt := 0; ; attempt++ {
		if attempt > 2*len(x.eligible)+1 {
			return nil, x.abandon(errors.New("issue offer: the atomic step asked for what it had")) // a bug
		}
		before := withCommit
		rec := x.recordCmd()
		if rec != nil {
			before = append(before, rec.cmd)
		}
		out, short, err := x.e.commit(x.ctx, x.keys, x.args, x.opt.DryRun, before...)
		withCommit = nil
		x.recorded(rec)
		switch {
		case err != nil:
			// The intent stays: should the step have issued, the
			// dispatcher announces it past the deadline; either way it
			// gives back what the intent recorded and no coupon used.
			return nil, rules.RedisErr("issue offer", err)
		case len(out) == 1 && out[0] == "late":
			return nil, x.abandon(fmt.Errorf("%w: issue offer: the step came after its deadline", ErrUnavailable))
		case len(out) == 2 && out[0] == "need":
			if err := x.provide(out[1]); err != nil {
				return nil, x.abandon(err)
			}
		case len(out) == 3 && out[0] == "variant":
			if err := x.keepVariant(out[1], out[2]); err != nil {
				return nil, x.abandon(err)
			}
		case short && slices.Contains(out, ResultSent):
			// Issued on a master that no replica had heard from in time: a
			// failover now could lose it. The answer does not give it; a
			// dispatcher announces it past the deadline if it survives.
			return nil, fmt.Errorf("%w: issue offer: the step reached fewer replicas than NEARCAST_REDIS_WAIT_REPLICAS in time", ErrUnavailable)
		default:
			return out, nil
		}
	}
}

// questionArg is what the customer's step records of a question: its
// scale, and ":c" when a comment may go with the answer; "" for a coupon.
func questionArg(r *rules.Compiled) string {
	if q := r.Rule.Offer.Question; r.IsFeedback() && q != nil && q.Comment {
		return q.Scale + ":c"
	}
	return questionScale(r)
}

// questionScale is a feedback rule's scale, "" for a coupon's.
func questionScale(r *rules.Compiled) string {
	if q := r.Rule.Offer.Question; r.IsFeedback() && q != nil {
		return q.Scale
	}
	return ""
}

// keepVariant gives candidate which (1-based) the variant the customer
// was first given for its rule, as the step asks, to be rendered anew.
// A variant the rule no longer has is replaced by the step's answer
// too: the customer keeps what they had, and counts under it.
func (x *issuance) keepVariant(which, id string) error {
	i, _ := strconv.Atoi(which)
	i--
	if i < 0 || i >= len(x.eligible) {
		return fmt.Errorf("issue offer: the atomic step asked for candidate %s", which) // a bug
	}
	c := &x.eligible[i]
	v := c.rule.VariantIndex(id)
	if v < 0 {
		// The variant was taken out of the rule since: the customer gets
		// the one chosen now, written over the old ("!" tells the step).
		x.args[x.at[i]+argVariant] = "!" + c.rule.VariantID(c.variant)
		return nil
	}
	c.variant = v
	o := &x.offers[i]
	o.Variant = id
	o.ExpiresAt = x.now.Add(c.rule.ValidFor(v)).UTC().Truncate(time.Second)
	x.args[x.at[i]+argExpires] = o.ExpiresAt.UnixMilli()
	x.args[x.at[i]+argVariant] = id
	x.args[x.at[i]+argPush], x.rendered[i] = "", false
	if x.args[x.at[i]+argSide] == ReasonRenderError {
		x.args[x.at[i]+argSide] = x.unrendered[i] // what the rule's capacity said, before the failed rendering
	}
	return x.render(i)
}

// provide renders the candidate the step needs (1-based), and reserves its
// rule's capacity when it has not been asked.
func (x *issuance) provide(which string) error {
	i, _ := strconv.Atoi(which)
	i--
	if i < 0 || i >= len(x.eligible) {
		return fmt.Errorf("issue offer: the atomic step asked for candidate %s", which) // a bug
	}
	if err := x.render(i); err != nil {
		return err
	}
	if x.side(i) == "?" {
		cmd := x.reserveCmd(i)
		x.e.batch.do(x.ctx, cmd.cmd)
		return x.reserveDone(i, cmd)
	}
	return nil
}

// ensureIntent writes the intent again when the one sent with the commit
// failed, which on one Redis fails the commit too; should the commit have
// issued anyway, the intent goes in before the offer is announced.
func (x *issuance) ensureIntent(intentCmd *redis.IntCmd, results []string) error {
	if x.index != nil {
		// Run again where Redis did not know the script yet; a failure
		// is mended behind the answer, which writes the index again.
		_ = x.index.result(x.ctx, x.e.rdb)
	}
	if intentCmd == nil || intentCmd.Err() == nil {
		return nil
	}
	if err := x.e.rdb.ZAdd(x.ctx, keyIntents, redis.Z{Score: float64(x.deadline), Member: x.intent}).Err(); err != nil {
		if slices.Contains(results, ResultSent) {
			x.e.log.Error("an offer issued without its intent: its push is not announced", "push", x.code, "err", err)
		} else {
			x.dropIndex()
		}
		return rules.RedisErr("offer intent", err)
	}
	return nil
}

// explain writes each candidate's result into the answer, with the offer
// issued; it answers the winner (sent or held out), or -1.
func (x *issuance) explain(results []string, res *Result) int {
	winner := -1
	for i, r := range results {
		res.Explain[x.eligible[i].explain].Result = r
		if r == ResultSent || r == ReasonHoldout {
			winner = i
		}
		if r == ResultSent {
			res.Explain[x.eligible[i].explain].Variant = x.offers[i].Variant
		}
		if r == ResultSent {
			res.Offers = append(res.Offers, x.offers[i])
		}
	}
	return winner
}

// announce is step 3, behind the answer: settle the intent (announce the
// offer, or drop the intent), index the code (or take back the index
// written before, for a code not issued), count; then give back the units no
// coupon used. A failure leaves the offer to a dispatcher, which
// announces it past its deadline and writes its index first.
func (x *issuance) announce(winner int, results []string, counted []Explanation, extra []redis.Cmder) error {
	ctx, e := x.ctx, x.e
	issued := winner >= 0 && results[winner] == ResultSent
	if issued && !x.opt.DryRun {
		e.cfg.Events.Kick(x.p.CustomerID) // its offer.issued, journaled by the commit
	}
	if !issued && !x.dropIndex() {
		// The intent stays for the dispatcher, which takes the index
		// back when it drops it.
		return errors.New("announce: the index of a code not issued not taken back")
	}
	settle := settleCmd(ctx, x.intent, issued, x.code, x.p.CustomerID)
	cmds := append(extra, settle.cmd)
	var index *scripted
	if issued {
		ttl := x.offers[winner].ExpiresAt.Add(e.cfg.CouponRetention).Sub(x.now)
		// Unless the customer was erased since the commit and the erasure
		// marked the code (settleInFlight); a retried write is the same.
		index = indexCodeCmd(ctx, x.code, x.p.CustomerID, max(ttl, time.Second))
		cmds = append(cmds, index.cmd)
	}
	cmds = append(cmds, x.winnerCmds(winner, results)...)
	cmds = append(cmds, e.funnelCmds(ctx, x.now.UTC().Format("20060102"), counted)...)
	e.batch.do(ctx, cmds...)
	_, settleErr := settle.result(ctx, e.rdb).Result()
	var indexed int
	var indexErr error
	if issued {
		indexed, indexErr = index.result(ctx, e.rdb).Int()
	}
	if settleErr == nil {
		keep := -1
		if issued {
			keep = winner
		}
		e.runScripts(ctx, giveBackCmds(ctx, x.reservations(keep)))
	}
	var failed error
	for _, c := range cmds {
		if err := c.Err(); err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") && !errors.Is(err, redis.Nil) {
			failed = err
		}
	}
	if issued && indexErr == nil && indexed == 0 {
		// The code is marked erased: the customer was erased since the
		// commit, and their erasure dropped the intent (settleInFlight),
		// so nothing was announced.
		return nil
	}
	if issued && errors.Is(settleErr, redis.Nil) {
		return nil // settled by another: an erasure, or a dispatcher past the deadline
	}
	if issued && (settleErr != nil || indexErr != nil) {
		// A dispatcher announces it past the deadline (when the
		// announcement failed) and writes the code's index before it
		// sends the push (when the index failed).
		return rules.RedisErr("announce an offer", cmp.Or(settleErr, indexErr))
	}
	if failed != nil {
		// A funnel counter may be off by one.
		e.log.Warn("offer decided, its counters not all written", "err", failed)
	}
	return nil
}

// winnerCmds count the winner beside its funnel: a holdout in the rule's
// holdout count; a question asked in its store's scores; an offer of a
// rule with variants in the bandit's counts (kept for every rule with
// variants), with the rule's counters.
func (x *issuance) winnerCmds(winner int, results []string) []redis.Cmder {
	if winner < 0 {
		return nil
	}
	ctx, c := x.ctx, x.eligible[winner]
	switch {
	case results[winner] == ReasonHoldout:
		return []redis.Cmder{redis.NewIntCmd(ctx, "incr", holdoutKey(c.rule.Rule.ID))}
	case results[winner] != ResultSent:
		return nil
	case c.rule.IsFeedback():
		return askedCmds(ctx, c.store.ID, questionScale(c.rule), x.now)
	case x.offers[winner].Variant != "":
		return []redis.Cmder{redis.NewIntCmd(ctx, "hincrby", banditKey(c.rule.Rule.ID), c.segment+"|"+x.offers[winner].Variant+"|n", 1)}
	}
	return nil
}

// settle drops the intent of an offer the engine gave up on, and gives
// back the units reserved for it when the engine settled it (a dispatcher
// that did gave back those on record).
func (e *Engine) settle(ctx context.Context, intent, code, customerID string, rs []reservation) {
	x := settleCmd(ctx, intent, false, code, customerID)
	e.batch.do(ctx, x.cmd)
	if _, err := x.result(ctx, e.rdb).Result(); err == nil {
		e.runScripts(ctx, giveBackCmds(ctx, rs))
	}
}

// runScripts sends scripts together and runs any Redis did not know.
func (e *Engine) runScripts(ctx context.Context, xs []*scripted) {
	if len(xs) == 0 {
		return
	}
	cmds := make([]redis.Cmder, len(xs))
	for i, x := range xs {
		cmds[i] = x.cmd
	}
	e.batch.do(ctx, cmds...)
	for _, x := range xs {
		if err := x.result(ctx, e.rdb).Err(); err != nil {
			e.log.Warn("a rule's reserved unit not given back", "err", err)
		}
	}
}

// commit runs the customer's atomic step. With WaitReplicas, a step that
// writes goes to the master of the customer's keys in one pipeline with
// WAIT, on one connection, so that it is answered only once a replica has
// it: a failover right after cannot lose a coupon an answer gave, and
// issue it again.
func (e *Engine) commit(ctx context.Context, keys []string, args []any, dry bool, before ...redis.Cmder) (out []string, short bool, err error) {
	x := newScripted(ctx, commitScript, keys, args...)
	node := e.masterOf(ctx, keys[0])
	before = slices.DeleteFunc(before, func(c redis.Cmder) bool { return c == nil })
	if e.cfg.WaitReplicas <= 0 || dry || node == nil {
		e.batch.do(ctx, append(before, x.cmd)...)
		out, err = x.result(ctx, e.rdb).StringSlice()
		return out, false, err
	}
	if len(before) > 0 {
		// Beside the step and its WAIT, at once, as a cluster's pipeline
		// sends them without one (a failure of the record only leaves the
		// units off it; the code's index is written again behind the
		// answer); read when the step is done.
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			e.batch.do(ctx, before...)
		}()
		defer func() { <-sent }()
	}
	for attempt := 0; ; attempt++ {
		x := newScripted(ctx, commitScript, keys, args...)
		pipe := node.Pipeline()
		_ = pipe.Process(ctx, x.cmd)
		wait := pipe.Do(ctx, "wait", e.cfg.WaitReplicas, max(e.cfg.WaitTimeout, time.Millisecond).Milliseconds())
		_, _ = pipe.Exec(ctx)
		if redis.HasErrorPrefix(x.cmd.Err(), "NOSCRIPT") && attempt == 0 {
			if err := commitScript.Load(ctx, node).Err(); err != nil {
				return nil, false, err
			}
			continue
		}
		out, err := x.cmd.StringSlice()
		if err != nil {
			// Sent past the cluster client (MOVED is not followed here):
			// have it read the slot map again for the next try.
			if cc, ok := e.rdb.(*redis.ClusterClient); ok {
				cc.ReloadState(ctx)
			}
			return nil, false, err
		}
		if n, err := wait.Int(); err != nil || n < e.cfg.WaitReplicas {
			e.cfg.Metrics.waitedShort()
			e.log.Warn("an offer's step reached fewer replicas than asked in time", "replicas", n, "want", e.cfg.WaitReplicas, "err", err)
			return out, true, nil
		}
		return out, false, nil
	}
}

// orderedPipelines tells whether a pipeline's commands run in order on one
// Redis, one after another: a single server, and no WAIT path for the
// customer's step.
func (e *Engine) orderedPipelines() bool {
	_, single := e.rdb.(*redis.Client)
	return single && e.cfg.WaitReplicas <= 0
}

// masterOf is the client of the one Redis that holds key: the client
// itself, or the cluster's master for the key's slot; nil when neither.
func (e *Engine) masterOf(ctx context.Context, key string) *redis.Client {
	switch c := e.rdb.(type) {
	case *redis.Client:
		return c
	case *redis.ClusterClient:
		m, err := c.MasterForKey(ctx, key)
		if err != nil {
			return nil
		}
		return m
	}
	return nil
}

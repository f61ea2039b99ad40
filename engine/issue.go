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
//  1. Intent: the coupon code joins the outbox's intents with a deadline,
//     and the best candidate's rule reserves a unit of its budget and
//     store cap, when it has them.
//  2. Commit: the customer's atomic step issues the first offer every cap
//     allows (records the coupon, counts it), and only before the deadline.
//  3. Announce: the intent moves to the outbox's stream (one atomic step
//     of the outbox, so it happens once), the code's index is written,
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
// when candidate i would be issued but has no push rendered yet, or its
// rule's capacity is not reserved yet; the engine renders or reserves and
// asks again, and nothing was written. Past the deadline it answers
// {"late"} and writes nothing.
//
// A customer with no profile (erased while this ping was in flight) or
// without push consent gets nothing: every candidate is no_consent, and
// nothing is written, so that an erasure wins every race.
//
// KEYS: caps, coupons, visits, the coupon's record, profile.
// ARGV: n, customer_id, device_id, now_ms, retention_ms, dry ("1"), day
// field, week field, oldest day kept, oldest week kept, customer daily
// limit, least gap between two offers (ms), today (UTC), deadline (ms; 0:
// none), coupon code, then per candidate: rule_id, store_id, expires_ms,
// push JSON ("" when not rendered), per_customer_per_day,
// per_customer_per_week, per_customer_total (0: no cap), rule side (""
// needs no reservation, "r" reserved, "?" not reserved yet, or the reason
// the rule's capacity refused, or render_error), holdout ("1": the customer is in the
// rule's holdout group), the rule's tags (comma-separated, kept for
// affinity at redemption), the only store the coupon is good at ("" for
// any).
// Returns one result per candidate looked at: "sent", "holdout" (it would
// have been sent; the customer gets nothing), or the cap's reason; the
// candidates after the last one looked at are lower_priority.
var commitScript = redis.NewScript(`
local n = tonumber(ARGV[1])
local dry = ARGV[6] == '1'
local dayF, weekF = ARGV[7], ARGV[8]
local limit = tonumber(ARGV[11])
local today = ARGV[13]
local function used(f) return tonumber(redis.call('HGET', KEYS[1], f) or '0') end
local function over(count, cap) return cap > 0 and count >= cap end
local function mark(store, rule, group)
  redis.call('HSET', KEYS[3], 'offer:' .. store, ARGV[4] .. '|' .. rule .. '|' .. group .. '|' .. today)
end
local function late()
  local deadline = tonumber(ARGV[14])
  if deadline == 0 then return false end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline
end
local res = {}
if redis.call('HGET', KEYS[5], 'push') ~= '1' then
  for _ = 1, n do table.insert(res, 'no_consent') end
  return res
end
local customerReason = nil
if tonumber(ARGV[4]) - used('*|last') < tonumber(ARGV[12]) then customerReason = 'recent_offer'
elseif over(used('*|' .. dayF), limit) then customerReason = 'customer_limit'
end
for i = 1, n do
  local b = 15 + (i - 1) * 11
  local rule, store, exp, push = ARGV[b + 1], ARGV[b + 2], tonumber(ARGV[b + 3]), ARGV[b + 4]
  local perDay, perWeek, perTotal = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local side, holdout = ARGV[b + 8], ARGV[b + 9] == '1'
  local reason = customerReason
  if reason then
  elseif over(used(rule .. '|' .. dayF), perDay) or over(used(rule .. '|' .. weekF), perWeek)
      or over(used(rule .. '|t'), perTotal) then reason = 'frequency_cap'
  elseif side ~= '' and side ~= 'r' and side ~= '?' then reason = side
  end
  if reason then
    table.insert(res, reason)
  elseif side == '?' or (push == '' and not holdout) then
    return {'need', tostring(i)}
  elseif holdout then
    table.insert(res, 'holdout')
    if not dry then mark(store, rule, 'h') end
    return res
  else
    if not dry and late() then return {'late'} end
    table.insert(res, 'sent')
    if dry then return res end
    if redis.call('HLEN', KEYS[1]) > 64 then
      for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
        local kind, when = string.match(f, '|([dw])(%d+)$')
        -- ARGV[9] and ARGV[10] carry their kind: "d20261115", "w202646".
        if (kind == 'd' and kind .. when < ARGV[9]) or (kind == 'w' and kind .. when < ARGV[10]) then
          redis.call('HDEL', KEYS[1], f)
        end
      end
    end
    for _, f in ipairs({'*|' .. dayF, '*|t', rule .. '|' .. dayF, rule .. '|' .. weekF, rule .. '|t'}) do
      redis.call('HINCRBY', KEYS[1], f, 1)
    end
    redis.call('HSET', KEYS[1], '*|last', ARGV[4])
    redis.call('PEXPIRE', KEYS[1], 400 * 86400000)
    redis.call('HSET', KEYS[4], 'customer_id', ARGV[2], 'device_id', ARGV[3], 'rule_id', rule,
      'store_id', store, 'issued_at', ARGV[4], 'expires_at', ARGV[b + 3], 'rule_tags', ARGV[b + 10],
      'only_store', ARGV[b + 11], 'push', push)
    redis.call('PEXPIREAT', KEYS[4], exp + tonumber(ARGV[5]))
    redis.call('SADD', KEYS[2], ARGV[15])
    redis.call('PEXPIREAT', KEYS[2], exp + tonumber(ARGV[5]))
    mark(store, rule, 't')
    return res
  end
end
return res`)

// reserveScript takes one unit of a rule's budget and of its cap at a
// store today, when both have room; with dry it only checks.
// KEYS: store-day counter, budget counter. ARGV: per-store-per-day cap,
// total cap (0: none), dry ("1"). Returns "r", "store_cap" or "budget".
var reserveScript = redis.NewScript(`
local function over(k, cap) return cap > 0 and tonumber(redis.call('GET', k) or '0') >= cap end
if over(KEYS[1], tonumber(ARGV[1])) then return 'store_cap' end
if over(KEYS[2], tonumber(ARGV[2])) then return 'budget' end
if ARGV[3] ~= '1' then
  redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], 2 * 86400000)
  redis.call('INCR', KEYS[2])
end
return 'r'`)

// giveBackScript returns a reserved unit that no coupon used.
// KEYS: store-day counter, budget counter.
var giveBackScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if tonumber(redis.call('GET', k) or '0') > 0 then redis.call('DECR', k) end
end
return 1`)

// settleScript ends an intent, once: with "a" it moves it to the outbox's
// stream (the offer was issued), with "d" it drops it. Whoever settles it
// takes the rule reservations recorded with it, to give back those no
// coupon used; a second settler gets nil and gives back nothing.
// KEYS: intents, stream, reservations. ARGV: the intent, "a" or "d", the
// push reference (JSON). Returns the reservations recorded ("" for none),
// or nil when the intent was settled already.
var settleScript = redis.NewScript(`
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
if ARGV[2] == 'a' then redis.call('XADD', KEYS[2], '*', 'push', ARGV[3]) end
local v = redis.call('HGET', KEYS[3], ARGV[1]) or ''
redis.call('HDEL', KEYS[3], ARGV[1])
return v`)

// reservation is a unit of a rule's capacity taken for a candidate, as
// recorded with its intent: "rule\tstore\tstore-day key\tbudget key".
type reservation struct{ rule, store, storeDay, budget string }

func (r reservation) String() string {
	return r.rule + "\t" + r.store + "\t" + r.storeDay + "\t" + r.budget
}

// parseReservations reads the reservations recorded with an intent.
func parseReservations(v string) []reservation {
	var out []reservation
	for _, line := range strings.Split(v, "\n") {
		if f := strings.Split(line, "\t"); len(f) == 4 {
			out = append(out, reservation{f[0], f[1], f[2], f[3]})
		}
	}
	return out
}

// settleCmd is the command that settles an intent.
func settleCmd(ctx context.Context, intent string, issued bool, code, customerID string) *scripted {
	mode := "d"
	if issued {
		mode = "a"
	}
	return newScripted(ctx, settleScript, []string{keyIntents, keyOutbox, keyReserved}, intent, mode, pushRef(code, customerID))
}

// giveBackCmds return reserved units that no coupon used.
func giveBackCmds(ctx context.Context, rs []reservation) []*scripted {
	out := make([]*scripted, len(rs))
	for i, r := range rs {
		out[i] = newScripted(ctx, giveBackScript, []string{r.storeDay, r.budget})
	}
	return out
}

// intentOf names an issue in the outbox's intents: the code (of fixed
// length) and the customer.
func intentOf(code, customerID string) string { return code + customerID }

// parseIntent splits an intent.
func parseIntent(s string) (code, customerID string, ok bool) {
	if len(s) <= CouponCodeLen {
		return "", "", false
	}
	return s[:CouponCodeLen], s[CouponCodeLen:], true
}

// pushRef is what the outbox's stream holds of a push: its record, in the
// customer's keys, holds the rest.
func pushRef(code, customerID string) string {
	b, _ := json.Marshal(Push{ID: code, CustomerID: customerID})
	return string(b)
}

// hasRuleCaps tells whether a rule's offers spend shared capacity.
func hasRuleCaps(r *rules.Compiled) bool {
	return r.Rule.Caps.PerStorePerDay > 0 || r.Rule.Caps.Total > 0
}

// issue hands the eligible offers, best first, to the customer's atomic
// step, which issues the first its caps allow, and counts the funnels of
// the rules looked at (and extra, the presence step's counts).
func (e *Engine) issue(ctx context.Context, now time.Time, p Ping, cust *rules.Customer, eligible []candidate, opt Options, res *Result, extra []redis.Cmder) error {
	if len(eligible) > maxCommit {
		eligible = eligible[:maxCommit]
	}
	local := now.In(cust.Location())
	day := local.Format("20060102")
	year, week := local.ISOWeek()
	oldestDay := local.AddDate(0, 0, -8).Format("20060102")
	oy, ow := local.AddDate(0, 0, -15).ISOWeek()
	utcDay := now.UTC().Format("20060102")
	code := e.coupons.NewCode()
	intent := intentOf(code, p.CustomerID)
	var deadline int64
	if !opt.DryRun {
		deadline = time.Now().Add(commitWindow).UnixMilli() // the wall clock, as Redis's
	}
	keys := []string{customerKey(p.CustomerID, partCaps), customerKey(p.CustomerID, partCoupons),
		customerKey(p.CustomerID, partVisits), couponRecordKey(p.CustomerID, code), customerKey(p.CustomerID, partProfile)}
	args := []any{len(eligible), p.CustomerID, p.DeviceID, now.UnixMilli(), e.cfg.CouponRetention.Milliseconds(), flag(opt.DryRun),
		"d" + day, fmt.Sprintf("w%04d%02d", year, week), "d" + oldestDay, fmt.Sprintf("w%04d%02d", oy, ow), e.cfg.MaxOffersPerDay,
		e.cfg.MinOfferGap.Milliseconds(), utcDay, deadline, code}
	offers := make([]Offer, len(eligible))
	at := make([]int, len(eligible)) // where each candidate's arguments begin
	ruleKeys := make([][]string, len(eligible))
	for i, c := range eligible {
		expires := now.Add(c.rule.ValidFor()).UTC().Truncate(time.Second)
		offers[i] = Offer{CouponCode: code, RuleID: c.rule.Rule.ID, StoreID: c.store.ID, ExpiresAt: expires}
		side := ""
		if hasRuleCaps(c.rule) {
			side = "?"
			storeDay := now.In(c.store.Location()).Format("20060102")
			ruleKeys[i] = []string{storeDayKey(c.rule.Rule.ID, c.store.ID, storeDay), budgetKey(c.rule.Rule.ID)}
		}
		caps := c.rule.Rule.Caps
		at[i] = len(args)
		args = append(args, c.rule.Rule.ID, c.store.ID, expires.UnixMilli(), "",
			caps.PerCustomerPerDay, caps.PerCustomerPerWeek, caps.PerCustomerTotal, side,
			flag(c.rule.InHoldout(p.CustomerID)), strings.Join(c.rule.Rule.Tags, ","), onlyStore(c))
	}
	// render writes a candidate's texts and push; only those that may win
	// are rendered. A candidate whose texts fail to render is handed to
	// the step as refused by render_error (as a rule's capacity refuses),
	// reserves nothing, and is never sent.
	rendered := make([]bool, len(eligible))
	render := func(i int) error {
		if rendered[i] {
			return nil
		}
		c, o := eligible[i], &offers[i]
		msg, err := c.rule.RenderMessage(rules.OfferData{Customer: cust, Store: c.store.Store, DistanceM: c.distanceM, CouponCode: o.CouponCode, ExpiresAt: o.ExpiresAt, Visit: c.visit})
		if err != nil {
			args[at[i]+7], rendered[i] = ReasonRenderError, true
			return nil
		}
		o.Title, o.Body = msg.Title, msg.Body
		pushExpires := now.Add(e.cfg.PushTTL)
		if o.ExpiresAt.Before(pushExpires) {
			pushExpires = o.ExpiresAt
		}
		payload, err := json.Marshal(Push{
			ID: o.CouponCode, CustomerID: p.CustomerID, DeviceID: p.DeviceID,
			Title: msg.Title, Body: msg.Body,
			Data: map[string]string{
				"coupon_code": o.CouponCode, "rule_id": o.RuleID, "store_id": o.StoreID,
				"expires_at": o.ExpiresAt.Format(time.RFC3339), "title": msg.Title, "body": msg.Body,
			},
			CollapseKey: o.RuleID, ExpiresAt: pushExpires, CreatedAt: now,
		})
		args[at[i]+3], rendered[i] = string(payload), true
		return err
	}
	// reserve asks a rule for capacity (a check only, in a dry run).
	reserved := make([]bool, len(eligible))
	reserveCmd := func(i int) *scripted {
		c := eligible[i].rule.Rule.Caps
		return newScripted(ctx, reserveScript, ruleKeys[i], c.PerStorePerDay, c.Total, flag(opt.DryRun))
	}
	reserveDone := func(i int, x *scripted) error {
		side, err := x.result(ctx, e.rdb).Text()
		if err != nil {
			return rules.RedisErr("reserve a rule's capacity", err)
		}
		args[at[i]+7] = side
		reserved[i] = side == "r" && !opt.DryRun
		return nil
	}
	// reservations lists the units taken, but for the winner's.
	reservations := func(except int) []reservation {
		var out []reservation
		for i, r := range reserved {
			if r && i != except {
				out = append(out, reservation{eligible[i].rule.Rule.ID, eligible[i].store.ID, ruleKeys[i][0], ruleKeys[i][1]})
			}
		}
		return out
	}
	// recordCmd records the units taken with the intent, so that whoever
	// settles the intent gives back those no coupon used.
	recordCmd := func() redis.Cmder {
		rs := reservations(-1)
		if opt.DryRun || len(rs) == 0 {
			return nil
		}
		lines := make([]string, len(rs))
		for i, r := range rs {
			lines[i] = r.String()
		}
		return redis.NewIntCmd(ctx, "hset", keyReserved, intent, strings.Join(lines, "\n"))
	}
	// abandon settles the intent of an offer that was not issued and
	// gives back what it reserved.
	abandon := func(cause error) error {
		if !opt.DryRun {
			e.settle(ctx, intent, code, p.CustomerID, reservations(-1))
		}
		return cause
	}
	if err := render(0); err != nil {
		return err
	}

	// Step 1: the intent, and the best candidate's capacity.
	var intentCmd *redis.IntCmd
	var first []redis.Cmder
	if !opt.DryRun {
		intentCmd = redis.NewIntCmd(ctx, "zadd", keyIntents, deadline, intent)
		first = append(first, intentCmd)
	}
	var reserve0 *scripted
	if ruleKeys[0] != nil && args[at[0]+7] == "?" {
		reserve0 = reserveCmd(0)
		first = append(first, reserve0.cmd)
	}
	// On one Redis a pipeline runs in order on one connection: with no
	// capacity to reserve first, the intent goes in the commit's round
	// trip, just before it (a round trip fewer for most offers).
	var withCommit []redis.Cmder
	if intentCmd != nil && reserve0 == nil && e.orderedPipelines() {
		withCommit, first = first, nil
	}
	if len(first) > 0 {
		e.batch.do(ctx, first...)
		if reserve0 != nil {
			if err := reserveDone(0, reserve0); err != nil {
				return err // a unit may be held: lost, never over-spent
			}
		}
		if intentCmd != nil && intentCmd.Err() != nil {
			// No intent, so nobody else settles: give back at once.
			e.runScripts(ctx, giveBackCmds(ctx, reservations(-1)))
			return rules.RedisErr("offer intent", intentCmd.Err())
		}
	}

	// Step 2: the customer's atomic step, asked again while it needs a
	// rendering or a reservation. The units reserved go on record with
	// the intent before (or with) each try.
	var results []string
	for attempt := 0; ; attempt++ {
		if attempt > 2*len(eligible)+1 {
			return abandon(errors.New("issue offer: the atomic step asked for what it had")) // a bug
		}
		out, short, err := e.commit(ctx, keys, args, opt.DryRun, append(withCommit, recordCmd())...)
		withCommit = nil
		if err != nil {
			// The intent stays: should the step have issued, the
			// dispatcher announces it past the deadline; either way it
			// gives back what the intent recorded and no coupon used.
			return rules.RedisErr("issue offer", err)
		}
		if len(out) == 1 && out[0] == "late" {
			return abandon(fmt.Errorf("%w: issue offer: the step came after its deadline", ErrUnavailable))
		}
		if len(out) == 2 && out[0] == "need" {
			i, _ := strconv.Atoi(out[1])
			i--
			if i < 0 || i >= len(eligible) {
				return abandon(fmt.Errorf("issue offer: the atomic step asked for candidate %s", out[1])) // a bug
			}
			if err := render(i); err != nil {
				return abandon(err)
			}
			if args[at[i]+7] == "?" {
				x := reserveCmd(i)
				e.batch.do(ctx, x.cmd)
				if err := reserveDone(i, x); err != nil {
					return abandon(err)
				}
			}
			continue
		}
		if short && slices.Contains(out, ResultSent) {
			// Issued on a master that no replica had heard from in time: a
			// failover now could lose it. The answer does not give it; a
			// dispatcher announces it past the deadline if it survives.
			return fmt.Errorf("%w: issue offer: the step reached fewer replicas than NEARCAST_REDIS_WAIT_REPLICAS in time", ErrUnavailable)
		}
		results = out
		break
	}
	if intentCmd != nil && intentCmd.Err() != nil {
		// The intent sent with the commit failed, which on one Redis fails
		// the commit too; should the commit have issued anyway, the intent
		// goes in now, before the offer is announced.
		if err := e.rdb.ZAdd(ctx, keyIntents, redis.Z{Score: float64(deadline), Member: intent}).Err(); err != nil {
			if slices.Contains(results, ResultSent) {
				e.log.Error("an offer issued without its intent: its push is not announced", "push", code, "err", err)
			}
			return rules.RedisErr("offer intent", err)
		}
	}
	winner := -1
	for i, r := range results {
		res.Explain[eligible[i].explain].Result = r
		if r == ResultSent || r == ReasonHoldout {
			winner = i
		}
		if r == ResultSent {
			res.Offers = append(res.Offers, offers[i])
		}
	}
	if opt.DryRun {
		return nil
	}

	// Step 3: settle the intent (announce the offer, or drop the intent),
	// index the code, count; then give back the units no coupon used.
	issued := winner >= 0 && results[winner] == ResultSent
	settle := settleCmd(ctx, intent, issued, code, p.CustomerID)
	cmds := append(extra, settle.cmd)
	var index *redis.StatusCmd
	if issued {
		ttl := offers[winner].ExpiresAt.Add(e.cfg.CouponRetention).Sub(now)
		// NX: a fresh code has no index, unless the customer was erased
		// since the commit and the erasure marked the code (settleInFlight).
		index = redis.NewStatusCmd(ctx, "set", codeIndexKey(code), p.CustomerID, "px", max(ttl, time.Second).Milliseconds(), "nx")
		cmds = append(cmds, index)
	}
	if winner >= 0 && results[winner] == ReasonHoldout {
		cmds = append(cmds, redis.NewIntCmd(ctx, "incr", budgetKey(eligible[winner].rule.Rule.ID)+":holdout"))
	}
	counted := make([]Explanation, len(res.Explain))
	for i, x := range res.Explain {
		if x.Result == "" {
			x.Result = ReasonLower
		}
		counted[i] = x
	}
	cmds = append(cmds, e.funnelCmds(ctx, utcDay, counted)...)
	e.batch.do(ctx, cmds...)
	_, settleErr := settle.result(ctx, e.rdb).Result()
	if settleErr == nil {
		keep := -1
		if issued {
			keep = winner
		}
		e.runScripts(ctx, giveBackCmds(ctx, reservations(keep)))
	}
	var failed error
	for _, c := range cmds {
		if err := c.Err(); err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") && !errors.Is(err, redis.Nil) {
			failed = err
		}
	}
	if issued && errors.Is(index.Err(), redis.Nil) {
		// The code is marked erased: the customer was erased since the
		// commit, and is answered as one without consent.
		res.Offers = res.Offers[:0]
		return nil
	}
	if issued && (settleErr != nil || index.Err() != nil) {
		// The coupon is issued but may not be announced, or found by its
		// code: the answer does not give it. A dispatcher announces it
		// past the deadline (when the announcement failed) and writes the
		// code's index before it sends the push (when the index failed).
		// (A nil answer, the intent settled already, means a dispatcher
		// announced it.)
		res.Offers = res.Offers[:0]
		if errors.Is(settleErr, redis.Nil) {
			return fmt.Errorf("%w: announce an offer: its intent was settled by another", ErrUnavailable)
		}
		return rules.RedisErr("announce an offer", cmp.Or(settleErr, index.Err()))
	}
	if failed != nil {
		// A funnel counter may be off by one.
		e.log.Warn("offer decided, its counters not all written", "err", failed)
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
		e.batch.do(ctx, before...) // a failure of the record only leaves the units off it
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

// Package engine makes the decision for one ping — presence (enter and
// exit), eligibility, frequency caps, arbitration and coupons — and owns
// the outbox that carries each issued coupon to a push Sender. Stores,
// rules and profiles come from package rules; the engine knows nothing of
// HTTP.
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
)

// ErrUnavailable wraps a failure of Redis: the caller may retry later.
// It is rules.ErrUnavailable, which the catalog reports too.
var ErrUnavailable = rules.ErrUnavailable

// RateLimitError is a call over a customer's, a device's or a
// credential's limit; it changed nothing.
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many calls for this customer, device or key; retry in %s", e.RetryAfter.Round(time.Second))
}

// ErrNoSnapshot means the catalog has not been loaded yet.
var ErrNoSnapshot = errors.New("no catalog snapshot loaded yet")

// Keys of the outbox, shared by all customers, under one hash tag so that
// in Redis Cluster its scripts find them in one slot.
const (
	keyOutbox   = "nc:{outbox}:stream"   // stream of pushes to send (references to their coupon records)
	keyDead     = "nc:{outbox}:dead"     // stream of pushes that could not be sent, with the reason
	keyDelayed  = "nc:{outbox}:delayed"  // sorted set of pushes waiting to be tried again, by due time
	keyIntents  = "nc:{outbox}:intents"  // sorted set of offers being issued, by the deadline of their commit
	keyReserved = "nc:{outbox}:reserved" // hash: intent → the rule capacity reserved for it, to give back what no coupon used
)

// Snapshots gives the catalog snapshot in force (rules.Live does).
type Snapshots interface {
	Current() *rules.Snapshot
}

// Config tunes the decision.
type Config struct {
	// VisitTimeout ends a visit with no fix inside for that long, so that
	// the next fix inside is a new visit.
	VisitTimeout time.Duration
	// LateFix is the age past which a fix (a delayed upload) still moves
	// presence but fires no offer.
	LateFix time.Duration
	// PushTTL is how long a push may wait before it is dropped unsent.
	PushTTL time.Duration
	// QuietHours are minutes of the day, from and until, in the customer's
	// time zone, when no offer is sent; equal values mean none.
	QuietHours [2]int
	// MinOfferGap is the least time between two offers to one customer:
	// one offer at a time, however many stores they walk into at once.
	MinOfferGap time.Duration
	// MaxOffersPerDay caps the offers one customer gets in a day (their
	// time zone) across all rules; 0 means no limit.
	MaxOffersPerDay int
	// MaxEnterSpeedMps is the speed above which a customer does not enter
	// a store: driving past is not a visit.
	MaxEnterSpeedMps float64
	// EnterAccuracyM is the fix accuracy always good enough to enter a
	// fence; a larger fence accepts fixes as unsure as its own size.
	EnterAccuracyM float64
	// CouponRetention is how long a coupon's record is kept past its
	// expiry, for redemption look-ups and statistics.
	CouponRetention time.Duration
	// RedisLanes is how many pipelines of pings' commands may be on the
	// wire to Redis at once; more pings wait and go together.
	RedisLanes int
	// PingsPerMinute and PingsPerMinuteDevice limit a customer's pings,
	// and each of their devices', in a minute of the server's clock;
	// 0 means no limit.
	PingsPerMinute       int
	PingsPerMinuteDevice int
	// WaitReplicas is how many replicas must have an offer's step before
	// the answer gives the coupon (Redis WAIT), so that a failover cannot
	// lose it; 0 waits for none. WaitTimeout bounds the wait; a step that
	// reached fewer replicas in time is answered all the same, and counted.
	WaitReplicas int
	WaitTimeout  time.Duration
	// Metrics counts decisions and events; nil counts nothing.
	Metrics *Metrics
}

// DefaultConfig is the configuration the server starts with.
var DefaultConfig = Config{
	VisitTimeout:     30 * time.Minute,
	LateFix:          5 * time.Minute,
	PushTTL:          10 * time.Minute,
	MaxEnterSpeedMps: 3,
	MaxOffersPerDay:  2,
	MinOfferGap:      5 * time.Minute,
	QuietHours:       [2]int{21 * 60, 8 * 60},
	EnterAccuracyM:   25,
	CouponRetention:  30 * 24 * time.Hour,
	RedisLanes:       1,
	WaitTimeout:      100 * time.Millisecond,
	// An app sends a fix every few seconds at most; more is a loop or abuse.
	PingsPerMinute:       60,
	PingsPerMinuteDevice: 30,
}

// maxCommit bounds how many eligible offers one ping hands to the atomic
// step, which issues the first one its caps allow.
const maxCommit = 8

// Engine decides what a ping causes.
type Engine struct {
	rdb     redis.UniversalClient
	snaps   Snapshots
	coupons *Coupons
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	// funnelTTLs are the funnel keys this process gave their TTL today.
	funnelTTLs onceADay
	// batch sends the commands of concurrent pings together.
	batch *batcher
}

// New returns an engine. now may be nil for the wall clock.
func New(rdb redis.UniversalClient, snaps Snapshots, coupons *Coupons, cfg Config, log *slog.Logger, now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	if cfg.RedisLanes < 1 {
		cfg.RedisLanes = DefaultConfig.RedisLanes
	}
	return &Engine{rdb: rdb, snaps: snaps, coupons: coupons, cfg: cfg, log: log, now: now, batch: newBatcher(rdb, cfg.RedisLanes)}
}

// Ping is one location fix of a customer's device.
type Ping struct {
	CustomerID string
	DeviceID   string
	Lat, Lng   float64
	AccuracyM  float64
	SpeedMps   *float64
	// TS is when the fix was taken; zero means now.
	TS      time.Time
	Context map[string]any
	// TokenGen is the generation of the customer token the ping came
	// with, checked against revocations in the ping's own Redis step; 0
	// when it came with none (an admin key, a Firebase ID token, or the
	// app key alone).
	TokenGen int64
}

// Options change how a ping is evaluated.
type Options struct {
	// DryRun changes nothing: no presence, no counters, no coupon, no push.
	DryRun bool
	// Explain lists why each rule looked at did or did not fire.
	Explain bool
}

// Event is a change of presence.
type Event struct {
	Type      string `json:"type"` // enter, dwell or exit
	StoreID   string `json:"store_id"`
	DistanceM int    `json:"distance_m"`
	// VisitS is how long the visit lasted, on exit.
	VisitS *int `json:"visit_s,omitempty"`
	// DwellS is how long the customer has stayed, on dwell.
	DwellS *int `json:"dwell_s,omitempty"`
}

// Offer is an issued coupon.
type Offer struct {
	CouponCode string    `json:"coupon_code"`
	RuleID     string    `json:"rule_id"`
	StoreID    string    `json:"store_id"`
	Title      string    `json:"title"`
	Body       string    `json:"body"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// Explanation says what became of one rule at one store.
type Explanation struct {
	RuleID  string `json:"rule_id"`
	StoreID string `json:"store_id"`
	// Result is "sent" or the first reason the rule did not fire.
	Result string `json:"result"`
}

// Reasons a rule looked at did not fire.
const (
	ResultSent     = "sent"
	ReasonAudience = "audience"
	ReasonClosed   = rules.WhenStoreClosed
	ReasonSchedule = rules.WhenSchedule
	ReasonQuiet    = rules.WhenQuiet
	ReasonCap      = "frequency_cap"
	ReasonLimit    = "customer_limit"
	ReasonStoreCap = "store_cap"
	ReasonBudget   = "budget"
	ReasonHoldout  = "holdout"
	ReasonSpeed    = "speed"
	ReasonRecent   = "recent_offer"
	ReasonConsent  = "no_consent"
	ReasonLate     = "late_fix"
	ReasonLower    = "lower_priority"
	// ReasonAudienceError: the audience's evaluation went over its budget
	// of steps or memory (rules.ErrAudienceBudget), or failed; the rule
	// does not fire.
	ReasonAudienceError = "audience_error"
	// ReasonRenderError: the offer's texts could not be rendered within
	// their bounds (rules.MaxTextBytes, time); no push is sent.
	ReasonRenderError = "render_error"
)

// Result is what a ping caused.
type Result struct {
	Events  []Event       `json:"events"`
	Offers  []Offer       `json:"offers"`
	Explain []Explanation `json:"explain,omitempty"`
}

// observeScript moves the customer's presence to the fix atomically and
// says which stores were entered, left and dwelt in. Only one of two
// concurrent pings can see a store as entered. Nothing is read or kept for
// a customer without location consent (or without a profile).
//
// Presence per store is "entered_ms:last_seen_ms:dwell_done_s"; "#ts" is
// the newest fix's time and "#fix" its "ts:lat:lng" ('#' is in no id, so
// no store's field can be taken for them), kept only to derive
// speed from the next fix and gone with the presence key's TTL.
//
// KEYS: presence, profile, device_seen, visits, caps, rate, tokens
// ARGV: ts_ms, visit_timeout_ms, dry ("1"), device_id, speed_mps (-1: unknown),
// max_enter_speed_mps, lat, lng, n, now_ms (the server's clock), calls a
// minute per customer and per device (0: no limit), the generation of the
// customer token the ping came with (0: none), then per store: id, kind ("s": surely
// inside, may enter; "h": may still be inside, keeps a visit), n_thresholds,
// dwell thresholds in seconds (ascending)…
// Returns {"ok", n_entered, ids…, n_exited, (id, visit_ms)…, n_dwell,
// (id, dwell_s)…, n_too_fast, ids not entered for speed…} when nothing
// happened, else that followed by {profile doc,
// visits in all, previous visit's start (ms), n_stores, (id, visits,
// previous visit's start)…, offers received, redemptions, the last one's
// time, n_tags, (tag, redemptions)…, n_returns, (rule, funnel field,
// day)…: visits that are returns after an offer, which the engine counts
// in the rule's funnel (a key of the rule's, which in Redis Cluster lives
// elsewhere)}, or {"no_consent"}, or
// {"stale"} (a fix older than the last one seen), {"rate_limited",
// ms until the next minute}, or {"revoked"} (the customer token was).
var observeScript = redis.NewScript(`
local ts = tonumber(ARGV[1])
local timeout = tonumber(ARGV[2])
local dry = ARGV[3] == '1'
-- A customer token revoked since it was minted (ARGV[13], 0: none) is
-- refused before anything is read or counted.
local gen = tonumber(ARGV[13])
if gen > 0 and gen < tonumber(redis.call('GET', KEYS[7]) or '1') then return {'revoked'} end
-- Rate limits, per minute of the server's clock: the customer's calls and
-- each device's, kept as "minute:count" in their own key. Every call
-- counts, dry runs and customers without a profile or consent included,
-- so that no one can tell them apart; a call over a limit changes nothing.
local now = tonumber(ARGV[10])
local minute = math.floor(now / 60000)
local limC, limD = tonumber(ARGV[11]), tonumber(ARGV[12])
if limC > 0 or limD > 0 then
  local function bump(v)
    local m, c = string.match(v or '', '^(%d+):(%d+)$')
    if m and tonumber(m) == minute then return tonumber(c) + 1 end
    return 1
  end
  local rc = bump(redis.call('HGET', KEYS[6], 'c'))
  local rd = 0
  if ARGV[4] ~= '' then rd = bump(redis.call('HGET', KEYS[6], 'd:' .. ARGV[4])) end
  if (limC > 0 and rc > limC) or (limD > 0 and ARGV[4] ~= '' and rd > limD) then
    return {'rate_limited', string.format('%d', (minute + 1) * 60000 - now)}
  end
  redis.call('HSET', KEYS[6], 'c', minute .. ':' .. rc)
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[6], 'd:' .. ARGV[4], minute .. ':' .. rd) end
  redis.call('PEXPIRE', KEYS[6], 120000)
end
if redis.call('HGET', KEYS[2], 'loc') ~= '1' then return {'no_consent'} end
local cur = redis.call('HGETALL', KEYS[1])
local present, last, prev = {}, 0, nil
for i = 1, #cur, 2 do
  local f = cur[i]
  if f == '#ts' then last = tonumber(cur[i + 1])
  elseif f == '#fix' then prev = cur[i + 1]
  elseif string.sub(f, 1, 1) ~= '#' then
    local e, s, d = string.match(cur[i + 1], '^(%d+):(%d+):(%d+)$')
    if e then present[f] = {tonumber(e), tonumber(s), tonumber(d)} end
  end
end
if ts < last then return {'stale'} end
local speed = tonumber(ARGV[5])
local lat, lng = tonumber(ARGV[7]), tonumber(ARGV[8])
if speed < 0 and prev and tonumber(ARGV[9]) > 0 then
  local pts, plat, plng = string.match(prev, '^(%d+):([-%d.e]+):([-%d.e]+)$')
  local dt = (ts - tonumber(pts)) / 1000
  if dt >= 10 and dt <= 300 then
    local r = math.pi / 180
    local s1 = math.sin((lat - tonumber(plat)) * r / 2)
    local s2 = math.sin((lng - tonumber(plng)) * r / 2)
    local h = s1 * s1 + math.cos(lat * r) * math.cos(tonumber(plat) * r) * s2 * s2
    if h > 1 then h = 1 end
    speed = 2 * 6371007.180918475 * math.asin(math.sqrt(h)) / dt
  end
end
local fast = speed > tonumber(ARGV[6])
local listed = {}
local entered, exited, dwelt, tooFast = {}, {}, {}, {}
local writes, dels = {'#ts', ARGV[1], '#fix', ARGV[1] .. ':' .. ARGV[7] .. ':' .. ARGV[8]}, {}
local i = 14
for _ = 1, tonumber(ARGV[9]) do
  local id, kind, nt = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local thresholds = {}
  for k = 1, nt do thresholds[k] = tonumber(ARGV[i + 2 + k]) end
  i = i + 3 + nt
  listed[id] = true
  local p = present[id]
  if p ~= nil and p[2] < ts - timeout then p = nil end
  if p == nil then
    if kind == 's' and fast then
      table.insert(tooFast, id)
    elseif kind == 's' then
      table.insert(entered, id)
      table.insert(writes, id); table.insert(writes, ARGV[1] .. ':' .. ARGV[1] .. ':0')
    elseif present[id] ~= nil then
      table.insert(dels, id)
    end
  else
    local done = p[3]
    if kind == 's' then
      local stay = (ts - p[1]) / 1000
      for _, t in ipairs(thresholds) do
        if t > done and t <= stay then
          table.insert(dwelt, id); table.insert(dwelt, tostring(t))
          done = t
        end
      end
    end
    table.insert(writes, id); table.insert(writes, string.format('%d:%s:%d', p[1], ARGV[1], done))
  end
end
for id, p in pairs(present) do
  if not listed[id] then
    if p[2] >= ts - timeout then
      table.insert(exited, id); table.insert(exited, string.format('%d', ts - p[1]))
    end
    table.insert(dels, id)
  end
end
if not dry then
  redis.call('HSET', KEYS[1], unpack(writes))
  if #dels > 0 then redis.call('HDEL', KEYS[1], unpack(dels)) end
  redis.call('PEXPIRE', KEYS[1], timeout)
  if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[3], ARGV[4], ARGV[1])
    redis.call('PEXPIRE', KEYS[3], 400 * 86400000)
  end
end
local out = {'ok', tostring(#entered)}
for _, id in ipairs(entered) do table.insert(out, id) end
table.insert(out, tostring(#exited / 2))
for _, v in ipairs(exited) do table.insert(out, v) end
table.insert(out, tostring(#dwelt / 2))
for _, v in ipairs(dwelt) do table.insert(out, v) end
table.insert(out, tostring(#tooFast))
for _, id in ipairs(tooFast) do table.insert(out, id) end
-- Most pings change nothing: they need no profile and no history.
if #entered == 0 and #exited == 0 and #dwelt == 0 then return out end
table.insert(out, redis.call('HGET', KEYS[2], 'doc') or '')
-- Visit history of the stores with an event: how many visits, and when the
-- one before the current began (0: none), for the store and for any store.
-- An enter starts a visit; a dry run answers as if it had.
local v = KEYS[4]
local function num(f) return tonumber(redis.call('HGET', v, f) or '0') end
local isEntered = {}
for _, id in ipairs(entered) do isEntered[id] = true end
local gn, gprev = num('n'), num('prev')
if #entered > 0 then
  gn, gprev = gn + 1, num('last')
  if not dry then
    redis.call('HSET', v, 'prev', gprev, 'last', ARGV[1])
    redis.call('HINCRBY', v, 'n', 1)
    redis.call('HSETNX', v, 'first', ARGV[1])
  end
end
local info, seen, returns = {}, {}, {}
local function add(id)
  if seen[id] then return end
  seen[id] = true
  local n, prev = num('n:' .. id), num('prev:' .. id)
  if isEntered[id] then
    -- A visit within 7 days of an offer (or a holdout) at this store is a
    -- return, counted in the funnel of the offer's rule and day.
    local o = redis.call('HGET', v, 'offer:' .. id)
    if o and not dry then
      local t, rule, group, day = string.match(o, '^(%d+)|(.+)|([th])|(%d+)$')
      if t and ts > tonumber(t) and ts - tonumber(t) <= 7 * 86400000 then
        local f = 'returned_treated'
        if group == 'h' then f = 'returned_holdout' end
        table.insert(returns, rule); table.insert(returns, f); table.insert(returns, day)
      end
      if not t or ts - tonumber(t) > 0 then redis.call('HDEL', v, 'offer:' .. id) end
    end
    n, prev = n + 1, num('last:' .. id)
    if not dry then
      redis.call('HSET', v, 'prev:' .. id, prev, 'last:' .. id, ARGV[1])
      redis.call('HINCRBY', v, 'n:' .. id, 1)
      redis.call('HSETNX', v, 'first:' .. id, ARGV[1])
    end
  end
  for _, x in ipairs({id, tostring(n), string.format('%d', prev)}) do table.insert(info, x) end
end
for _, id in ipairs(entered) do add(id) end
for i = 1, #dwelt, 2 do add(dwelt[i]) end
for i = 1, #exited, 2 do add(exited[i]) end
if #entered > 0 and not dry then redis.call('PEXPIRE', v, 400 * 86400000) end
table.insert(out, tostring(gn)); table.insert(out, string.format('%d', gprev))
table.insert(out, tostring(#info / 3))
for _, x in ipairs(info) do table.insert(out, x) end
table.insert(out, redis.call('HGET', KEYS[5], '*|t') or '0')
-- Redemptions: how many, the last one's time, and per rule tag (affinity).
table.insert(out, tostring(num('redeemed'))); table.insert(out, string.format('%d', num('redeemed_last')))
local aff = {}
if #entered > 0 or #exited > 0 or #dwelt > 0 then
  local all = redis.call('HGETALL', v)
  for k = 1, #all, 2 do
    if string.sub(all[k], 1, 4) == 'aff:' then table.insert(aff, string.sub(all[k], 5)); table.insert(aff, all[k + 1]) end
  end
end
table.insert(out, tostring(#aff / 2))
for _, x in ipairs(aff) do table.insert(out, x) end
table.insert(out, tostring(#returns / 3))
for _, x in ipairs(returns) do table.insert(out, x) end
return out`)

func onlyStore(c candidate) string {
	if c.rule.Rule.Offer.RedeemAtIssuingStore {
		return c.store.ID
	}
	return ""
}

// funnelKey is a rule's funnel counters for one UTC day (yyyymmdd).
func funnelKey(rule, day string) string { return "nc:{rule:" + rule + "}:funnel:" + day }

// funnelTTL keeps a day's counters for a year and a bit.
const funnelTTL = 400 * 24 * time.Hour

// reached says whether a rule with this result got as far as the atomic
// step: its audience, schedule and consent all held.
func reached(result string) bool {
	switch result {
	case ResultSent, ReasonHoldout, ReasonCap, ReasonLimit, ReasonStoreCap, ReasonBudget, ReasonRecent, ReasonLower, ReasonRenderError:
		return true
	}
	return false
}

// funnelCmds are the commands that count, in each explained rule's
// funnel for the UTC day, what became of it: one counter per result, from
// which the reader derives how many were evaluated and matched. A key
// gets its TTL the first time this process counts in it that day.
func (e *Engine) funnelCmds(ctx context.Context, day string, explain []Explanation) []redis.Cmder {
	cmds := make([]redis.Cmder, 0, len(explain))
	for _, x := range explain {
		k := funnelKey(x.RuleID, day)
		field := "skip:" + x.Result
		switch x.Result {
		case ResultSent:
			field = "issued"
		case ReasonHoldout:
			field = "holdout"
		}
		cmds = append(cmds, redis.NewIntCmd(ctx, "hincrby", k, field, 1))
		if e.funnelTTLs.first(day, k) {
			cmds = append(cmds, redis.NewBoolCmd(ctx, "expire", k, int64(funnelTTL/time.Second)))
		}
	}
	return cmds
}

// returnCmds count returns after offers in the rules' funnels.
func (e *Engine) returnCmds(ctx context.Context, returns []funnelCount) []redis.Cmder {
	var cmds []redis.Cmder
	today := e.now().UTC().Format("20060102")
	for _, r := range returns {
		k := funnelKey(r.rule, r.day)
		cmds = append(cmds, redis.NewIntCmd(ctx, "hincrby", k, r.field, 1))
		if e.funnelTTLs.first(today, k) {
			cmds = append(cmds, redis.NewBoolCmd(ctx, "expire", k, int64(funnelTTL/time.Second)))
		}
	}
	return cmds
}

// onceADay remembers the keys given their TTL today.
type onceADay struct {
	mu   sync.Mutex
	day  string
	done map[string]bool
}

// first reports whether key is new today, and remembers it.
func (o *onceADay) first(day, key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.day != day {
		o.day, o.done = day, map[string]bool{}
	}
	if o.done[key] {
		return false
	}
	o.done[key] = true
	return true
}

// count adds what became of each explained rule to its funnel, in one
// round trip; a dry run counts nothing. A failure is logged: the decision
// stands.
func (e *Engine) count(ctx context.Context, now time.Time, explain []Explanation, opt Options, extra []redis.Cmder) {
	if opt.DryRun || len(explain)+len(extra) == 0 {
		return
	}
	cmds := append(extra, e.funnelCmds(ctx, now.UTC().Format("20060102"), explain)...)
	e.batch.do(ctx, cmds...)
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			e.log.Warn("funnel counters not updated", "err", err)
			return
		}
	}
}

// countOne adds one to a funnel counter of a rule, today.
func countOne(ctx context.Context, rdb redis.UniversalClient, now time.Time, rule, field string) error {
	if rule == "" {
		return nil
	}
	k := funnelKey(rule, now.UTC().Format("20060102"))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HIncrBy(ctx, k, field, 1)
		p.Expire(ctx, k, funnelTTL)
		return nil
	})
	return err
}

// Keys of a rule's shared counters.
func budgetKey(rule string) string { return "nc:{rule:" + rule + "}:issued" }
func storeDayKey(rule, store, day string) string {
	return "nc:{rule:" + rule + "}:store:" + store + ":" + day
}

// candidate is an offer the customer is eligible for at one store.
type candidate struct {
	rule      *rules.Compiled
	store     *rules.StoreEntry
	distanceM int
	visit     *rules.VisitEnv
	explain   int // position in Result.Explain
}

// Evaluate decides what a ping causes, and counts what became of every
// rule looked at in the rules' funnels: in the same round trip as the
// atomic step when an offer may be issued, else in one pipelined step,
// and not at all for a ping that looked at no rule.
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
	ts := p.TS
	if ts.IsZero() || ts.After(now) {
		ts = now
	}
	res := &Result{Events: []Event{}, Offers: []Offer{}}

	if p.AccuracyM > geo.MaxAccuracyM {
		return res, nil // too unsure to move presence either way
	}
	var buf [16]geo.Hit
	hits := snap.Index.Near(p.Lat, p.Lng, buf[:0])
	speed := -1.0
	if p.SpeedMps != nil {
		speed = *p.SpeedMps
	}
	args := make([]any, 0, 16+4*len(hits))
	args = append(args, ts.UnixMilli(), e.cfg.VisitTimeout.Milliseconds(), flag(opt.DryRun), p.DeviceID,
		speed, e.cfg.MaxEnterSpeedMps, strconv.FormatFloat(p.Lat, 'f', -1, 64), strconv.FormatFloat(p.Lng, 'f', -1, 64))
	n := 0
	for _, h := range hits {
		if h.Held(p.AccuracyM) {
			n++
		}
	}
	args = append(args, n, now.UnixMilli(), e.cfg.PingsPerMinute, e.cfg.PingsPerMinuteDevice, p.TokenGen)
	for _, h := range hits {
		if !h.Held(p.AccuracyM) {
			continue
		}
		kind := "h"
		if h.Inside && p.AccuracyM <= math.Max(e.cfg.EnterAccuracyM, h.SizeM) {
			kind = "s"
		}
		th := snap.DwellThresholds(h.Fence)
		args = append(args, snap.Stores[h.Fence].ID, kind, len(th))
		for _, t := range th {
			args = append(args, t)
		}
	}
	keys := []string{customerKey(p.CustomerID, partPresence), customerKey(p.CustomerID, partProfile),
		customerKey(p.CustomerID, partDeviceSeen), customerKey(p.CustomerID, partVisits), customerKey(p.CustomerID, partCaps),
		customerKey(p.CustomerID, partRate), customerKey(p.CustomerID, partTokens)}
	raw, err := e.batch.runScript(ctx, observeScript, keys, args...).StringSlice()
	if err != nil {
		return nil, rules.RedisErr("presence", err)
	}
	switch raw[0] {
	case "ok":
	case "revoked", "rate_limited":
		return nil, admitted(raw)
	default:
		return res, nil // no consent, no profile, or a fix older than the last: nothing changes
	}
	obs := parseObserve(raw)

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
	type fired struct {
		on     string
		store  int32
		dist   int
		dwellS int
	}
	var events []fired
	for _, id := range obs.entered {
		pos, d := distance(id)
		res.Events = append(res.Events, Event{Type: rules.OnEnter, StoreID: id, DistanceM: d})
		if pos >= 0 {
			events = append(events, fired{rules.OnEnter, pos, d, 0})
		}
	}
	for _, x := range obs.dwelt {
		pos, d := distance(x.id)
		dw := x.dwellS
		res.Events = append(res.Events, Event{Type: rules.OnDwell, StoreID: x.id, DistanceM: d, DwellS: &dw})
		if pos >= 0 {
			events = append(events, fired{rules.OnDwell, pos, d, dw})
		}
	}
	for _, x := range obs.exited {
		pos, d := distance(x.id)
		visit := int(x.visit / time.Second)
		res.Events = append(res.Events, Event{Type: rules.OnExit, StoreID: x.id, DistanceM: d, VisitS: &visit})
		if pos >= 0 {
			events = append(events, fired{rules.OnExit, pos, d, 0})
		}
	}
	doc := obs.doc
	for _, id := range obs.tooFast {
		if pos, ok := snap.StoreByID(id); ok {
			for _, r := range snap.Candidates(pos, rules.OnEnter) {
				res.Explain = append(res.Explain, Explanation{RuleID: r.Rule.ID, StoreID: id, Result: ReasonSpeed})
			}
		}
	}
	if len(events) == 0 || doc == "" {
		e.count(ctx, now, res.Explain, opt, e.returnCmds(ctx, obs.returns)) // rules not fired for speed
		return res, nil
	}
	cust, err := decodeCustomer([]byte(doc))
	if err != nil {
		return nil, err
	}

	// Eligibility, rule by rule: the first reason a rule fails is the one
	// explained.
	var eligible []candidate
	late := now.Sub(ts) > e.cfg.LateFix
	for _, ev := range events {
		store := snap.Stores[ev.store]
		visit := visitEnv(obs, store.ID, ts)
		env := rules.AudienceEnv{Customer: cust, Store: store.Store, Context: pingContext(p.Context, ts, store.Location()), Visit: visit}
		for _, r := range snap.Candidates(ev.store, ev.on) {
			if ev.on == rules.OnDwell && r.Rule.Trigger.DwellS != ev.dwellS {
				continue
			}
			reason := ""
			switch {
			case late:
				reason = ReasonLate
			case !cust.Consent.Push:
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
	// One offer per ping: the highest priority wins; among equals, the
	// offer this customer is likeliest to use (the most redemptions of
	// rules sharing its tags), then the nearest store, then the rule id,
	// so the choice is the same on every replica.
	affinity := func(c candidate) int {
		n := 0
		for _, t := range c.rule.Rule.Tags {
			n += obs.affinity[t]
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
	if len(eligible) > 0 {
		if err := e.issue(ctx, now, p, cust, eligible, opt, res, e.returnCmds(ctx, obs.returns)); err != nil {
			return nil, err
		}
	} else {
		e.count(ctx, now, res.Explain, opt, e.returnCmds(ctx, obs.returns))
	}
	for i := range res.Explain {
		if res.Explain[i].Result == "" {
			res.Explain[i].Result = ReasonLower
		}
	}
	return res, nil
}

// visitEnv is the customer's visit history as audiences and templates see
// it, for one store.
func visitEnv(o observation, storeID string, ts time.Time) *rules.VisitEnv {
	days := func(ms int64) int {
		if ms == 0 {
			return -1
		}
		return int(ts.Sub(time.UnixMilli(ms)) / (24 * time.Hour))
	}
	sv := o.stores[storeID]
	return &rules.VisitEnv{
		StoreVisits: sv.count, Visits: o.visits, FirstAtStore: sv.count == 1,
		DaysSinceStore: days(sv.previousMs), DaysSinceAny: days(o.previousMs), OffersReceived: o.offers,
		Redeemed: o.redeemed, DaysSinceRedeemed: days(o.redeemedLastMs),
	}
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

type exit struct {
	id    string
	visit time.Duration
}

type dwell struct {
	id     string
	dwellS int
}

type observation struct {
	entered []string
	exited  []exit
	dwelt   []dwell
	tooFast []string // stores the customer would have entered but for speed
	doc     string
	// The customer's visit history: in all, and at each store with an event.
	visits     int
	previousMs int64
	stores     map[string]storeVisits
	offers     int
	// Redemptions: how many, the last one's time, and per rule tag.
	redeemed       int
	redeemedLastMs int64
	affinity       map[string]int
	// returns are funnel counts the visit causes: returns after an offer.
	returns []funnelCount
}

// funnelCount is one count in a rule's funnel of a day.
type funnelCount struct{ rule, field, day string }

type storeVisits struct {
	count      int
	previousMs int64
}

func parseObserve(raw []string) observation {
	var o observation
	i := 1
	n, _ := strconv.Atoi(raw[i])
	i++
	o.entered = append(o.entered, raw[i:i+n]...)
	slices.Sort(o.entered)
	i += n
	n, _ = strconv.Atoi(raw[i])
	i++
	for j := 0; j < n; j++ {
		ms, _ := strconv.ParseInt(raw[i+1], 10, 64)
		o.exited = append(o.exited, exit{id: raw[i], visit: time.Duration(ms) * time.Millisecond})
		i += 2
	}
	slices.SortFunc(o.exited, func(a, b exit) int { return cmp.Compare(a.id, b.id) })
	n, _ = strconv.Atoi(raw[i])
	i++
	for j := 0; j < n; j++ {
		t, _ := strconv.Atoi(raw[i+1])
		o.dwelt = append(o.dwelt, dwell{id: raw[i], dwellS: t})
		i += 2
	}
	n, _ = strconv.Atoi(raw[i])
	i++
	o.tooFast = append(o.tooFast, raw[i:i+n]...)
	i += n
	if i >= len(raw) {
		return o // nothing happened: no profile, no history
	}
	o.doc = raw[i]
	i++
	o.visits, _ = strconv.Atoi(raw[i])
	o.previousMs, _ = strconv.ParseInt(raw[i+1], 10, 64)
	n, _ = strconv.Atoi(raw[i+2])
	i += 3
	o.stores = make(map[string]storeVisits, n)
	for j := 0; j < n; j++ {
		c, _ := strconv.Atoi(raw[i+1])
		prev, _ := strconv.ParseInt(raw[i+2], 10, 64)
		o.stores[raw[i]] = storeVisits{count: c, previousMs: prev}
		i += 3
	}
	o.offers, _ = strconv.Atoi(raw[i])
	o.redeemed, _ = strconv.Atoi(raw[i+1])
	o.redeemedLastMs, _ = strconv.ParseInt(raw[i+2], 10, 64)
	n, _ = strconv.Atoi(raw[i+3])
	i += 4
	o.affinity = make(map[string]int, n)
	for j := 0; j < n; j++ {
		o.affinity[raw[i]], _ = strconv.Atoi(raw[i+1])
		i += 2
	}
	n, _ = strconv.Atoi(raw[i])
	i++
	for j := 0; j < n; j++ {
		o.returns = append(o.returns, funnelCount{rule: raw[i], field: raw[i+1], day: raw[i+2]})
		i += 3
	}
	return o
}

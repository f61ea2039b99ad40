package engine

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/nearcast/nearcast/geo"
	"github.com/nearcast/nearcast/rules"
	"github.com/redis/go-redis/v9"
)

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

// observe runs the observe step for a ping: presence at the stores near
// it, the customer's visits and call limits, all in the customer's slot.
// changed is false when the step changed nothing (no consent, no profile,
// or a fix older than the last); a revoked token or a call over its limit
// is an error.
func (e *Engine) observe(ctx context.Context, snap *rules.Snapshot, p Ping, ts, now time.Time, hits []geo.Hit, opt Options) (obs observation, changed bool, err error) {
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
		return obs, false, rules.RedisErr("presence", err)
	}
	switch raw[0] {
	case "ok":
		return parseObserve(raw), true, nil
	case "revoked", "rate_limited":
		return obs, false, admitted(raw)
	default:
		return obs, false, nil
	}
}

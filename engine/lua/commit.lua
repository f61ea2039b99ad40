local n = tonumber(ARGV[1])
local dry = ARGV[6] == '1'
local dayF, weekF = ARGV[7], ARGV[8]
local limit = tonumber(ARGV[11])
local today = ARGV[13]
local function used(f) return tonumber(redis.call('HGET', KEYS[1], f) or '0') end
local function over(count, cap) return cap > 0 and count >= cap end
local function mark(store, rule, group, variant)
  local m = ARGV[4] .. '|' .. rule .. '|' .. group .. '|' .. today
  if variant ~= '' then m = m .. '|' .. variant end
  redis.call('HSET', KEYS[3], 'offer:' .. store, m)
end
local function late()
  local deadline = tonumber(ARGV[14])
  if deadline == 0 then return false end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > deadline
end
-- A question after a visit (feedback.go) needs the customer's consent to
-- be asked, and is asked at most once per store per gap and so many times
-- a month (after the candidates: the gap in ms, the monthly limit, the
-- month's field).
local fbGap, fbMonthly, fbMonth = tonumber(ARGV[18 + n * 14] or '0'), tonumber(ARGV[19 + n * 14] or '0'), ARGV[20 + n * 14] or ''
local function askable(store)
  if redis.call('HGET', KEYS[5], 'fb') ~= '1' then return 'no_consent' end
  if over(used('fb|' .. fbMonth), fbMonthly) or tonumber(ARGV[4]) - used('fb|s:' .. store) < fbGap then return 'feedback_limit' end
  return nil
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
  local b = 16 + (i - 1) * 14
  local rule, store, exp, push = ARGV[b + 1], ARGV[b + 2], tonumber(ARGV[b + 3]), ARGV[b + 4]
  local perDay, perWeek, perTotal = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6]), tonumber(ARGV[b + 7])
  local side, holdout = ARGV[b + 8], ARGV[b + 9] == '1'
  -- A customer keeps the variant of a rule they were first given.
  -- ("!" before it: the one given is no longer in the rule, and this one
  -- takes its place.)
  local variant, given = ARGV[b + 12], nil
  if string.sub(variant, 1, 1) == '!' then variant = string.sub(variant, 2)
  elseif variant ~= '' and not holdout then given = redis.call('HGET', KEYS[1], rule .. '|v') end
  local reason = customerReason
  if reason then
  elseif over(used(rule .. '|' .. dayF), perDay) or over(used(rule .. '|' .. weekF), perWeek)
      or over(used(rule .. '|t'), perTotal) then reason = 'frequency_cap'
  elseif side ~= '' and side ~= 'r' and side ~= '?' then reason = side
  elseif ARGV[b + 14] ~= '' then reason = askable(store)
  end
  if reason then
    table.insert(res, reason)
  elseif given and given ~= variant then
    return {'variant', tostring(i), given}
  elseif side == '?' or (push == '' and not holdout) then
    return {'need', tostring(i)}
  elseif holdout then
    table.insert(res, 'holdout')
    if not dry then mark(store, rule, 'h', '') end
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
        elseif (string.match(f, '^fb|m%d+$') and f ~= 'fb|' .. fbMonth)
            or (string.sub(f, 1, 5) == 'fb|s:' and tonumber(ARGV[4]) - used(f) >= fbGap) then
          redis.call('HDEL', KEYS[1], f) -- a question's limits, past
        end
      end
    end
    for _, f in ipairs({'*|' .. dayF, '*|t', rule .. '|' .. dayF, rule .. '|' .. weekF, rule .. '|t'}) do
      redis.call('HINCRBY', KEYS[1], f, 1)
    end
    redis.call('HSET', KEYS[1], '*|last', ARGV[4])
    if variant ~= '' then redis.call('HSET', KEYS[1], rule .. '|v', variant) end
    if ARGV[b + 14] ~= '' then
      redis.call('HSET', KEYS[1], 'fb|s:' .. store, ARGV[4])
      redis.call('HINCRBY', KEYS[1], 'fb|' .. fbMonth, 1)
    end
    redis.call('PEXPIRE', KEYS[1], 400 * 86400000)
    redis.call('HSET', KEYS[4], 'customer_id', ARGV[2], 'device_id', ARGV[3], 'rule_id', rule,
      'store_id', store, 'issued_at', ARGV[4], 'expires_at', ARGV[b + 3], 'rule_tags', ARGV[b + 10],
      'only_store', ARGV[b + 11], 'push', push)
    if variant ~= '' then redis.call('HSET', KEYS[4], 'variant', variant, 'segment', ARGV[b + 13]) end
    if ARGV[b + 14] ~= '' then
      local scale, comment = string.match(ARGV[b + 14], '^(%a+)(.*)$')
      redis.call('HSET', KEYS[4], 'kind', 'feedback', 'scale', scale, 'comments', comment == ':c' and '1' or '0')
    end
    if ARGV[16] ~= '' then redis.call('HSET', KEYS[4], 'suspicion', ARGV[16]) end
    redis.call('PEXPIREAT', KEYS[4], exp + tonumber(ARGV[5]))
    redis.call('SADD', KEYS[2], ARGV[15])
    -- The set of codes lives as long as its longest-lived record: a later
    -- coupon that expires sooner does not shorten it.
    local setTTL = redis.call('PTTL', KEYS[2])
    local clock = redis.call('TIME') -- the clock the TTL counts on
    if setTTL < 0 or clock[1] * 1000 + math.floor(clock[2] / 1000) + setTTL < exp + tonumber(ARGV[5]) then
      redis.call('PEXPIREAT', KEYS[2], exp + tonumber(ARGV[5]))
    end
    mark(store, rule, 't', variant)
    -- (A nil variant, for an offer without variants, is left out.)
    journal(KEYS[6], ARGV[17 + n * 14] or '', {t = 'offer.issued', s = store, r = rule, c = ARGV[15], d = ARGV[3],
      at = ARGV[4], expires_at = ARGV[b + 3], variant = variant ~= '' and variant or nil})
    return res
  end
end
return res

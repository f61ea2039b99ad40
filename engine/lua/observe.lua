local ts = tonumber(ARGV[1])
local dry = ARGV[3] == '1'
-- A customer token revoked since it was minted (ARGV[13], 0: none) is
-- refused before anything is read or counted.
local gen = tonumber(ARGV[13])
if gen > 0 and gen < tonumber(redis.call('GET', KEYS[6]) or '1') then return {'revoked'} end
-- Call limits, per minute of the server's clock (lib/rate.lua): every
-- call counts, dry runs and customers without a profile or consent
-- included, so that no one can tell them apart; a call over a limit
-- changes nothing. The counts are kept in the presence while there is
-- one (read and written with it), else in the rate key.
local limC, limD = tonumber(ARGV[11]), tonumber(ARGV[12])
local limited = limC > 0 or limD > 0
local now = tonumber(ARGV[10])
local minute = math.floor(now / 60000)
-- Presence is kept only with location consent: withdrawing it deletes
-- presence (put_profile.lua), in the same slot, atomically. So a
-- customer with presence has consent, and only one without is asked.
local cur = redis.call('HGETALL', KEYS[1])
-- The call's counts (nil: no limits); takeover: counted in the rate key,
-- whose counts of the minute a presence written now takes over.
local rc, rd, fresh, takeover
if #cur == 0 then
  if limited then
    local wait
    wait, rc, rd = count_call(KEYS[5], now, limC, limD, ARGV[4], 120000)
    if wait then return {'rate_limited', string.format('%d', wait)} end
    fresh, takeover = true, true
  end
  if redis.call('HGET', KEYS[2], 'loc') ~= '1' then return {'no_consent'} end
end
-- The presence's fields (engine/keys.go): "#fix", the last call; a visit
-- open per store; "#d:<device>", each device's calls in the minute of
-- "#fix"; "#risk"; and "#ts", "#dev", "#os", which older versions kept
-- beside "#fix", and the next write folds into it. Few fields, for most
-- pings two: Redis hands each to Lua at a cost.
local present, visiting, prev, riskv, legacy = {}, false, nil, nil, nil
local dkey, pd, otherDevs = '#d:' .. ARGV[4], nil, nil
for i = 1, #cur, 2 do
  local f = cur[i]
  if f == '#fix' then prev = cur[i + 1]
  elseif f == dkey then pd = cur[i + 1]
  elseif string.sub(f, 1, 1) ~= '#' then
    local e, s, d = string.match(cur[i + 1], '^(%d+):(%d+):(%d+)$')
    -- (The entry and dwell as read, too: written back as they came.)
    if e then present[f], visiting = {tonumber(e), tonumber(s), tonumber(d), e, d}, true end
  elseif string.sub(f, 1, 3) == '#d:' then
    otherDevs = otherDevs or {}
    table.insert(otherDevs, f)
  elseif f == '#risk' then riskv = cur[i + 1]
  else
    legacy = legacy or {}
    legacy[f] = cur[i + 1]
  end
end
-- The last call (lib/presence.lua): the fix, the minute counted and the
-- customer's calls in it, when the key's TTL was set, the platform and
-- the device.
local pts, plat, plng, pacc, prep, pm, pc, pexp, lastOS, lastDev
if prev then
  pts, plat, plng, pacc, prep, pm, pc, pexp, lastOS, lastDev = string.match(prev, LAST_CALL)
  if not tonumber(pts) then -- as older versions wrote it
    pm, pc, pexp, lastOS, lastDev = nil, nil, nil, nil, nil
    pts, plat, plng, pacc, prep = string.match(prev, '^(%d+):([-%d.e]+):([-%d.e]+):?([%d.e]*):?(%d*)$')
  end
end
local last = tonumber(pts) or 0
if legacy then
  last = tonumber(pts or legacy['#ts']) or 0
  lastDev, lastOS = lastDev or legacy['#dev'], lastOS or legacy['#os']
end
lastOS = lastOS or ''
-- (next_counts of lib/rate.lua, inlined: a Lua call costs Redis some
-- 0.15 µs, and most pings come this way.)
-- (Numbers are written as the strings they came as where they can be:
-- Lua's number to string costs Redis some 0.2 µs each.)
local sameMinute = tonumber(pm) == minute
local minuteStr = sameMinute and pm or string.format('%d', minute)
if #cur > 0 and limited then
  if pc then
    rc, rd, fresh = 1, 1, not sameMinute
    if not fresh then rc, rd = (tonumber(pc) or 0) + 1, (tonumber(pd) or 0) + 1 end
    if (limC > 0 and rc > limC) or (limD > 0 and ARGV[4] ~= '' and rd > limD) then
      return {'rate_limited', string.format('%d', (minute + 1) * 60000 - now)}
    end
  else -- a presence an older version wrote: the rate key counts, till its next write
    local wait
    wait, rc, rd = count_call(KEYS[5], now, limC, limD, ARGV[4], 120000)
    if wait then return {'rate_limited', string.format('%d', wait)} end
    fresh, takeover = true, true
  end
end
-- The key's TTL: the visit timeout and up to a minute more, set at most
-- once a minute (of the server's clock), not at every fix.
local keptTtl = tonumber(pexp)
local refresh = not keptTtl or now - keptTtl >= 60000 or now < keptTtl
local ttlSet = refresh and ARGV[10] or pexp
-- writes and dels are what the presence's write sets and deletes: the
-- device's count (the customer's goes in "#fix"), and, a new minute, no
-- other device's; the older versions' fields.
local writes, dels = {}, otherDevs
if rc and ARGV[4] ~= '' then writes[1], writes[2] = dkey, rd end
if not fresh then dels = nil end
if takeover and not dry then -- the other devices' counts of the minute too
  local r = redis.call('HGETALL', KEYS[5])
  for i = 1, #r, 2 do
    if string.sub(r[i], 1, 2) == 'd:' and r[i] ~= 'd:' .. ARGV[4] then
      table.insert(writes, '#' .. r[i]); table.insert(writes, r[i + 1])
    end
  end
end
if legacy then
  dels = dels or {}
  for f in pairs(legacy) do table.insert(dels, f) end
end
-- A call that moves no presence (a dry run, a stale fix) still counts:
-- the last call keeps its fix, device and TTL, and takes the counts
-- (unless the rate key counted them).
if rc and not takeover and (dry or ts < last) then
  local keep = {unpack(writes)}
  table.insert(keep, '#fix')
  table.insert(keep, last_call(pts, plat, plng, pacc, prep, minuteStr, rc, pexp or '0', lastOS, lastDev or ''))
  redis.call('HSET', KEYS[1], unpack(keep))
  if dels then redis.call('HDEL', KEYS[1], unpack(dels)) end
end
if ts < last then return {'stale'} end
local speed = tonumber(ARGV[5])
local lat, lng = tonumber(ARGV[7]), tonumber(ARGV[8])
-- How far to trust the fix (lib/trust.lua), against the last one.
local acc = tonumber(ARGV[15])
local trust, signals, repeats, risk = assess(pts, plat, plng, pacc, prep, riskv, ts, lat, lng, acc, speed, ARGV[14])
if repeats == 0 then repeats = '0' end
if risk > 0.01 then
  table.insert(writes, '#risk'); table.insert(writes, string.format('%.3f:%d', risk, ts))
elseif riskv then
  dels = dels or {}
  table.insert(dels, '#risk')
end
local dev = ARGV[4]
local newDev = dev ~= '' and dev ~= lastDev
-- The common ping: near no store, no visit open, the device the last
-- one came from. It moves the last call and answers, in one line.
local held = tonumber(ARGV[9])
if held == 0 and not visiting and not newDev then
  local platform = ''
  if dev ~= '' then platform = lastOS end
  if not dry then
    -- (last_call of lib/presence.lua, inlined.) Without a device, the
    -- presence keeps the last one.
    local d = dev
    if dev == '' then d = lastDev or '' end
    local n = #writes
    writes[n + 1] = '#fix'
    writes[n + 2] = ARGV[1] .. ':' .. ARGV[7] .. ':' .. ARGV[8] .. ':' .. ARGV[15] .. ':' .. repeats .. ':' .. minuteStr .. ':' .. (rc or '0') .. ':' .. ttlSet .. ':' .. lastOS .. ':' .. d
    redis.call('HSET', KEYS[1], unpack(writes))
    if dels then redis.call('HDEL', KEYS[1], unpack(dels)) end
    if refresh then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 60000) end
  end
  return platform .. ' ' .. trust .. ' ' .. signals .. ' -1 '
end
local timeout = tonumber(ARGV[2])
if speed < 0 and pts and held > 0 then
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
-- Stores with a visit open after this fix, and the ms to the nearest
-- dwell threshold not passed yet (-1: none), for the app's pacing.
local open, nextDwell = {}, -1
dels = dels or {}
local i = 17
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
      table.insert(open, id)
      local t = thresholds[1]
      if t and (nextDwell < 0 or t * 1000 < nextDwell) then nextDwell = t * 1000 end
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
    table.insert(open, id)
    for _, t in ipairs(thresholds) do
      if t > done then
        local wait = p[1] + t * 1000 - ts
        if nextDwell < 0 or wait < nextDwell then nextDwell = wait end
        break
      end
    end
    local doneStr = p[5]
    if done ~= p[3] then doneStr = tostring(done) end
    table.insert(writes, id); table.insert(writes, p[4] .. ':' .. ARGV[1] .. ':' .. doneStr)
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
-- The device's platform, as registered ('' unknown), read when the
-- device differs from the last call's, so that a run of pings from one
-- device reads it once; registering or removing a device forgets the
-- last call's device (lib/presence.lua).
local platform, registered = '', false
if newDev then
  local d = redis.call('HGET', KEYS[7], dev)
  platform = d and string.match(d, '"platform":"(%a+)"') or ''
  registered = d ~= false
elseif dev ~= '' then
  platform = lastOS
end
if not dry then
  -- When each registered device was last seen, for the push to pick the
  -- one seen most recently: beside it in the devices hash ('#' is in no
  -- id), written when the last call's device changes.
  if registered then
    redis.call('HSET', KEYS[7], '#seen:' .. dev, ARGV[1])
  end
  local os, d = platform, dev
  if dev == '' then os, d = lastOS, lastDev or '' end -- the presence keeps the last device
  table.insert(writes, '#fix')
  table.insert(writes, last_call(ARGV[1], ARGV[7], ARGV[8], ARGV[15], repeats, minuteStr, rc or '0', ttlSet, os, d))
  redis.call('HSET', KEYS[1], unpack(writes))
  if #dels > 0 then redis.call('HDEL', KEYS[1], unpack(dels)) end
  if refresh then redis.call('PEXPIRE', KEYS[1], timeout + 60000) end
  -- The events out (lib/journal.lua), when anyone wants them.
  if ARGV[16] ~= '' and #entered + #dwelt + #exited > 0 then
    for _, id in ipairs(entered) do journal(KEYS[8], ARGV[16], {t = 'enter', s = id, d = dev, at = ARGV[1]}) end
    for k = 1, #dwelt, 2 do
      journal(KEYS[8], ARGV[16], {t = 'dwell', s = dwelt[k], d = dev, at = ARGV[1], dwell_s = tonumber(dwelt[k + 1])})
    end
    for k = 1, #exited, 2 do
      journal(KEYS[8], ARGV[16], {t = 'exit', s = exited[k], d = dev, at = ARGV[1], visit_s = math.floor(tonumber(exited[k + 1]) / 1000)})
    end
  end
end
-- Most pings change nothing: answered at once, in one line (a reply of
-- one string costs Redis less than a list).
if #entered == 0 and #exited == 0 and #dwelt == 0 and #tooFast == 0 then
  return platform .. ' ' .. trust .. ' ' .. signals .. ' ' .. nextDwell .. ' ' .. table.concat(open, ',')
end
local out = {'ok', platform, trust, signals, tostring(nextDwell), tostring(#open)}
for _, id in ipairs(open) do table.insert(out, id) end
table.insert(out, tostring(#entered))
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
local v = KEYS[3]
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
      local t, rule, group, day, variant = string.match(o, '^(%d+)|([^|]+)|([th])|(%d+)|?([^|]*)$')
      if t and ts > tonumber(t) and ts - tonumber(t) <= 7 * 86400000 then
        local f = 'returned_treated'
        if group == 'h' then f = 'returned_holdout' end
        local fields = {f, f .. '|s:' .. id}
        if variant ~= '' then
          table.insert(fields, f .. '|v:' .. variant); table.insert(fields, f .. '|v:' .. variant .. '|s:' .. id)
        end
        for _, x in ipairs(fields) do
          table.insert(returns, rule); table.insert(returns, x); table.insert(returns, day)
        end
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
table.insert(out, redis.call('HGET', KEYS[4], '*|t') or '0')
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
-- What the customer answered when asked about a visit (feedback.go), only
-- for one who ever answered: their last NPS score ('-1': none), when they
-- last answered, and their last score at each store of the fix.
local fbAt = redis.call('HGET', v, 'fb_at')
if fbAt then
  table.insert(out, redis.call('HGET', v, 'nps') or '-1'); table.insert(out, fbAt)
  local fbs = {}
  for id in pairs(seen) do
    local f = redis.call('HGET', v, 'fb:' .. id)
    if f then table.insert(fbs, id); table.insert(fbs, f) end
  end
  table.insert(out, tostring(#fbs / 2))
  for _, x in ipairs(fbs) do table.insert(out, x) end
end
return out

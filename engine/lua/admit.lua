local gen = tonumber(ARGV[1])
if gen > 0 and gen < tonumber(redis.call('GET', KEYS[1]) or '1') then return {'revoked'} end
local now, limC, limD, dev = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
-- A customer with presence has the call counts kept there (lib/rate.lua):
-- the customer's in the last call (lib/presence.lua), each device's in
-- "#d:<device>".
local dkey = '#d:' .. dev
local cur = redis.call('HMGET', KEYS[3], '#fix', dkey)
local ts, lat, lng, acc, rep, m, c, ttl, os, d = string.match(cur[1] or '', LAST_CALL)
if ts then
  local minute = math.floor(now / 60000)
  local over, rc, rd, fresh = next_counts(minute, m, c, cur[2], limC, limD, dev)
  if over then return {'rate_limited', string.format('%d', (minute + 1) * 60000 - now)} end
  local w = {'#fix', last_call(ts, lat, lng, acc, rep, minute, rc, ttl, os, d)}
  if dev ~= '' then w[3], w[4] = dkey, rd end
  redis.call('HSET', KEYS[3], unpack(w))
  if fresh then -- the other devices' counts of an older minute go
    local old = {}
    for _, f in ipairs(redis.call('HKEYS', KEYS[3])) do
      if string.sub(f, 1, 3) == '#d:' and f ~= dkey then table.insert(old, f) end
    end
    if #old > 0 then redis.call('HDEL', KEYS[3], unpack(old)) end
  end
  return {'ok'}
end
local wait = count_call(KEYS[2], now, limC, limD, dev, ARGV[6])
if wait then return {'rate_limited', string.format('%d', wait)} end
return {'ok'}

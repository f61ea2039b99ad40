local gen = tonumber(ARGV[1])
if gen > 0 and gen < tonumber(redis.call('GET', KEYS[1]) or '1') then return {'revoked'} end
local now, limC, limD, dev = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
-- A customer with presence has the call counts kept there (lib/rate.lua).
if redis.call('EXISTS', KEYS[3]) == 1 then
  local minute = math.floor(now / 60000)
  local dkey = '#d:' .. dev
  local cur = redis.call('HMGET', KEYS[3], '#m', '#c', dkey)
  local over, rc, rd, fresh = next_counts(minute, cur[1], cur[2], cur[3], limC, limD, dev)
  if over then return {'rate_limited', string.format('%d', (minute + 1) * 60000 - now)} end
  local counts = {'#c', rc}
  if dev ~= '' then counts[3], counts[4] = dkey, rd end
  if fresh then
    local n = #counts
    counts[n + 1], counts[n + 2] = '#m', minute
  end
  redis.call('HSET', KEYS[3], unpack(counts))
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

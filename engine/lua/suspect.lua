-- A suspicious fix, counted in the customer's fraud record: no
-- coordinate, only how many, why, from which device, and the coupons it
-- was issued. Nothing is written for a customer with no profile (erased
-- while the ping was in flight).
local k, day = KEYS[1], ARGV[2]
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
-- Days older than the record keeps go, once a day.
if redis.call('HGET', k, 'pruned') ~= day then
  for _, f in ipairs(redis.call('HKEYS', k)) do
    local d = string.match(f, '^%a:(%d%d%d%d%d%d%d%d)')
    if d and d < ARGV[3] then redis.call('HDEL', k, f) end
  end
  redis.call('HSET', k, 'pruned', day)
end
redis.call('HINCRBY', k, 'f:' .. day, 1)
for s in string.gmatch(ARGV[5], '[^,]+') do
  redis.call('HINCRBY', k, 's:' .. day .. ':' .. s, 1)
end
if ARGV[4] ~= '' then
  -- A client inventing device ids does not grow the record without bound.
  local f = 'v:' .. day .. ':' .. ARGV[4]
  if redis.call('HEXISTS', k, f) == 1 or redis.call('HLEN', k) < tonumber(ARGV[8]) then
    redis.call('HINCRBY', k, f, 1)
  end
end
if tonumber(ARGV[6]) > 0 then redis.call('HINCRBY', k, 'i:' .. day, ARGV[6]) end
redis.call('HSET', k, 'last', ARGV[1])
redis.call('PEXPIRE', k, ARGV[7])
return 1

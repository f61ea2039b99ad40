-- Call limits: a customer's app calls, and each device's, are counted
-- per minute of the server's clock (now, ms). A limit of 0 is none. A
-- call over a limit is not counted, and its answer is the ms until the
-- next minute. The counts live in the customer's presence while it has
-- one (the ping's step reads and writes it anyway: the customer's in its
-- last call, "#fix" (lib/presence.lua), each device's in "#d:<device>"),
-- else in the rate key ("m", "c", "d:<device>"), whose counts of the
-- minute a presence takes over when it is written.

-- next_counts: a call's counts in minute, from what is stored (m the
-- minute counted, c the customer's count, d the device's; dev "": no
-- device). Returns whether it is over a limit, the customer's and the
-- device's counts with it, and whether the minute starts afresh.
local function next_counts(minute, m, c, d, limC, limD, dev)
  local rc, rd = 1, 1
  local fresh = tonumber(m) ~= minute
  if not fresh then rc, rd = (tonumber(c) or 0) + 1, (tonumber(d) or 0) + 1 end
  return (limC > 0 and rc > limC) or (limD > 0 and dev ~= '' and rd > limD), rc, rd, fresh
end

-- count_call counts a call in the rate key, which the first call of a
-- minute starts afresh, to live ttl ms, so that a call of the minute
-- reads one field more and writes two, whatever the device. Returns the
-- wait when over a limit; else nil, and the counts.
local function count_call(rate_key, now, limC, limD, dev, ttl)
  local minute = math.floor(now / 60000)
  local dkey = 'd:' .. dev
  local cur = redis.call('HMGET', rate_key, 'm', 'c', dkey)
  local over, rc, rd, fresh = next_counts(minute, cur[1], cur[2], cur[3], limC, limD, dev)
  if over then return (minute + 1) * 60000 - now end
  local counts = {'c', rc}
  if dev ~= '' then counts[3], counts[4] = dkey, rd end
  if fresh then
    redis.call('DEL', rate_key)
    redis.call('HSET', rate_key, 'm', minute, unpack(counts))
    redis.call('PEXPIRE', rate_key, ttl)
  else
    redis.call('HSET', rate_key, unpack(counts))
  end
  return nil, rc, rd
end


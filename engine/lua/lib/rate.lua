-- count_call counts an app call against the customer's and the device's
-- limits of a minute of the server's clock (now, ms). The rate key holds
-- the minute it counts ("m") and that minute's counts: the customer's
-- ("c") and each device's ("d:<device>"; dev "": none). The first call of
-- a minute starts the key afresh, to live ttl ms, so that a call of the
-- minute reads one field more and writes two, whatever the device. A
-- limit of 0 is none. A call over a limit is not counted: the answer is
-- then the ms until the next minute, else nil.
local function count_call(rate_key, now, limC, limD, dev, ttl)
  local minute = math.floor(now / 60000)
  local dkey = 'd:' .. dev
  local cur = redis.call('HMGET', rate_key, 'm', 'c', dkey)
  local fresh = tonumber(cur[1]) ~= minute
  local rc, rd = 1, 1
  if not fresh then rc, rd = (tonumber(cur[2]) or 0) + 1, (tonumber(cur[3]) or 0) + 1 end
  if (limC > 0 and rc > limC) or (limD > 0 and dev ~= '' and rd > limD) then
    return (minute + 1) * 60000 - now
  end
  local counts = {'c', rc}
  if dev ~= '' then counts[3], counts[4] = dkey, rd end
  if fresh then
    redis.call('DEL', rate_key)
    redis.call('HSET', rate_key, 'm', minute, unpack(counts))
    redis.call('PEXPIRE', rate_key, ttl)
  else
    redis.call('HSET', rate_key, unpack(counts))
  end
  return nil
end

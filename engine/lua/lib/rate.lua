-- count_call counts an app call against the customer's and the device's
-- limits of a minute of the server's clock (now, ms), kept in the rate
-- key as "minute:count" under "c" and "d:<device>" (dev "" : none); a
-- limit of 0 is none. A call over a limit is not counted: the answer is
-- then the ms until the next minute, else nil, and the counters live ttl
-- ms more.
local function count_call(rate_key, now, limC, limD, dev, ttl)
  local minute = math.floor(now / 60000)
  local function bump(v)
    local m, c = string.match(v or '', '^(%d+):(%d+)$')
    if m and tonumber(m) == minute then return tonumber(c) + 1 end
    return 1
  end
  -- One read and one write of the hash, whatever the device.
  local dkey = 'd:' .. dev
  local cur = redis.call('HMGET', rate_key, 'c', dkey)
  local rc, rd = bump(cur[1]), 0
  if dev ~= '' then rd = bump(cur[2]) end
  if (limC > 0 and rc > limC) or (limD > 0 and dev ~= '' and rd > limD) then
    return (minute + 1) * 60000 - now
  end
  if dev ~= '' then
    redis.call('HSET', rate_key, 'c', minute .. ':' .. rc, dkey, minute .. ':' .. rd)
  else
    redis.call('HSET', rate_key, 'c', minute .. ':' .. rc)
  end
  redis.call('PEXPIRE', rate_key, ttl)
  return nil
end

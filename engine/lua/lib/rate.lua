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
  local rc = bump(redis.call('HGET', rate_key, 'c'))
  local rd = 0
  if dev ~= '' then rd = bump(redis.call('HGET', rate_key, 'd:' .. dev)) end
  if (limC > 0 and rc > limC) or (limD > 0 and dev ~= '' and rd > limD) then
    return (minute + 1) * 60000 - now
  end
  redis.call('HSET', rate_key, 'c', minute .. ':' .. rc)
  if dev ~= '' then redis.call('HSET', rate_key, 'd:' .. dev, minute .. ':' .. rd) end
  redis.call('PEXPIRE', rate_key, ttl)
  return nil
end

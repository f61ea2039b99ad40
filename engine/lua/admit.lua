local gen = tonumber(ARGV[1])
if gen > 0 and gen < tonumber(redis.call('GET', KEYS[1]) or '1') then return {'revoked'} end
local now = tonumber(ARGV[2])
local minute = math.floor(now / 60000)
local limC, limD, dev = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local function bump(v)
  local m, c = string.match(v or '', '^(%d+):(%d+)$')
  if m and tonumber(m) == minute then return tonumber(c) + 1 end
  return 1
end
local rc = bump(redis.call('HGET', KEYS[2], 'c'))
local rd = 0
if dev ~= '' then rd = bump(redis.call('HGET', KEYS[2], 'd:' .. dev)) end
if (limC > 0 and rc > limC) or (limD > 0 and dev ~= '' and rd > limD) then
  return {'rate_limited', string.format('%d', (minute + 1) * 60000 - now)}
end
redis.call('HSET', KEYS[2], 'c', minute .. ':' .. rc)
if dev ~= '' then redis.call('HSET', KEYS[2], 'd:' .. dev, minute .. ':' .. rd) end
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {'ok'}

local now = tonumber(ARGV[2])
local minute = math.floor(now / 60000)
local v = redis.call('GET', KEYS[1])
local m, c = string.match(v or '', '^(%d+):(%d+)$')
local n = 1
if m and tonumber(m) == minute then n = tonumber(c) + 1 end
if n > tonumber(ARGV[1]) then return (minute + 1) * 60000 - now end
redis.call('SET', KEYS[1], minute .. ':' .. n, 'PX', 120000)
return 0

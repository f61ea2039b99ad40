local function over(k, cap) return cap > 0 and tonumber(redis.call('GET', k) or '0') >= cap end
if over(KEYS[1], tonumber(ARGV[1])) then return 'store_cap' end
if over(KEYS[2], tonumber(ARGV[2])) then return 'budget' end
if ARGV[3] ~= '1' then
  redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], 2 * 86400000)
  redis.call('INCR', KEYS[2])
end
return 'r'

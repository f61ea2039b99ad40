local v = tonumber(redis.call('GET', KEYS[1]) or '1')
if v > 1 and redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return v

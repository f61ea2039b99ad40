local v = tonumber(redis.call('GET', KEYS[1]) or '1') + 1
redis.call('SET', KEYS[1], v, 'PX', ARGV[1])
return v

local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed == 0 then return 0 end
local v = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], v)
return v

local cur = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if cur ~= tonumber(ARGV[2]) then return -1 end
redis.call('HSET', KEYS[2], ARGV[1], cur + 1)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('RPUSH', KEYS[3], ARGV[3])
local v = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[4], v)
return cur + 1

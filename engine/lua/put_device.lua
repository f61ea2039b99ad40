local old = redis.call('HGET', KEYS[2], ARGV[1])
local created = old and 0 or 1
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, created, ''} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
forget_device(KEYS[3])
return {1, created, old or ''}

if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return false end
if ARGV[2] == 'a' then redis.call('XADD', KEYS[2], '*', 'push', ARGV[3]) end
local v = redis.call('HGET', KEYS[3], ARGV[1]) or ''
redis.call('HDEL', KEYS[3], ARGV[1])
return v

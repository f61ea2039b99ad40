local doc = redis.call('HGET', KEYS[1], ARGV[1])
if not doc then return false end
redis.call('HDEL', KEYS[1], ARGV[1], '#seen:' .. ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
forget_device(KEYS[3])
return doc

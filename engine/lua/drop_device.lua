local doc = redis.call('HGET', KEYS[1], ARGV[1])
if not doc then return 0 end
local ok, d = pcall(cjson.decode, doc)
if not ok or type(d) ~= 'table' or d.fcm_token ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1], '#seen:' .. ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
forget_device(KEYS[3])
return 1

local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, p in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'push', p)
  redis.call('ZREM', KEYS[1], p)
end
return #due

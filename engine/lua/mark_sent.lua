if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'sent_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'push')
end
return 1

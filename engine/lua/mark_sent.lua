if redis.call('EXISTS', KEYS[1]) == 1 then
  local r = redis.call('HMGET', KEYS[1], 'sent_at', 'rule_id', 'store_id')
  redis.call('HSET', KEYS[1], 'sent_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'push')
  if not r[1] then
    journal(KEYS[2], ARGV[2], {t = 'push.sent', c = ARGV[3], r = r[2], s = r[3], d = ARGV[4], at = ARGV[1]})
  end
end
return 1

if redis.call('HDEL', KEYS[1], 'push') == 1 then
  local r = redis.call('HMGET', KEYS[1], 'rule_id', 'store_id', 'device_id')
  journal(KEYS[2], ARGV[2], {t = 'push.failed', c = ARGV[3], r = r[1], s = r[2], d = r[3], at = ARGV[1], reason = ARGV[4]})
end
return 1

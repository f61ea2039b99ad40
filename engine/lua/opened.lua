if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local first = redis.call('HSETNX', KEYS[1], 'opened_at', ARGV[1])
if first == 1 and KEYS[2] ~= KEYS[1] then
  local r = redis.call('HMGET', KEYS[1], 'rule_id', 'store_id')
  journal(KEYS[2], ARGV[2], {t = 'coupon.opened', c = ARGV[3], r = r[1], s = r[2], at = ARGV[1]})
end
return first

if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
if redis.call('HGET', KEYS[1], 'kind') == 'feedback' then return {'feedback'} end
if redis.call('HGET', KEYS[1], 'redeemed_at') then return {'redeemed'} end
if tonumber(ARGV[1]) >= tonumber(redis.call('HGET', KEYS[1], 'expires_at')) then return {'expired'} end
local only = redis.call('HGET', KEYS[1], 'only_store')
if only and only ~= '' and only ~= ARGV[2] then return {'store:' .. only} end
-- A coupon issued to a suspicious fix: refused when the operator says so,
-- else counted in the customer's fraud record.
local suspicion = redis.call('HGET', KEYS[1], 'suspicion')
if suspicion and ARGV[3] == '1' then return {'suspicious', suspicion} end
redis.call('HSET', KEYS[1], 'redeemed_at', ARGV[1], 'redeemed_store', ARGV[2])
if KEYS[2] ~= KEYS[1] then
  local v = KEYS[2]
  redis.call('HINCRBY', v, 'redeemed', 1)
  redis.call('HSET', v, 'redeemed_last', ARGV[1])
  for tag in string.gmatch(redis.call('HGET', KEYS[1], 'rule_tags') or '', '[^,]+') do
    redis.call('HINCRBY', v, 'aff:' .. tag, 1)
  end
  if suspicion then
    redis.call('HINCRBY', KEYS[3], 'r:' .. ARGV[4], 1)
    redis.call('PEXPIRE', KEYS[3], ARGV[5])
  end
  local r = redis.call('HMGET', KEYS[1], 'rule_id', 'store_id')
  journal(KEYS[4], ARGV[6], {t = 'coupon.redeemed', c = ARGV[7], r = r[1], s = ARGV[2], issued_store = r[2], at = ARGV[1]})
end
local out = redis.call('HGETALL', KEYS[1])
table.insert(out, 1, 'ok')
return out

-- A customer's answer to a question after a visit (feedback.go): once,
-- within its window, on its scale. The answer goes into the question's
-- record (kept as long as a coupon's) and the customer's visit history
-- (their last score at the store, their last NPS, when they answered),
-- which audiences read; never a location.
local rec, visits = KEYS[1], KEYS[2]
if redis.call('EXISTS', rec) == 0 or redis.call('HGET', rec, 'kind') ~= 'feedback' then return {'missing'} end
if redis.call('HGET', rec, 'answered_at') then return {'answered'} end
local now = tonumber(ARGV[1])
if now >= tonumber(redis.call('HGET', rec, 'expires_at') or '0') then return {'late'} end
local scale = redis.call('HGET', rec, 'scale')
local score = tonumber(ARGV[2])
local lo, hi = 0, 10
if scale == 'csat' then lo, hi = 1, 5 end
if not score or score < lo or score > hi or score ~= math.floor(score) then return {'bad_score', tostring(lo), tostring(hi)} end
if ARGV[3] ~= '' and redis.call('HGET', rec, 'comments') ~= '1' then return {'no_comment'} end
local r = redis.call('HMGET', rec, 'rule_id', 'store_id')
redis.call('HSET', rec, 'answered_at', ARGV[1], 'score', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', rec, 'comment', ARGV[3]) end
redis.call('HSET', visits, 'fb:' .. r[2], ARGV[2], 'fb_at', ARGV[1])
if scale == 'nps' then redis.call('HSET', visits, 'nps', ARGV[2]) end
redis.call('PEXPIRE', visits, 400 * 86400000)
journal(KEYS[3], ARGV[4], {t = 'feedback.answered', c = ARGV[5], r = r[1], s = r[2], at = ARGV[1], score = score, scale = scale})
return {'ok', r[1] or '', r[2] or '', scale}

-- Their customer tokens stop working: the generation rises, and is kept
-- as long as a token lives (the one key left, naming nothing but the id).
local gen = tonumber(redis.call('GET', KEYS[9]) or '1') + 1
redis.call('SET', KEYS[9], gen, 'PX', ARGV[2])
local out = {tostring(redis.call('EXISTS', KEYS[1])), counted(KEYS[1])}
for _, doc in ipairs(redis.call('HVALS', KEYS[2])) do table.insert(out, doc) end
table.insert(out, '')
local unredeemed = {}
for _, code in ipairs(redis.call('SMEMBERS', KEYS[6])) do
  local k = ARGV[1] .. code
  local r = redis.call('HMGET', k, 'rule_id', 'store_id', 'issued_at', 'expires_at', 'redeemed_at', 'redeemed_store', 'only_store')
  if r[5] then
    table.insert(out, code)
    for i = 1, 7 do table.insert(out, r[i] or '') end
    table.insert(out, tostring(redis.call('PTTL', k)))
  else
    table.insert(unredeemed, code)
  end
  redis.call('DEL', k)
end
table.insert(out, '')
for _, code in ipairs(unredeemed) do table.insert(out, code) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[10], KEYS[11])
return out

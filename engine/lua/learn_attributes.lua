-- Counts in the catalog of attributes what profiles gained and lost.
-- Counts move by HINCRBY, so that writes counted in any order add up; a
-- count at 0 goes (a negative one is a loss counted before its gain).
-- A name the catalog does not have yet is learned only while it holds
-- fewer than ARGV[1] names, or when it is declared; one it does not learn
-- is left out of both hashes, gains and losses alike.
local cap, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local size = redis.call('HLEN', KEYS[1])
local skip, skipped = {}, 0
for i = 3, 2 + 2 * n, 2 do
  local name, d = ARGV[i], tonumber(ARGV[i + 1])
  if size >= cap and redis.call('HEXISTS', KEYS[1], name) == 0 and redis.call('HEXISTS', KEYS[3], name) == 0 then
    skip[name] = true
    skipped = skipped + 1
  elseif d ~= 0 then
    local v = redis.call('HINCRBY', KEYS[1], name, d)
    if v == 0 then
      redis.call('HDEL', KEYS[1], name)
      size = size - 1
    elseif v == d then
      size = size + 1
    end
  end
end
for i = 3 + 2 * n, #ARGV, 2 do
  local field, d = ARGV[i], tonumber(ARGV[i + 1])
  local name = string.sub(field, (string.find(field, ':', 1, true) or 0) + 1)
  if not skip[name] and redis.call('HINCRBY', KEYS[2], field, d) == 0 then
    redis.call('HDEL', KEYS[2], field)
  end
end
return skipped

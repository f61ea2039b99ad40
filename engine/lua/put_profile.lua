-- A profile replaces the one before, answering what that one's attributes
-- were counted with in the catalog of attributes (lib/counted.lua), so
-- that the caller counts what this write gains and loses. Withdrawn
-- location consent drops what was known of where the customer was.
local created = redis.call('EXISTS', KEYS[1]) == 0 and 1 or 0
local old = counted(KEYS[1])
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'loc', ARGV[2], 'push', ARGV[3], 'fb', ARGV[4] or '0')
redis.call('HDEL', KEYS[1], 'attrs')
if ARGV[2] ~= '1' then redis.call('DEL', KEYS[2]) end
return {created, old}

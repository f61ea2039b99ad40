-- A profile replaces the one before, answering the attributes that one
-- was counted with in the catalog of attributes, so that the caller counts
-- what this write gains and loses. Withdrawn location consent drops what
-- was known of where the customer was.
local created = redis.call('EXISTS', KEYS[1]) == 0 and 1 or 0
local old = redis.call('HGET', KEYS[1], 'attrs') or ''
redis.call('HSET', KEYS[1], 'doc', ARGV[1], 'loc', ARGV[2], 'push', ARGV[3], 'attrs', ARGV[4], 'fb', ARGV[5] or '0')
if ARGV[2] ~= '1' then redis.call('DEL', KEYS[2]) end
return {created, old}

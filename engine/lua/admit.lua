local gen = tonumber(ARGV[1])
if gen > 0 and gen < tonumber(redis.call('GET', KEYS[1]) or '1') then return {'revoked'} end
local wait = count_call(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6])
if wait then return {'rate_limited', string.format('%d', wait)} end
return {'ok'}

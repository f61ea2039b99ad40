-- The presence's "#fix" field is the customer's last call:
-- "ts:lat:lng:accuracy:repeats:minute:calls:ttl_set:platform:device",
-- the fix (its time, position, accuracy, and how many fixes in a row
-- gave that accuracy), the minute of the server's clock its call was
-- counted in and the customer's calls in that minute, when the key's TTL
-- was last set (ms), and the device the fix came from with its platform
-- as registered ("" unknown); the device last, for its id may hold ':'.
-- One field, so that the ping that changes nothing reads and writes
-- little. LAST_CALL reads it.
-- (A class that is not ':' reads faster than the digits' classes.)
local LAST_CALL = '^([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):(.*)$'

-- last_call writes it.
local function last_call(ts, lat, lng, acc, repeats, minute, calls, ttl_set, platform, device)
  return ts .. ':' .. lat .. ':' .. lng .. ':' .. acc .. ':' .. repeats .. ':' .. minute .. ':' .. calls .. ':' .. ttl_set .. ':' .. platform .. ':' .. device
end

-- forget_device has the next ping read its device's platform again (a
-- device registered, replaced or removed): the last call names none.
local function forget_device(presence)
  local c = redis.call('HGET', presence, '#fix')
  local head = c and string.match(c, '^(%d+:[-%d.e]+:[-%d.e]+:[%d.e]*:%d*:%d*:%d*:%d*):')
  if head then redis.call('HSET', presence, '#fix', head .. '::') end
  redis.call('HDEL', presence, '#dev') -- as older versions kept it
end

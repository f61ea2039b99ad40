-- counted tells what a profile's attributes are counted with in the
-- catalog of attributes: "a:" and the list profiles once kept beside
-- their document ("attrs"); "d:" and the document, from which they are
-- worked out since (a profile written since has "fb" and no "attrs");
-- "" for a profile from before the catalog (neither), never counted, or
-- none.
local function counted(profile)
  local f = redis.call('HMGET', profile, 'attrs', 'fb', 'doc')
  if f[1] then return 'a:' .. f[1] end
  if f[2] and f[3] then return 'd:' .. f[3] end
  return ''
end

-- The customer's journal of events out (engine/events.go): a step that
-- decides a fact others may want (an enter, an offer issued, a coupon
-- redeemed) appends it here, in the customer's own slot and in the same
-- step, so that no event exists for a decision that did not happen and
-- none is lost for one that did; the relay then moves it to the event
-- streams. wanted is '' (no one listens: nothing is written), '*' (every
-- type) or the types wanted between commas (",enter,offer.issued,").
-- A journal the relay cannot empty keeps its newest 1,000 facts.
local function journal(key, wanted, fact)
  if wanted == '' then return end
  if wanted ~= '*' and not string.find(wanted, ',' .. fact.t .. ',', 1, true) then return end
  if redis.call('RPUSH', key, cjson.encode(fact)) > 1000 then redis.call('LPOP', key) end
end

-- assess rates a fix by what it says against the customer's last one
-- (across devices) and what the server found in the request: trusted,
-- unverified or suspicious, with the signals behind it.
--   pts, plat, plng, pacc, prep: the last fix's time, position,
--          accuracy and repeats, as the presence's last call holds them
--          (lib/presence.lua; strings; pts nil: none)
--   risk:  the customer's risk, "score:ts" (nil: none), which halves
--          every ten minutes
--   given: the server's signals, comma-separated: mocked, zero_accuracy,
--          future_fix, old_fix, integrity_ok, integrity_<failure>
-- A strong signal (a mocked fix, travel no vehicle does, a failed
-- integrity check) makes the fix suspicious and adds 6 to the risk, so
-- that the customer's next fixes stay suspicious for some ten minutes.
-- Weak signals (an accuracy of exactly 0, coordinates frozen while
-- moving, a fix from the future, an accuracy repeated over many fixes
-- while moving, an old fix) count for this fix only: 3 of their weight
-- in one fix, with the risk, is suspicious. Fast travel (a train, a
-- motorway) is said, and weighs nothing. Trusted needs a passed
-- integrity check and nothing else. Returns trust, the signals
-- (comma-separated), the repeats of this accuracy and the new risk.
local function assess(pts, plat, plng, pacc, prep, risk, ts, lat, lng, acc, reported_speed, given)
  local signals, integrity_ok = {}, false
  if given ~= '' then
    for s in string.gmatch(given, '[^,]+') do
      if s == 'integrity_ok' then integrity_ok = true else signals[#signals + 1] = s end
    end
  end
  local repeats = 0
  do
    if pts then
      local dt = math.max((ts - tonumber(pts)) / 1000, 1)
      local dy = (lat - tonumber(plat)) * 111195
      local dx = (lng - tonumber(plng)) * 111195 * math.cos(lat * 0.017453292519943295)
      local d = math.sqrt(dx * dx + dy * dy)
      -- Beyond both fixes' error: the least the customer moved.
      local moved = d - acc - (tonumber(pacc) or 0)
      -- No vehicle does 360 km/h within 100 km, nor 1,080 km/h at all.
      if moved > 1000 and (moved > 300 * dt or (moved < 100000 and moved > 100 * dt)) then
        signals[#signals + 1] = 'impossible_travel'
      elseif moved > 1000 and moved > 50 * dt then
        signals[#signals + 1] = 'fast_travel'
      end
      if acc > 0 and tonumber(pacc) == acc and d > 5 then repeats = (tonumber(prep) or 0) + 1 end
      if repeats >= 8 then signals[#signals + 1] = 'constant_accuracy' end
      if d == 0 and reported_speed > 0.5 then signals[#signals + 1] = 'frozen_fix' end
    end
  end
  local score = 0
  if risk then
    local s, rts = string.match(risk, '^([%d.e]+):(%d+)$')
    if s then score = tonumber(s) * 0.5 ^ (math.max(ts - tonumber(rts), 0) / 600000) end
  end
  if #signals == 0 and score == 0 then
    return integrity_ok and 'trusted' or 'unverified', '', repeats, 0
  end
  -- The weak signals' weights, built only for a fix with signals (a
  -- table costs Redis a fraction of a µs, and most fixes have none).
  local TRUST_WEAK = {zero_accuracy = 2, frozen_fix = 2, future_fix = 2, constant_accuracy = 1, old_fix = 1, fast_travel = 0}
  local strong, weak = false, 0
  for _, s in ipairs(signals) do
    local w = TRUST_WEAK[s]
    if w then
      weak = weak + w
    else -- mocked, impossible_travel, integrity_<failure>
      strong, score = true, score + 6
    end
  end
  local trust = 'unverified'
  if strong or score + weak >= 3 then
    trust = 'suspicious'
  elseif integrity_ok and #signals == 0 and score < 1 then
    trust = 'trusted'
  end
  return trust, table.concat(signals, ','), repeats, score
end

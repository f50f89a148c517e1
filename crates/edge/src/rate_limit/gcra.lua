-- GCRA for one bucket, atomically (see gcra.rs for the algorithm and docs/adr/0004-rate-limiting.md).
-- Defines gcra(key, interval, burst, now); check.lua, loaded after this file in the same script,
-- calls it for each bucket of a request.
-- key       the bucket; holds the theoretical arrival time (TAT) in microseconds of Redis time
-- interval  emission interval in microseconds (period / rate)
-- burst     burst
-- now       Redis's own clock in microseconds, so that every replica agrees on "now"
-- Returns {allowed (1|0), retry_after_us, reset_after_us}.
local function gcra(key, interval, burst, now)
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now then
    tat = now
  end
  local new_tat = tat + interval
  local allow_at = new_tat - interval * burst
  if now < allow_at then
    return {0, allow_at - now, tat - now}
  end
  -- The key outlives its usefulness by nothing: once it expires, the bucket is full anyway.
  redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
  return {1, 0, new_tat - now}
end

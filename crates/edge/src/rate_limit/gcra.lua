-- GCRA for one key, atomically (see gcra.rs for the algorithm and docs/adr/0004-rate-limiting.md).
-- KEYS[1]  the bucket; holds the theoretical arrival time (TAT) in microseconds of Redis time
-- ARGV[1]  emission interval in microseconds (period / rate)
-- ARGV[2]  burst
-- Returns {allowed (1|0), retry_after_us, reset_after_us}.
-- Redis's own clock is used so that every replica agrees on "now".
if redis.replicate_commands then
  redis.replicate_commands()
end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if now < allow_at then
  return {0, allow_at - now, tat - now}
end
-- The key outlives its usefulness by nothing: once it expires, the bucket is full anyway.
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0, new_tat - now}

-- Every rate-limit decision of one request, optionally one deny-list lookup (a revoked token)
-- and optionally one counter read (a tenant's membership epoch), in one round trip (see
-- docs/adr/0004-rate-limiting.md). Runs after gcra.lua.
-- KEYS[1..n]  the buckets, in the order they are decided (anonymous, authenticated, write)
-- KEYS[n+1]   when ARGV[2] >= 0: a key whose existence refuses the request
-- then        optional, last: a counter to read (a missing key reads 0)
-- ARGV[1]     n
-- ARGV[2]     how many buckets are decided before the lookup; -1 when there is no lookup
-- ARGV[1+2i], ARGV[2+2i]  interval (microseconds) and burst of bucket i
-- Returns {listed (1|0), the counter (-1 when none was asked for), then allowed,
-- retry_after_us, reset_after_us of each bucket decided}.
-- Stops at the first refusal or at a listed key: what comes after it is neither decided nor
-- counted.
if redis.replicate_commands then
  redis.replicate_commands()
end
local n = tonumber(ARGV[1])
local gate = tonumber(ARGV[2])
local counter = n + 1
if gate >= 0 then
  counter = n + 2
end
local result = {0, -1}
if #KEYS >= counter then
  result[2] = tonumber(redis.call('GET', KEYS[counter]) or '0') or 0
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
for i = 1, n + 1 do
  if i - 1 == gate and redis.call('EXISTS', KEYS[n + 1]) == 1 then
    result[1] = 1
    return result
  end
  if i > n then
    break
  end
  local decision = gcra(KEYS[i], tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i]), now)
  result[#result + 1] = decision[1]
  result[#result + 1] = decision[2]
  result[#result + 1] = decision[3]
  if decision[1] == 0 then
    return result
  end
end
return result

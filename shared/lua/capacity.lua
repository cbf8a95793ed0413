-- Take one of a provider's concurrent-stream slots for a generation, in submission order, within its rate.
-- Interactive generations go first; a batch generation may only take a slot while `reserved` slots stay free
-- for interactive ones and none is waiting. Idempotent per generation: one that already holds a slot (a
-- redelivered task, a new attempt) keeps it. A waiting generation stays in line while its worker keeps calling
-- this (`alive`); a lost worker's place lapses, and a lost holder's slot expires.
-- KEYS: slots, waiting:i, waiting:b, alive, rate (shared/keys.py: provider_keys)
-- ARGV: generation_id, class ('i' interactive, 'b' batch), order (submission ms), max_concurrent (0 = no
--       limit), reserved, rpm (0 = no limit), slot_ttl_ms, alive_ttl_ms
-- Returns {granted (1|0), retry_after_ms (rate limit), slots held, place in line (0-based; -1 when granted now,
--          -2 when it held a slot already: its earlier run's, which the caller adopts only if its claim succeeds)}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = ARGV[1]
local limit = tonumber(ARGV[4])
local reserved = tonumber(ARGV[5])
local rpm = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('ZREM', KEYS[3], gone)
  redis.call('ZREM', KEYS[4], gone)
end
if redis.call('ZSCORE', KEYS[1], id) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[7]), id)
  return {1, 0, redis.call('ZCARD', KEYS[1]), -2}
end
local line = ARGV[2] == 'b' and 3 or 2  -- the KEYS index of this generation's waiting line
redis.call('ZADD', KEYS[line], 'NX', ARGV[3], id)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[8]), id)
local held = redis.call('ZCARD', KEYS[1])
local place = redis.call('ZRANK', KEYS[line], id)
if limit > 0 then
  local free = limit - held
  if ARGV[2] == 'b' then free = free - reserved - redis.call('ZCARD', KEYS[2]) end
  if place >= free then return {0, 0, held, place} end
elseif ARGV[2] == 'b' and redis.call('ZCARD', KEYS[2]) > 0 then
  return {0, 0, held, place}
elseif place > 0 then
  return {0, 0, held, place}  -- rate-limited only: one at a time, in order
end
if rpm > 0 then
  -- GCRA: one start per 60000/rpm ms on average, with bursts of up to rpm starts in a minute
  local interval = 60000 / rpm
  local tat = math.max(tonumber(redis.call('GET', KEYS[5]) or '0'), now)
  local ahead = tat - now
  if ahead > 60000 - interval then return {0, math.ceil(ahead - (60000 - interval)), held, place} end
  redis.call('SET', KEYS[5], tostring(tat + interval), 'PX', math.ceil(60000 + interval))
end
redis.call('ZREM', KEYS[line], id)
redis.call('ZREM', KEYS[4], id)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[7]), id)
return {1, 0, held + 1, -1}

-- A subscription's wake (PROTOCOL.md 7, 7.3), one compare-and-set step at a time:
--   'issue' generation rand wake_id snapshot lease_ms: a new wake when none is in flight and the generation is
--     still the one the caller read (generation + 1; lease from now when lease_ms > 0)
--   'attempt' wake_id rand snapshot lease_ms guard_ms: a webhook delivery of the wake starts, unless one is under
--     way (another process's, for guard_ms) or done: one more valid token, the snapshot it shows (what a
--     synchronous done acks), the lease from now
--   'delivered' wake_id | 'failed' wake_id delay_ms: the attempt's outcome (retry state, status)
--   'expire' wake_id: the wake's lease ran out: it ends (its tokens with it)
-- KEYS: state, links
-- Returns {outcome, generation}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'config_hash', 'deleted', 'generation', 'wake_id', 'lease_until', 'tokens',
  'attempting', 'delivered')
if not s[1] or s[2] == '1' then return {'gone', 0} end
local generation = tonumber(s[3] or '0')
local wake = s[4] or ''
local op = ARGV[1]
local function clear()
  redis.call('HSET', KEYS[1], 'wake_id', '', 'tokens', '', 'holder', '', 'lease_until', '', 'snapshot', '',
    'delivered', '', 'attempting', '')
end
if op == 'issue' then
  if wake ~= '' then return {'busy', generation} end
  if tonumber(ARGV[2]) ~= generation then return {'raced', generation} end
  generation = generation + 1
  local lease_ms = tonumber(ARGV[6])
  local lease = ''
  if lease_ms > 0 then lease = tostring(now + lease_ms) end
  redis.call('HSET', KEYS[1], 'generation', generation, 'wake_id', ARGV[4], 'tokens', redis.sha1hex(ARGV[3]),
    'holder', '', 'lease_until', lease, 'snapshot', ARGV[5], 'delivered', '0', 'attempting', '')
  return {'issued', generation}
end
if wake == '' or wake ~= ARGV[2] then return {'stale', generation} end
if op == 'attempt' then
  local busy = tonumber(s[7] or '')
  if s[8] == '1' or (busy and busy > now) then return {'busy', generation} end
  local tokens = s[6] or ''
  if #tokens > 40 * 15 then tokens = string.sub(tokens, -40 * 15) end  -- the last 16 attempts' tokens stay valid
  redis.call('HSET', KEYS[1], 'tokens', tokens .. redis.sha1hex(ARGV[3]), 'snapshot', ARGV[4],
    'lease_until', now + tonumber(ARGV[5]), 'attempting', now + tonumber(ARGV[6]))
elseif op == 'delivered' then
  redis.call('HSET', KEYS[1], 'delivered', '1', 'status', 'active', 'retries', '0', 'next_attempt', '',
    'attempting', '')
elseif op == 'failed' then
  redis.call('HINCRBY', KEYS[1], 'retries', 1)
  redis.call('HSET', KEYS[1], 'status', 'failed', 'next_attempt', now + tonumber(ARGV[3]), 'attempting', '')
elseif op == 'expire' then
  local lease = tonumber(s[5] or '')
  if not lease or lease > now then return {'kept', generation} end
  clear()
  return {'expired', generation}
end
return {'ok', generation}

-- Claim a generation for a new attempt (compare-and-set on the attempt number).
-- KEYS: record, events, reasoning, content, leases, queued, webhook outbox (unused), activity index
-- ARGV: expected_attempt, lease_ttl_ms, handover ('1' when the current attempt's own worker starts the next),
--       keep_text ('1' to continue the text rather than restart it), claim_token (unique per claim call), then
--       (type, data) pairs of events
-- The token makes a retry idempotent: the same call resent after a lost reply finds its own claim applied and
-- answers 'claimed' again, instead of 'busy' and an attempt owned by nobody until its lease expires (issue 18).
-- Returns {'claimed', seq} | {'missing'} | {'finished', status} | {'busy', lease_left_ms} | {'conflict', attempt}
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'status', 'attempt', 'seq', 'lease_until_ms', 'started_at', 'requeued', 'id',
  'claim_token')
if not st[1] then return {'missing'} end
if st[8] == ARGV[5] and st[1] == 'running' and st[2] == tostring(tonumber(ARGV[1]) + 1) then
  return {'claimed', st[3]}
end
if st[1] == 'completed' or st[1] == 'failed' or st[1] == 'cancelled' then return {'finished', st[1]} end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A live lease is respected unless the generation was handed back (requeued) or its owner hands over.
if st[1] == 'running' and tonumber(st[4] or '0') > now_ms and not st[6] and ARGV[3] ~= '1' then
  return {'busy', tostring(tonumber(st[4]) - now_ms)}
end
if st[2] ~= ARGV[1] then return {'conflict', st[2]} end
local attempt = tonumber(ARGV[1]) + 1
local seq = tonumber(st[3])
if ARGV[4] ~= '1' then redis.call('DEL', KEYS[3], KEYS[4]) end
for i = 6, #ARGV, 2 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], seq .. '-0', 't', ARGV[i], 'd', ARGV[i + 1])
end
-- the shard's activity index: a hub watching many streams reads only those that moved (shared/keys.py)
redis.call('XADD', KEYS[8], 'MAXLEN', '~', 10000, '*', 'k', KEYS[2])
local lease_until = now_ms + tonumber(ARGV[2])
redis.call('HSET', rec, 'status', 'running', 'attempt', attempt, 'seq', seq, 'lease_until_ms', lease_until,
  'claim_token', ARGV[5])
redis.call('HDEL', rec, 'requeued', 'restart_reason', 'tool_call')
if not st[5] then redis.call('HSET', rec, 'started_at', string.format('%.3f', now_ms / 1000)) end
redis.call('ZADD', KEYS[5], lease_until, st[7])
redis.call('ZREM', KEYS[6], st[7])
return {'claimed', seq}

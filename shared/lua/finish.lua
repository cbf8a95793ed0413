-- End the generation: append the last events (pending deltas, the final status, done), write the outcome,
-- and start the retention clock on every key of the generation. Idempotent like append.lua.
-- KEYS: record, events, reasoning, content, leases, queued, webhook outbox, activity index
-- ARGV: attempt, claim_token, expected_seq, retention_s, status, finish_reason, usage_json, error_json,
--       tool_calls_json, system_fingerprint, then (type, data, text_slot, text) per event, as in append.lua
-- Returns the last seq, -1 when fenced, -3 when this Redis lost part of the attempt's history (see append.lua).
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'attempt', 'status', 'seq', 'written_from', 'id', 'requeued', 'claim_token')
local n = (#ARGV - 10) / 4
local seq = tonumber(st[3])
local expected = tonumber(ARGV[3])
if st[1] ~= ARGV[1] then
  if st[1] and tonumber(st[1]) < tonumber(ARGV[1]) and (st[2] == 'queued' or st[2] == 'running') then return -3 end
  return -1
end
if st[7] ~= ARGV[2] then return -1 end
if st[2] == ARGV[5] and seq == expected + n and st[4] == ARGV[3] then return seq end
if st[2] ~= 'running' or st[6] then return -1 end
if seq < expected then return -3 end
if seq ~= expected then return -1 end
for i = 11, #ARGV, 4 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], seq .. '-0', 't', ARGV[i], 'd', ARGV[i + 1])
  local slot = tonumber(ARGV[i + 2])
  if slot == 1 or slot == 2 then redis.call('APPEND', KEYS[2 + slot], ARGV[i + 3]) end
end
-- the shard's activity index: a hub watching many streams reads only those that moved (shared/keys.py)
redis.call('XADD', KEYS[8], 'MAXLEN', '~', 10000, '*', 'k', KEYS[2])
if ARGV[9] ~= '' then redis.call('HSET', rec, 'tool_calls', ARGV[9]) end
if ARGV[10] ~= '' then redis.call('HSET', rec, 'system_fingerprint', ARGV[10]) end
local t = redis.call('TIME')
local now_s = string.format('%.3f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
-- text_bytes lets every read tell a whole text from one that Redis evicted (issue 12)
redis.call('HSET', rec, 'status', ARGV[5], 'seq', seq, 'written_from', ARGV[3], 'finished_at', now_s,
  'finish_reason', ARGV[6], 'usage', ARGV[7], 'error', ARGV[8],
  'text_bytes', redis.call('STRLEN', KEYS[3]) + redis.call('STRLEN', KEYS[4]))
redis.call('HDEL', rec, 'lease_until_ms', 'requeued', 'restart_reason')
redis.call('ZREM', KEYS[5], st[5])
redis.call('ZREM', KEYS[6], st[5])
-- the end's webhook event, in the same script: no end without its event (a generation created with webhooks on)
if KEYS[7] and redis.call('HEXISTS', rec, 'notify') == 1 then
  redis.call('ZADD', KEYS[7], 'NX', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 'evt_' .. st[5])
end
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return seq

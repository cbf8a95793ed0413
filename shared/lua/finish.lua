-- End the generation: append the last events (pending deltas, the final status, done), write the outcome,
-- and start the retention clock on every key of the generation. Idempotent like append.lua.
-- KEYS: record, events, reasoning, content, leases, queued
-- ARGV: attempt, expected_seq, retention_s, status, finish_reason, usage_json, error_json,
--       then (type, data, text_slot, text) per event, as in append.lua
-- Returns the last seq, or -1 when fenced.
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'attempt', 'status', 'seq', 'written_from', 'id', 'requeued')
local n = (#ARGV - 7) / 4
if st[1] ~= ARGV[1] then return -1 end
local seq = tonumber(st[3])
local expected = tonumber(ARGV[2])
if st[2] == ARGV[4] and seq == expected + n and st[4] == ARGV[2] then return seq end
if st[2] ~= 'running' or seq ~= expected or st[6] then return -1 end
for i = 8, #ARGV, 4 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], seq .. '-0', 't', ARGV[i], 'd', ARGV[i + 1])
  local slot = tonumber(ARGV[i + 2])
  if slot > 0 then redis.call('APPEND', KEYS[2 + slot], ARGV[i + 3]) end
end
local t = redis.call('TIME')
local now_s = string.format('%.3f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
-- text_bytes lets every read tell a whole text from one that Redis evicted (issue 12)
redis.call('HSET', rec, 'status', ARGV[4], 'seq', seq, 'written_from', ARGV[2], 'finished_at', now_s,
  'finish_reason', ARGV[5], 'usage', ARGV[6], 'error', ARGV[7],
  'text_bytes', redis.call('STRLEN', KEYS[3]) + redis.call('STRLEN', KEYS[4]))
redis.call('HDEL', rec, 'lease_until_ms', 'requeued', 'restart_reason')
redis.call('ZREM', KEYS[5], st[5])
redis.call('ZREM', KEYS[6], st[5])
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
return seq

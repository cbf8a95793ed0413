-- Append events for the attempt that owns the generation. Idempotent: a retry of a write that was applied
-- (its reply lost) finds seq advanced by exactly its event count from the same starting point, and succeeds
-- without writing again.
-- KEYS: record, events, reasoning, content
-- ARGV: attempt, expected_seq, then (type, data, text) triples; text is APPENDed for reasoning/content
-- Returns the last seq, -1 when fenced (another attempt owns it, it was handed back, or it ended), -2 when
-- cancel was requested.
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'attempt', 'status', 'seq', 'cancel', 'written_from', 'requeued')
local n = (#ARGV - 2) / 3
if st[1] ~= ARGV[1] or st[2] ~= 'running' or st[6] then return -1 end
local seq = tonumber(st[3])
local expected = tonumber(ARGV[2])
if seq == expected + n and st[5] == ARGV[2] then return seq end
if seq ~= expected then return -1 end
if st[4] then return -2 end
for i = 3, #ARGV, 3 do
  seq = seq + 1
  local kind = ARGV[i]
  redis.call('XADD', KEYS[2], seq .. '-0', 't', kind, 'd', ARGV[i + 1])
  if kind == 'reasoning' then
    redis.call('APPEND', KEYS[3], ARGV[i + 2])
  elseif kind == 'content' then
    redis.call('APPEND', KEYS[4], ARGV[i + 2])
  end
end
redis.call('HSET', rec, 'seq', seq, 'written_from', ARGV[2])
return seq

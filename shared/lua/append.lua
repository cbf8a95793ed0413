-- Append events for the attempt that owns the generation. Idempotent: a retry of a write that was applied
-- (its reply lost) finds seq advanced by exactly its event count from the same starting point, and succeeds
-- without writing again.
-- KEYS: record, events, reasoning, content
-- ARGV: attempt, expected_seq, then (type, data, text_slot, text) per event; text_slot 1 APPENDs text to the
--       reasoning key, 2 to the content key, 0 to neither (shared/events.py: DeltaKind; a new kind needs no
--       change here)
-- Returns the last seq, -1 when fenced (another attempt owns it, it was handed back, or it ended), -2 when
-- cancel was requested.
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'attempt', 'status', 'seq', 'cancel', 'written_from', 'requeued')
local n = (#ARGV - 2) / 4
if st[1] ~= ARGV[1] or st[2] ~= 'running' or st[6] then return -1 end
local seq = tonumber(st[3])
local expected = tonumber(ARGV[2])
if seq == expected + n and st[5] == ARGV[2] then return seq end
if seq ~= expected then return -1 end
if st[4] then return -2 end
for i = 3, #ARGV, 4 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], seq .. '-0', 't', ARGV[i], 'd', ARGV[i + 1])
  local slot = tonumber(ARGV[i + 2])
  if slot > 0 then redis.call('APPEND', KEYS[2 + slot], ARGV[i + 3]) end
end
redis.call('HSET', rec, 'seq', seq, 'written_from', ARGV[2])
return seq

-- Append events for the attempt that owns the generation. Idempotent: a retry of a write that was applied
-- (its reply lost) finds seq advanced by exactly its event count from the same starting point, and succeeds
-- without writing again.
-- KEYS: record, events, reasoning, content, activity index
-- ARGV: attempt, claim_token, expected_seq, then (type, data, text_slot, text) per event; text_slot 1 APPENDs
--       text to the reasoning key, 2 to the content key, 3 marks the record: this attempt began a tool call (a
--       continued attempt cannot take one over), 0 none of these (shared/events.py: DeltaKind)
-- Returns the last seq, -1 when fenced (another attempt owns it, it was handed back, or it ended), -2 when
-- cancel was requested, -3 when this Redis lost part of the attempt's history (a failover to a replica that had
-- not received the last writes, issue 13: the record is behind what this attempt wrote, or lost its claim).
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'attempt', 'status', 'seq', 'cancel', 'written_from', 'requeued', 'claim_token')
local n = (#ARGV - 3) / 4
local seq = tonumber(st[3])
local expected = tonumber(ARGV[3])
if st[1] ~= ARGV[1] then
  if st[1] and tonumber(st[1]) < tonumber(ARGV[1]) and (st[2] == 'queued' or st[2] == 'running') then return -3 end
  return -1
end
if st[2] ~= 'running' or st[6] or st[7] ~= ARGV[2] then return -1 end
if seq == expected + n and st[5] == ARGV[3] then return seq end
if seq < expected then return -3 end
if seq ~= expected then return -1 end
if st[4] then return -2 end
for i = 4, #ARGV, 4 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], seq .. '-0', 't', ARGV[i], 'd', ARGV[i + 1])
  local slot = tonumber(ARGV[i + 2])
  if slot == 1 or slot == 2 then redis.call('APPEND', KEYS[2 + slot], ARGV[i + 3])
  elseif slot == 3 then redis.call('HSET', rec, 'tool_call', '1') end
end
redis.call('HSET', rec, 'seq', seq, 'written_from', ARGV[3])
-- the shard's activity index: a hub watching many streams reads only those that moved (shared/keys.py)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', 10000, '*', 'k', KEYS[2])
return seq

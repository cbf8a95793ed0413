-- Claim a generation for a new attempt (compare-and-set on the attempt number).
-- KEYS: record, events, reasoning, content
-- ARGV: expected_attempt, lease_ttl_ms, then (type, data) pairs of events to append
-- Returns {'claimed', seq} | {'missing'} | {'finished', status} | {'busy', lease_left_ms} | {'conflict', attempt}
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'status', 'attempt', 'seq', 'lease_until_ms', 'started_at')
if not st[1] then return {'missing'} end
if st[1] == 'completed' or st[1] == 'failed' or st[1] == 'cancelled' then return {'finished', st[1]} end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if st[1] == 'running' and tonumber(st[4] or '0') > now_ms then
  return {'busy', tostring(tonumber(st[4]) - now_ms)}
end
if st[2] ~= ARGV[1] then return {'conflict', st[2]} end
local attempt = tonumber(ARGV[1]) + 1
local seq = tonumber(st[3])
for i = 3, #ARGV, 2 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], seq .. '-0', 't', ARGV[i], 'd', ARGV[i + 1])
end
redis.call('HSET', rec, 'status', 'running', 'attempt', attempt, 'seq', seq,
  'lease_until_ms', now_ms + tonumber(ARGV[2]))
if not st[5] then redis.call('HSET', rec, 'started_at', string.format('%.3f', now_ms / 1000)) end
-- A new attempt starts its text afresh (viewers get a 'restart' event in ARGV).
redis.call('DEL', KEYS[3], KEYS[4])
return {'claimed', seq}

-- Cancel a generation. Queued, or handed back and waiting for a worker (no owner to tell): it ends 'cancelled'
-- here and now (its task will find it finished and never start). Running: the cancel mark is set; the worker stops the stream and ends it (told at once by a message
-- on the cancel channel, and by its next write or heartbeat as a backstop). Ended: nothing changes.
-- KEYS: record, events, reasoning, content, leases, queued, webhook outbox, activity index
-- ARGV: retention_s, status_event_data, done_event_data
-- Returns {'cancelled'} | {'requested'} | {'ended', status} | {'missing'}
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'status', 'seq', 'id', 'requeued')
if not st[1] then return {'missing'} end
if st[1] == 'completed' or st[1] == 'failed' or st[1] == 'cancelled' then return {'ended', st[1]} end
if st[1] == 'running' and not st[4] then
  redis.call('HSET', rec, 'cancel', '1')
  return {'requested'}
end
local seq = tonumber(st[2])
redis.call('XADD', KEYS[2], (seq + 1) .. '-0', 't', 'status', 'd', ARGV[2])
redis.call('XADD', KEYS[2], (seq + 2) .. '-0', 't', 'done', 'd', ARGV[3])
-- the shard's activity index: a hub watching many streams reads only those that moved (shared/keys.py)
redis.call('XADD', KEYS[8], 'MAXLEN', '~', 10000, '*', 'k', KEYS[2])
local t = redis.call('TIME')
redis.call('HSET', rec, 'status', 'cancelled', 'seq', seq + 2, 'finish_reason', 'cancelled',
  'finished_at', string.format('%.3f', tonumber(t[1]) + tonumber(t[2]) / 1000000))
redis.call('HDEL', rec, 'requeued', 'restart_reason', 'lease_until_ms')
redis.call('ZREM', KEYS[5], st[3])
redis.call('ZREM', KEYS[6], st[3])
if KEYS[7] and redis.call('HEXISTS', rec, 'notify') == 1 then
  redis.call('ZADD', KEYS[7], 'NX', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 'evt_' .. st[3])
end
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
return {'cancelled'}

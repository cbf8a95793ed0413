-- Write an attempt's history again after this Redis lost part of it (issue 13): a failover promoted a replica
-- that had not received the attempt's last writes, so viewers may hold event ids this stream no longer has. The
-- attempt's worker still holds everything it wrote; the new events start right after the highest id it wrote
-- (so no viewer's resume point falls inside them) with a 'restart' that tells every viewer to drop its text,
-- then the whole text so far. The attempt owns the generation again (status, claim, lease) as before the loss.
-- KEYS: record, events, reasoning, content, leases, queued, webhook outbox (unused), activity index
-- ARGV: attempt, claim_token, highest_seq_written, lease_ttl_ms, reasoning, content, then (type, data) per event
-- Returns the last seq, or -1 when another attempt owns the generation here, it ended, or its record is gone.
local rec = KEYS[1]
local st = redis.call('HMGET', rec, 'attempt', 'status', 'seq', 'claim_token', 'id')
if not st[1] or not st[5] then return -1 end
local attempt = tonumber(ARGV[1])
if tonumber(st[1]) > attempt or (tonumber(st[1]) == attempt and st[4] ~= ARGV[2]) then return -1 end
if st[2] ~= 'queued' and st[2] ~= 'running' then return -1 end
local seq = math.max(tonumber(st[3]), tonumber(ARGV[3]))
for i = 7, #ARGV, 2 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], seq .. '-0', 't', ARGV[i], 'd', ARGV[i + 1])
end
-- the shard's activity index: a hub watching many streams reads only those that moved (shared/keys.py)
redis.call('XADD', KEYS[8], 'MAXLEN', '~', 10000, '*', 'k', KEYS[2])
redis.call('SET', KEYS[3], ARGV[5])
redis.call('SET', KEYS[4], ARGV[6])
local t = redis.call('TIME')
local lease_until = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[4])
redis.call('HSET', rec, 'status', 'running', 'attempt', attempt, 'claim_token', ARGV[2], 'seq', seq,
  'written_from', seq, 'lease_until_ms', lease_until)
redis.call('HDEL', rec, 'requeued', 'restart_reason')
redis.call('HSETNX', rec, 'started_at', string.format('%.3f', lease_until / 1000))
redis.call('HINCRBY', rec, 'restores', 1)
redis.call('ZADD', KEYS[5], lease_until, st[5])
redis.call('ZREM', KEYS[6], st[5])
return seq

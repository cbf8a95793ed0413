-- Take up to ARGV[1] webhook events due now from one shard's outbox, holding each for ARGV[2] ms (its score moves
-- past the attempt, so a deliverer that dies mid-attempt leaves it due again then: at least once).
-- KEYS: outbox
-- Returns {now_ms, event ids...}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), id) end
table.insert(ids, 1, tostring(now))
return ids

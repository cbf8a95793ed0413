-- Put an event in its shard's outbox once: a batch's end is noticed by several deliverers (its last lines, its
-- deadline); the first writes the event's mark and the outbox entry, the others change nothing.
-- KEYS: event hash, outbox
-- ARGV: event id, retention_s
-- Returns 1 when enqueued now, 0 when it already was
if redis.call('HSETNX', KEYS[1], 'enqueued', '1') == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('ZADD', KEYS[2], 'NX', 0, ARGV[1])
return 1

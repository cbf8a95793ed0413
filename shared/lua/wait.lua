-- A queued generation waits for its provider's capacity: refresh its place in the queued index (so the sweep for
-- lost task messages leaves it: its task is in a worker, waiting) and, the first time, tell its viewers why it
-- has not started (a 'status queued' event with a reason).
-- KEYS: record, events, queued, activity index (shared/keys.py wait_keys)
-- ARGV: generation_id, status event data (JSON), first ('1' to append the event)
-- Returns 1 while it still waits to start, 0 once it was claimed elsewhere, cancelled, ended or expired.
local st = redis.call('HMGET', KEYS[1], 'status', 'requeued', 'seq')
if not st[1] then return 0 end
if not (st[1] == 'queued' or (st[1] == 'running' and st[2])) then return 0 end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[3], 'XX', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
if ARGV[3] == '1' then
  local seq = tonumber(st[3]) + 1
  redis.call('XADD', KEYS[2], seq .. '-0', 't', 'status', 'd', ARGV[2])
  redis.call('HSET', KEYS[1], 'seq', seq)
  -- the shard's activity index: a hub watching many streams reads only those that moved (shared/keys.py)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', 10000, '*', 'k', KEYS[2])
end
return 1

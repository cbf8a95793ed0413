-- Hand running generations back for another attempt, either because their lease expired (the recovery sweep)
-- or because their own worker is shutting down. Each one handed back is marked 'requeued' and moves from the
-- leases index to the queued index (scored by this dispatch): it now waits for a worker like a new submission.
-- Waiting is not losing: the sweep never looks at it again as an expired lease, however long every worker stays
-- full, so one lost worker counts one loss (issue 12: a grace lease that expired unclaimed was handed back, and
-- counted, every sweep: 3 losses and 'failed' for one killed worker). If its task message is lost, the
-- queued-index sweep dispatches it again, as for any queued generation. The next claim clears the mark.
-- KEYS: leases, queued, then the record of each generation considered (every key the script touches is given
--       here, as Redis Cluster requires: issue 18)
-- ARGV: reason, mode ('expired': hand back those whose lease has expired; 'attempts': hand back the exact
--       attempts given), then per generation, in KEYS order: its id, and in 'attempts' mode its attempt
-- Returns the ids handed back.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reason = ARGV[1]
local by_attempt = ARGV[2] == 'attempts'
local step = by_attempt and 2 or 1
local out = {}
for i = 3, #KEYS do
  local at = 3 + (i - 3) * step
  local id = ARGV[at]
  local rec = KEYS[i]
  local st = redis.call('HMGET', rec, 'status', 'attempt', 'lease_until_ms', 'requeued')
  if st[1] ~= 'running' then
    redis.call('ZREM', KEYS[1], id)
  elseif st[4] then
    -- already handed back (a grace lease left by an older version): waiting, not lost again
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], 'NX', now_ms, id)
  elseif (by_attempt and st[2] == ARGV[at + 1]) or (not by_attempt and tonumber(st[3] or '0') <= now_ms) then
    redis.call('HSET', rec, 'requeued', '1', 'restart_reason', reason)
    redis.call('HDEL', rec, 'lease_until_ms')
    if reason == 'worker_lost' then redis.call('HINCRBY', rec, 'losses', 1) end
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZADD', KEYS[2], now_ms, id)
    out[#out + 1] = id
  end
end
return out

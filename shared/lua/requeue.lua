-- Hand running generations back for another attempt, either because their lease expired (the recovery sweep)
-- or because their own worker is shutting down. Each one handed back is marked 'requeued' with a grace lease,
-- so concurrent sweeps dispatch it once; the next claim clears the mark.
-- KEYS: leases, then the record of each generation considered (every key the script touches is given here,
--       as Redis Cluster requires: issue 18)
-- ARGV: grace_ms, reason, mode ('expired': hand back those whose lease has expired; 'attempts': hand back the
--       exact attempts given), then per generation, in KEYS order: its id, and in 'attempts' mode its attempt
-- Returns the ids handed back.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace_until = now_ms + tonumber(ARGV[1])
local reason = ARGV[2]
local by_attempt = ARGV[3] == 'attempts'
local step = by_attempt and 2 or 1
local out = {}
for i = 2, #KEYS do
  local at = 4 + (i - 2) * step
  local id = ARGV[at]
  local rec = KEYS[i]
  local st = redis.call('HMGET', rec, 'status', 'attempt', 'lease_until_ms', 'requeued')
  if st[1] ~= 'running' then
    redis.call('ZREM', KEYS[1], id)
  elseif (by_attempt and st[2] == ARGV[at + 1]) or (not by_attempt and tonumber(st[3] or '0') <= now_ms) then
    redis.call('HSET', rec, 'lease_until_ms', grace_until, 'requeued', '1', 'restart_reason', reason)
    if reason == 'worker_lost' then redis.call('HINCRBY', rec, 'losses', 1) end
    redis.call('ZADD', KEYS[1], grace_until, id)
    out[#out + 1] = id
  end
end
return out

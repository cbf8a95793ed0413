-- Hand running generations back for another attempt, either because their lease expired (the recovery sweep)
-- or because their own worker is shutting down. Each one handed back is marked 'requeued' with a grace lease,
-- so concurrent sweeps dispatch it once; the next claim clears the mark.
-- KEYS: leases
-- ARGV: record key prefix, grace_ms, reason, limit, then optional (generation_id, attempt) pairs to hand back;
--       with no pairs, every generation whose lease expired (up to limit) is handed back.
-- Returns the ids handed back.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local grace_until = now_ms + tonumber(ARGV[2])
local out = {}
local function hand_back(id, attempt)
  local rec = ARGV[1] .. id
  local st = redis.call('HMGET', rec, 'status', 'attempt', 'lease_until_ms', 'requeued')
  if st[1] ~= 'running' then
    redis.call('ZREM', KEYS[1], id)
    return
  end
  if attempt then
    if st[2] ~= attempt then return end
  elseif tonumber(st[3] or '0') > now_ms then
    return
  end
  redis.call('HSET', rec, 'lease_until_ms', grace_until, 'requeued', '1', 'restart_reason', ARGV[3])
  if ARGV[3] == 'worker_lost' then redis.call('HINCRBY', rec, 'losses', 1) end
  redis.call('ZADD', KEYS[1], grace_until, id)
  out[#out + 1] = id
end
if #ARGV > 4 then
  for i = 5, #ARGV, 2 do hand_back(ARGV[i], ARGV[i + 1]) end
else
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[4]))) do
    hand_back(id, nil)
  end
end
return out

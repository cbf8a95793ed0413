-- Heartbeat: extend the leases of the generations one worker process is running.
-- KEYS: the records; ARGV: lease_ttl_ms, then one attempt number per record.
-- Returns the 1-based indexes of the records this worker no longer owns (fenced or ended).
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local lost = {}
for i, rec in ipairs(KEYS) do
  local st = redis.call('HMGET', rec, 'attempt', 'status')
  if st[1] == ARGV[i + 1] and st[2] == 'running' then
    redis.call('HSET', rec, 'lease_until_ms', until_ms)
  else
    lost[#lost + 1] = i
  end
end
return lost

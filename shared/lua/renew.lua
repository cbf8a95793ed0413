-- Heartbeat: extend the leases of the generations one worker process is running.
-- KEYS: leases, then the records; ARGV: lease_ttl_ms, then one attempt number per record.
-- Returns {lost, cancel}: 1-based indexes of records this worker no longer owns (fenced or ended), and of
-- records whose cancel was requested (a backstop for a missed cancel message). A record whose attempt is older
-- than the worker's lost the claim in a failover (issue 13): it is not reported lost; the attempt's next write
-- writes its history again (restore.lua).
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local lost, cancel = {}, {}
for i = 2, #KEYS do
  local st = redis.call('HMGET', KEYS[i], 'attempt', 'status', 'cancel', 'id', 'requeued')
  if st[1] == ARGV[i] and st[2] == 'running' and not st[5] then
    redis.call('HSET', KEYS[i], 'lease_until_ms', until_ms)
    redis.call('ZADD', KEYS[1], 'XX', until_ms, st[4])
    if st[3] then cancel[#cancel + 1] = i - 1 end
  elseif not (st[1] and tonumber(st[1]) < tonumber(ARGV[i]) and (st[2] == 'queued' or st[2] == 'running')) then
    lost[#lost + 1] = i - 1
  end
end
return {lost, cancel}

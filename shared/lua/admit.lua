-- Admit one creating request of a client key against its per-minute and concurrency limits, and count it.
-- Nothing is counted when it is refused. Ended (or never created) generations leave the active set here, and
-- only when the set has reached the limit: below it admission costs a ZCARD, not a look at every member.
-- KEYS: rate (sorted set), active (sorted set)
-- ARGV: rpm, concurrent, member, record_key_prefix, active (1 = an interactive generation), active_ttl_s
-- Returns {'ok', 0} | {'rpm', retry_after_ms} | {'concurrent', live}
local rpm = tonumber(ARGV[1])
local conc = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {'rpm', tonumber(oldest[2]) + 60000 - now}
  end
end
local active = conc > 0 and ARGV[5] == '1'
if active and redis.call('ZCARD', KEYS[2]) >= conc then
  local members = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local live = 0
  for i = 1, #members, 2 do
    local st = redis.call('HGET', ARGV[4] .. members[i], 'status')
    -- A member with no record yet is being created (or its creation failed): counted for a minute.
    if st == 'completed' or st == 'failed' or st == 'cancelled' or (not st and tonumber(members[i + 1]) < now - 60000) then
      redis.call('ZREM', KEYS[2], members[i])
    else
      live = live + 1
    end
  end
  if live >= conc then return {'concurrent', live} end
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], 60000)
end
if active then
  redis.call('ZADD', KEYS[2], now, ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
return {'ok', 0}

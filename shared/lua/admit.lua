-- Admit one creating request of a client key against its per-minute and concurrency limits, and count it.
-- Nothing is counted when it is refused. When the active set has reached the limit the script answers 'full'
-- and the caller prunes ended generations from it (their records are other keys, in other slots: a script
-- may touch only the keys it is given, issue 18) and asks again; below the limit admission costs a ZCARD.
-- KEYS: rate (sorted set), active (sorted set)
-- ARGV: rpm, concurrent, member, active (1 = an interactive generation), active_ttl_s, rate_window_ms
-- Returns {'ok', 0} | {'rpm', retry_after_ms} | {'full', members}
local rpm = tonumber(ARGV[1])
local conc = tonumber(ARGV[2])
local window = tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {'rpm', tonumber(oldest[2]) + window - now}
  end
end
local active = conc > 0 and ARGV[4] == '1'
if active then
  local members = redis.call('ZCARD', KEYS[2])
  if members >= conc then return {'full', members} end
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
end
if active then
  redis.call('ZADD', KEYS[2], now, ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
return {'ok', 0}

-- Record one API process's viewer counts of several generations of one shard (one call per shard per refresh:
-- a process watching 10,000 generations refreshed them with 20,000 pipelined commands every 2 s, a quarter of
-- its CPU, issue 14).
-- KEYS: the generations' viewers hashes (shared/keys.py viewers_key, one slot)
-- ARGV: process id, entry expiry (ms, the writer's clock), key TTL (ms), then one count per key (0 removes the entry)
for i = 1, #KEYS do
  local count = ARGV[3 + i]
  if count == '0' then
    redis.call('HDEL', KEYS[i], ARGV[1])
  else
    redis.call('HSET', KEYS[i], ARGV[1], count .. ' ' .. ARGV[2])
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
  end
end
return #KEYS

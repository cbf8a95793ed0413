-- Create a Durable Streams subscription, or confirm it (PROTOCOL.md 6.2): same configuration hash -> 'exists',
-- another -> 'conflict'. Over a deleted one's tombstone it is created anew and keeps the tombstone's generation,
-- so a token of the old one stays fenced.
-- KEYS: state, links
-- ARGV: config hash, number of config fields n, n field/value pairs, then link triples (path, acked entry, type)
-- Returns 'created', 'exists' or 'conflict'.
local st = redis.call('HMGET', KEYS[1], 'config_hash', 'deleted', 'generation')
if st[1] and st[2] ~= '1' then
  if st[1] == ARGV[1] then return 'exists' end
  return 'conflict'
end
local generation = st[3] or '0'
redis.call('DEL', KEYS[1], KEYS[2])
local n = tonumber(ARGV[2])
local fields = {'config_hash', ARGV[1], 'generation', generation, 'status', 'active', 'retries', '0'}
for i = 3, 2 + n * 2 do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
for i = 3 + n * 2, #ARGV, 3 do
  local path, acked, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local cur = redis.call('HGET', KEYS[2], path)
  if not cur then
    redis.call('HSET', KEYS[2], path, kind .. ' ' .. acked)
  elseif not string.find(cur, kind, 1, true) then
    redis.call('HSET', KEYS[2], path, kind .. cur)
  end
end
return 'created'

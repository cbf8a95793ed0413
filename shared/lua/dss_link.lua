-- Add or remove a subscription's stream links (PROTOCOL.md 6.4). A link is '<types> <acked entry>', types 'e'
-- (explicit) and/or 'g' (glob); adding a type to a link keeps its cursor, removing one keeps the other.
-- KEYS: state, links
-- ARGV: 'add' type, then (path, acked entry) pairs | 'remove' type path | 'drop' path (its stream was deleted)
-- Returns 1, or 0 when there is no live subscription.
local st = redis.call('HMGET', KEYS[1], 'config_hash', 'deleted')
if not st[1] or st[2] == '1' then return 0 end
local op = ARGV[1]
if op == 'drop' then
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 1
end
local kind = ARGV[2]
if op == 'add' then
  for i = 3, #ARGV, 2 do
    local path, acked = ARGV[i], ARGV[i + 1]
    local cur = redis.call('HGET', KEYS[2], path)
    if not cur then
      redis.call('HSET', KEYS[2], path, kind .. ' ' .. acked)
    elseif not string.find(cur, kind, 1, true) then
      redis.call('HSET', KEYS[2], path, kind .. cur)
    end
  end
  return 1
end
local path = ARGV[3]
local cur = redis.call('HGET', KEYS[2], path)
if cur then
  local sp = string.find(cur, ' ', 1, true)
  local types = string.gsub(string.sub(cur, 1, sp - 1), kind, '')
  if types == '' then
    redis.call('HDEL', KEYS[2], path)
  else
    redis.call('HSET', KEYS[2], path, types .. string.sub(cur, sp))
  end
end
return 1

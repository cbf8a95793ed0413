-- A callback, ack or release of a subscription's wake (PROTOCOL.md 7.1-7.3), fenced: the token must be one of the
-- current wake's, and the request's generation and wake id the current ones; then acks move cursors (never back,
-- never past a stream's tail), and done (or a release) ends the wake while anything else extends its lease.
-- 'auto' is a webhook's synchronous done: no token, the wake id alone (the snapshot's tails as acks).
-- KEYS: state, links
-- ARGV: mode ('callback' | 'ack' | 'release' | 'auto'), token generation, token rand, generation, wake id,
--       done ('1' or ''), then ack triples (path, entry, tail entry)
-- Returns {'ok'} | {'missing'} | {'token'} | {'fenced'} | {'offset', why, path}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'config_hash', 'deleted', 'generation', 'wake_id', 'tokens', 'lease_ttl_ms')
if not s[1] or s[2] == '1' then return {'missing'} end
local generation, wake, tokens = s[3] or '0', s[4] or '', s[5] or ''
local mode = ARGV[1]
if mode ~= 'auto' then
  local digest = redis.sha1hex(ARGV[3])
  local valid = false
  for i = 1, #tokens, 40 do
    if string.sub(tokens, i, i + 39) == digest then valid = true end
  end
  if not valid or ARGV[2] ~= generation then
    local claimed = tonumber(ARGV[2])
    if claimed and claimed <= tonumber(generation) then return {'fenced'} end
    return {'token'}
  end
  if ARGV[4] ~= generation then return {'fenced'} end
end
if wake == '' or ARGV[5] ~= wake then return {'fenced'} end
local updates = {}
for i = 7, #ARGV, 3 do
  local path, entry, tail = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local cur = redis.call('HGET', KEYS[2], path)
  if not cur then return {'offset', 'not a stream of this subscription', path} end
  local sp = string.find(cur, ' ', 1, true)
  local acked = tonumber(string.sub(cur, sp + 1))
  if entry > tail then return {'offset', "past the stream's tail", path} end
  if entry >= acked then
    updates[#updates + 1] = path
    updates[#updates + 1] = string.sub(cur, 1, sp) .. ARGV[i + 1]
  elseif mode ~= 'auto' then  -- a synchronous done never moves a cursor a callback moved further
    return {'offset', 'behind the acknowledged offset', path}
  end
end
if #updates > 0 then redis.call('HSET', KEYS[2], unpack(updates)) end
if ARGV[6] == '1' or mode == 'release' then
  redis.call('HSET', KEYS[1], 'wake_id', '', 'tokens', '', 'holder', '', 'lease_until', '', 'snapshot', '',
    'delivered', '')
else
  redis.call('HSET', KEYS[1], 'lease_until', now + tonumber(s[6]))
end
return {'ok'}

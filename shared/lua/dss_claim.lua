-- Claim a pull-wake subscription (PROTOCOL.md 7.2): refused while another worker's lease lives; otherwise the
-- claimer holds the current wake (a new one when none is in flight) with a new token and a lease from now.
-- KEYS: state, links
-- ARGV: worker, token rand, pending ('1' when a linked stream is past its cursor), new wake id, snapshot
-- Returns {'claimed', holder, generation} | {'none'} | {'missing'} | {'type'} | {'ok', generation, wake id}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'config_hash', 'deleted', 'generation', 'wake_id', 'holder', 'lease_until',
  'lease_ttl_ms', 'type')
if not s[1] or s[2] == '1' then return {'missing'} end
if s[8] ~= 'pull-wake' then return {'type'} end
local generation = tonumber(s[3] or '0')
local wake, holder, lease = s[4] or '', s[5] or '', tonumber(s[6] or '')
if holder ~= '' and lease and lease > now then return {'claimed', holder, generation} end
if holder ~= '' then wake = '' end  -- the last holder's lease ran out: its wake ended
if ARGV[3] ~= '1' then
  if holder ~= '' then
    redis.call('HSET', KEYS[1], 'wake_id', '', 'tokens', '', 'holder', '', 'lease_until', '', 'snapshot', '')
  end
  return {'none'}
end
if wake == '' then
  generation = generation + 1
  wake = ARGV[4]
end
redis.call('HSET', KEYS[1], 'generation', generation, 'wake_id', wake, 'holder', ARGV[1],
  'tokens', redis.sha1hex(ARGV[2]), 'lease_until', now + tonumber(s[7]), 'snapshot', ARGV[5])
return {'ok', generation, wake}

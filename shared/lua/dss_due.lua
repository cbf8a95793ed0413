-- Settle a claimed member of the subscriptions' due set (claimed by webhook_claim.lua, which moved its score to
-- the held score): when nobody asked for it meanwhile, its next time replaces the hold (or it leaves the set);
-- when someone did (a lower score), the sooner of the two stays.
-- KEYS: due set
-- ARGV: member, held score, next time in ms ('' = nothing to do)
local cur = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '')
local nxt = tonumber(ARGV[3])
if cur == nil or cur == tonumber(ARGV[2]) then
  if nxt then redis.call('ZADD', KEYS[1], nxt, ARGV[1]) else redis.call('ZREM', KEYS[1], ARGV[1]) end
elseif nxt and nxt < cur then
  redis.call('ZADD', KEYS[1], nxt, ARGV[1])
end
return 1

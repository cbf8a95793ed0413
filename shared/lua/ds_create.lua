-- Create a durable stream (issue 17), or confirm one that exists with the same configuration: PUT is idempotent.
-- KEYS: meta, data, producers, forks, subs (shared/keys.py durable_keys), activity index
-- ARGV: 1 content type, 2 TTL s or '', 3 expires-at ms or '', 4 expires-at as sent or '', 5 closed ('1' or ''),
--       6 owner, 7 path, 8 fork configuration ('' or source path, offset and sub-offset as sent), 9 source id or '',
--       10 instance (random: a stream created again at the same path has other ETags), then (entry id, data) pairs:
--       the initial entries (a fork's copy of its source's, then the body)
-- Returns {outcome, tail, closed}: outcome 'created', 'exists' (same configuration), 'conflict', 'gone'
-- (soft-deleted: the path is blocked while forks of it live).
local meta = KEYS[1]
local cur = redis.call('HMGET', meta, 'ct', 'ttl', 'exp', 'closed', 'fork', 'deleted', 'tail')
if cur[1] then
  if cur[6] == '1' then return {'gone', 0, ''} end
  local same = cur[1] == ARGV[1] and (cur[2] or '') == ARGV[2] and (cur[3] or '') == ARGV[3]
    and (cur[4] or '') == ARGV[5] and (cur[5] or '') == ARGV[8]
  return {same and 'exists' or 'conflict', tonumber(cur[7]), cur[4] or ''}
end
local tail = 0
for i = 11, #ARGV, 2 do
  tail = tonumber(ARGV[i])  -- an entry id (the data key is KEYS[2])
  redis.call('XADD', KEYS[2], tail .. '-0', 't', 'data', 'd', ARGV[i + 1])
end
redis.call('HSET', meta, 'ct', ARGV[1], 'ttl', ARGV[2], 'exp', ARGV[3], 'exp_at', ARGV[4], 'closed', ARGV[5],
  'owner', ARGV[6], 'path', ARGV[7], 'fork', ARGV[8], 'fork_id', ARGV[9], 'instance', ARGV[10], 'tail', tail,
  'seq', '')
if ARGV[5] == '1' then redis.call('XADD', KEYS[2], (tail + 1) .. '-0', 't', 'done', 'd', '') end
-- the shard's activity index: a hub watching many streams reads only those that moved (shared/keys.py)
redis.call('XADD', KEYS[6], 'MAXLEN', '~', 10000, '*', 'k', KEYS[2])
for i = 1, 5 do  -- the stream's own keys, not the shard's activity index
  if ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]) * 1000)
  elseif ARGV[3] ~= '' then redis.call('PEXPIREAT', KEYS[i], ARGV[3]) end
end
return {'created', tail, ARGV[5]}

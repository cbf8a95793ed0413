-- Open a durable stream for a read (issue 17): its metadata and, when asked, the entries after a point. A read
-- slides the stream's TTL (HEAD does not); a soft-deleted stream answers its metadata only.
-- KEYS: meta, data, producers, forks
-- ARGV: 1 slide ('1' or ''), 2 read after this entry id ('' for none), 3 most entries
-- Returns {} when there is no such stream, else {metadata (fields below, in order), entries}
local m = redis.call('HMGET', KEYS[1], 'ct', 'ttl', 'exp', 'exp_at', 'closed', 'deleted', 'tail', 'instance',
  'fork_id')
if not m[1] then return {} end
if m[6] == '1' then return {m, {}} end
if ARGV[1] == '1' and m[2] ~= '' then
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], tonumber(m[2]) * 1000) end
end
local entries = {}
local after = ARGV[2]  -- an entry id (the data key is KEYS[2])
if after ~= '' then
  entries = redis.call('XRANGE', KEYS[2], '(' .. after .. '-0', '+', 'COUNT', tonumber(ARGV[3]))
end
return {m, entries}

-- Add or remove a fork in its source's set of forks (issue 17). Removing the last fork of a soft-deleted source
-- deletes the source's tombstone and returns the source's own source id (the caller continues up the chain).
-- KEYS: the source's meta, data, producers, forks
-- ARGV: 1 'add' or 'remove', 2 the fork's id
-- Returns 1 (added), 0 (no such source), or for 'remove' the next source id to release ('' for none)
if ARGV[1] == 'add' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  redis.call('SADD', KEYS[4], ARGV[2])
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[4], ttl) end
  return 1
end
redis.call('SREM', KEYS[4], ARGV[2])
if redis.call('SCARD', KEYS[4]) == 0 and redis.call('HGET', KEYS[1], 'deleted') == '1' then
  local up = redis.call('HGET', KEYS[1], 'fork_id') or ''
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return up
end
return ''

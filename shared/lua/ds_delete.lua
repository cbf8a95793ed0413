-- Delete a durable stream (issue 17). With live forks it is soft-deleted: its data goes (forks hold their own
-- copy) and its metadata stays as a tombstone that answers 410 and blocks the path until the last fork goes.
-- KEYS: meta, data, producers, forks
-- Returns {'missing'}, {'gone'} (already soft-deleted), {'soft'} or {'deleted', source id of a fork or ''}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local m = redis.call('HMGET', KEYS[1], 'deleted', 'fork_id')
if m[1] == '1' then return {'gone'} end
if redis.call('SCARD', KEYS[4]) > 0 then
  redis.call('HSET', KEYS[1], 'deleted', '1')
  redis.call('DEL', KEYS[2], KEYS[3])
  return {'soft'}
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return {'deleted', m[2] or ''}

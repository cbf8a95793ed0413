-- Add one batch of deltas to the deployment's metrics hash, at most once per batch id: a retry of the same
-- batch after a lost reply (redis-py resends on a connection error, the caller resends what failed) is not
-- counted twice (issue 18).
-- KEYS: metrics hash, the batch's marker (same hash slot)
-- ARGV: marker_ttl_s, then (field, amount) pairs
-- Returns 1 when applied, 0 when this batch had been applied already.
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 0 end
for i = 2, #ARGV, 2 do
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 1

-- Append to a durable stream and/or close it (issue 17), with the protocol's checks in its order of precedence:
-- closed, content type, idempotent producer (stale epoch, duplicate, gap), Stream-Seq. One script, so a producer's
-- state and the data it wrote change together (no crash window can re-accept a retry).
-- KEYS: meta, data, producers, forks, subs (shared/keys.py durable_keys), activity index
-- ARGV: 1 request's content type ('' for a close-only request), 2 Stream-Seq or '', 3 close ('1' or ''),
--       4 producer id or '', 5 producer epoch, 6 producer seq, then the data of each entry to append
-- Returns {outcome, tail, closed ('1' or ''), a, b}. Outcomes: 'appended'; 'duplicate' (a, b: epoch and the highest
-- seq accepted); 'closed_again' (close-only on a closed stream); 'closed'; 'content_type'; 'stale_epoch' (a: the
-- current epoch); 'epoch_seq' (a new epoch must start at seq 0); 'gap' (a: expected seq); 'seq'; 'missing'; 'gone'.
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'ct', 'ttl', 'exp', 'closed', 'deleted', 'tail', 'seq', 'closed_by')
if not m[1] then return {'missing', 0, '', '', ''} end
if m[5] == '1' then return {'gone', 0, '', '', ''} end
local tail = tonumber(m[6])
local pid, epoch, pseq = ARGV[4], ARGV[5], ARGV[6]
local n = #ARGV - 6

local function slide()
  for i = 1, 5 do  -- the stream's own keys, not the shard's activity index
    if m[2] ~= '' then redis.call('PEXPIRE', KEYS[i], tonumber(m[2]) * 1000)
    elseif m[3] ~= '' then redis.call('PEXPIREAT', KEYS[i], m[3]) end
  end
end

-- byte-wise "a > b" (Lua's string comparison follows the server's collation locale)
local function after(a, b)
  local len = math.min(#a, #b)
  for i = 1, len do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

if m[4] == '1' then
  if pid ~= '' and m[8] == pid .. '\n' .. epoch .. '\n' .. pseq then return {'duplicate', tail, '1', epoch, pseq} end
  if n == 0 then
    slide()
    return {'closed_again', tail, '1', '', ''}
  end
  return {'closed', tail, '1', '', ''}
end
if n > 0 and ARGV[1] ~= m[1] then return {'content_type', tail, '', '', ''} end
if pid ~= '' then
  local st = redis.call('HGET', KEYS[3], pid)
  local e, s = tonumber(epoch), tonumber(pseq)
  if st then
    local se, ss = string.match(st, '^(%d+) (%d+)$')
    if e < tonumber(se) then return {'stale_epoch', tail, '', se, ''} end
    if e == tonumber(se) then
      if s <= tonumber(ss) then return {'duplicate', tail, '', se, ss} end
      if s ~= tonumber(ss) + 1 then return {'gap', tail, '', string.format('%d', tonumber(ss) + 1), pseq} end
    elseif s ~= 0 then
      return {'epoch_seq', tail, '', '', ''}
    end
  elseif s ~= 0 then
    if e > 0 then return {'epoch_seq', tail, '', '', ''} end
    return {'gap', tail, '', '0', pseq}
  end
end
if ARGV[2] ~= '' and m[7] ~= '' and not after(ARGV[2], m[7]) then return {'seq', tail, '', '', ''} end

for i = 7, #ARGV do
  tail = tail + 1
  redis.call('XADD', KEYS[2], tail .. '-0', 't', 'data', 'd', ARGV[i])
end
redis.call('HSET', meta, 'tail', tail)
if ARGV[2] ~= '' then redis.call('HSET', meta, 'seq', ARGV[2]) end
if pid ~= '' then redis.call('HSET', KEYS[3], pid, epoch .. ' ' .. pseq) end
local closed = ''
if ARGV[3] == '1' then
  closed = '1'
  redis.call('HSET', meta, 'closed', '1', 'closed_by', pid ~= '' and (pid .. '\n' .. epoch .. '\n' .. pseq) or '')
  redis.call('XADD', KEYS[2], (tail + 1) .. '-0', 't', 'done', 'd', '')
end
-- the shard's activity index: a hub watching many streams reads only those that moved (shared/keys.py)
redis.call('XADD', KEYS[6], 'MAXLEN', '~', 10000, '*', 'k', KEYS[2])
slide()
-- and how many subscriptions are linked to the stream (PROTOCOL.md 7: the caller wakes them)
return {'appended', tail, closed, epoch, pseq, redis.call('SCARD', KEYS[5])}

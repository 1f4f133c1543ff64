"""The task store's Lua scripts: each change to a task record, its in-flight index and its
tenant's in-flight set happens atomically in Redis, so no crash leaves them disagreeing."""

# A record is created only where none exists (never over an answer, nor over another
# attempt's record). KEYS[1] the record, KEYS[2] the in-flight index, KEYS[3] the tenant's
# in-flight set, KEYS[4] the broker list its message goes to; ARGV[1] ttl, ARGV[2] task id,
# ARGV[3] submitted_at, ARGV[4] '1' to enter the in-flight index (a queued task) else '0' (a
# record born finished: its tenant slot is given back), ARGV[5] the task's broker message ('':
# none, the caller publishes it); then field, value pairs. The record is written first, so a
# Redis at maxmemory refuses the script before anything is written. Returns 1 when created.
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
else
  redis.call('ZREM', KEYS[3], ARGV[2])
end
if ARGV[5] ~= '' then
  redis.call('LPUSH', KEYS[4], ARGV[5])
end
return 1
"""

# A delivery runs a task only under a claim: queued -> running, claimed by this holder (a
# worker process). A task running under a holder whose lease lapsed (dead: its beat in
# ARGV[5]'s sorted set is older than ARGV[6]) may be claimed again; one running under a live
# holder, this one included, is not. Finished or expired records are never claimed. The ids
# claimed are announced on the progress channel and returned.
CLAIM = """
local function leased(holder, task_id)
  for _, held in ipairs(redis.call('HVALS', ARGV[7] .. holder)) do
    if held == task_id then return true end
  end
  return false
end
local claimed = {}
for i, key in ipairs(KEYS) do
  local task_id = ARGV[7 + i]
  local state = redis.call('HMGET', key, 'status', 'claimed_by')
  local status, owner = state[1], state[2]
  local take = status == 'queued'
  if status == 'running' and owner ~= ARGV[4] then
    if not owner or owner == '' then
      take = true
    else
      local beat = redis.call('ZSCORE', ARGV[5], owner)
      take = (not beat) or tonumber(beat) < tonumber(ARGV[6]) or not leased(owner, task_id)
    end
  end
  if take then
    redis.call('HSET', key, 'status', 'running', 'picked_at', ARGV[1], 'batch_size', ARGV[2],
               'claimed_by', ARGV[4])
    table.insert(claimed, task_id)
  end
end
if #claimed > 0 then
  redis.call('PUBLISH', ARGV[3], table.concat(claimed, ' '))
end
return claimed
"""

# KEYS[2] is the in-flight index the task leaves; ARGV[7] + the record's tenant is its
# tenant's in-flight set. KEYS[3], KEYS[4] (a session's hash and turn list) are given for a
# session's task: its turns land with the answer, once, and only in order (an older turn that
# lands after a newer one, having been waited for in vain, is answered but not appended). A
# session that expired meanwhile is not brought back (its next turn starts it afresh), and one
# whose keys hold something else is left alone: only this task's turn is lost.
# Counts a finished task's usage into its tenant's day and month hashes (ARGV[8]: the usage
# key prefix, "" = not counted; ARGV[9], ARGV[10]: the UTC day and month; ARGV[11]: how long
# they are kept; ARGV[12]: the model; ARGV[13]: the counts, JSON; ARGV[14]: the set of the
# month's tenants), each count also under key:<owner>: and model:<model>:
# (``batchgate.usage_store``).
COUNT_USAGE = """
local function count_usage(tenant, owner)
  if ARGV[8] == '' then
    return
  end
  local counts = cjson.decode(ARGV[13])
  for _, period in ipairs({ARGV[9], ARGV[10]}) do
    local key = ARGV[8] .. tenant .. ':' .. period
    for name, n in pairs(counts) do
      redis.call('HINCRBY', key, name, n)
      redis.call('HINCRBY', key, 'key:' .. owner .. ':' .. name, n)
      redis.call('HINCRBY', key, 'model:' .. ARGV[12] .. ':' .. name, n)
    end
    redis.call('EXPIRE', key, ARGV[11])
  end
  redis.call('SADD', ARGV[14], tenant)
  redis.call('EXPIRE', ARGV[14], ARGV[11])
end
"""

FINISH = (
    COUNT_USAGE
    + """
redis.call('ZREM', KEYS[2], ARGV[6])
local found = redis.call('HMGET', KEYS[1], 'status', 'tenant', 'owner')
local status = found[1]
if found[2] then
  redis.call('ZREM', ARGV[7] .. found[2], ARGV[6])
end
if not status or status == 'succeeded' or status == 'failed' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'result', ARGV[2], 'error', ARGV[3],
           'timings', ARGV[4], 'finished_at', ARGV[5])
redis.call('HDEL', KEYS[1], 'request')
count_usage(found[2] or '', found[3] or '')
if #KEYS == 4 then
  local meta_type = redis.call('TYPE', KEYS[3])['ok']
  local turns_type = redis.call('TYPE', KEYS[4])['ok']
  if meta_type == 'hash' and (turns_type == 'list' or turns_type == 'none') then
    local seq = tonumber(ARGV[15])
    local applied = tonumber(redis.call('HGET', KEYS[3], 'applied') or '0') or 0
    if seq > applied then
      for i = 18, #ARGV do
        redis.call('RPUSH', KEYS[4], ARGV[i])
      end
      redis.call('LTRIM', KEYS[4], -tonumber(ARGV[17]), -1)
      redis.call('HSET', KEYS[3], 'applied', seq)
    end
    redis.call('EXPIRE', KEYS[3], ARGV[16])
    redis.call('EXPIRE', KEYS[4], ARGV[16])
  end
end
return 1
"""
)

# A cache hit's usage: a request and a hit, no tokens (ARGV[1] and ARGV[2]: tenant and
# owner; ARGV[3] to ARGV[7] unused; from ARGV[8] on as FINISH).
COUNT_HIT = (
    COUNT_USAGE
    + """
count_usage(ARGV[1], ARGV[2])
return 1
"""
)

# A task its worker cannot run before a model's day quota resets waits for it instead of
# failing: running under this holder (ARGV[5]) -> queued again, with ARGV[3] (JSON: code,
# message, until) as ``parked``, re-entering the in-flight index (KEYS[2]) at ARGV[2], when
# the orphan sweeper sends it again; the record lives ARGV[4] seconds more. Returns 1 when
# parked.
PARK = """
local state = redis.call('HMGET', KEYS[1], 'status', 'claimed_by')
if state[1] ~= 'running' or state[2] ~= ARGV[5] then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'parked', ARGV[3], 'claimed_by', '')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

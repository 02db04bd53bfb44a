/**
 * The one Lua script behind every RedisStore call, so each call is one round trip and atomic: the same
 * arithmetic as the memory store (store.ts) and sliding.ts, written once more in Lua.
 *
 * KEYS[i]  a counter: a fixed window's key (its start already in the name) or a sliding counter's hash.
 * ARGV[1]  'incr' | 'get' | 'admit' | 'refund'
 * ARGV[2]  now (epoch ms, the caller's clock: every replica buckets time alike)
 * ARGV[3]  buckets per sliding window
 * ARGV[4]  expiry slack (ms kept past a counter's last use, for replicas with slightly slow clocks)
 * ARGV[5]  deadline (epoch ms in this Redis server's clock, see src/redis/clock.ts; 0: none)
 * then per key, 4 values: 'f' | 's', window ms, amount, limit (admit only; else 0)
 *
 * Fixed counters are INCRBY'd strings with a relative PEXPIRE to their window's end (relative, so the TTL is
 * right even when the Redis host's clock and ours disagree). A sliding counter is a hash of bucket index to
 * amount: buckets older than the window are deleted as they are met, and the key expires when its newest
 * bucket leaves.
 *
 * Reply: { admitted (1/0), then per key { count, bucket1, amount1, bucket2, amount2, ... } } where the
 * buckets (sliding only) are those still counted, then (when given a deadline) the server's time in whole ms;
 * or { -1, time } when the script started after its deadline: the caller has already answered without
 * it, so nothing is read or counted. The time refines the caller's reading of the server's clock.
 *
 * 'refund' takes back what an 'admit' with the same now and amounts added (the caller lists the counters it
 * counted), never below 0: for a call whose reply came after its caller had answered.
 *
 * TIME makes the script non-deterministic; Redis 5 and later replicate a script by its effects (the only way
 * in Redis 7), so replicas and the AOF get the INCRBYs, not the script. Older ones are asked to.
 */
export const COUNTER_SCRIPT = `
local deadline = tonumber(ARGV[5])
local server_ms = -1
if deadline > 0 then
  if redis.replicate_commands then redis.replicate_commands() end
  local time = redis.call('TIME')
  server_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  if server_ms > deadline then return { -1, server_ms } end
end

local mode = ARGV[1]
local now = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local slack = tonumber(ARGV[4])

local function bucket_of(window)
  return math.floor(now * n / window)
end

local function leaves_at(bucket, window)
  return math.ceil((bucket + n + 1) * window / n)
end

-- Prunes a sliding counter and answers its count and its counted buckets (flat: index, amount, ...).
local function sliding_read(key, window)
  local oldest = bucket_of(window) - n
  local flat = redis.call('HGETALL', key)
  local count = 0
  local kept = {}
  for i = 1, #flat, 2 do
    local bucket = tonumber(flat[i])
    local amount = tonumber(flat[i + 1])
    if bucket < oldest then
      redis.call('HDEL', key, flat[i])
    else
      count = count + amount
      kept[#kept + 1] = bucket
      kept[#kept + 1] = amount
    end
  end
  return count, kept
end

local function sliding_add(key, window, amount, kept)
  if amount <= 0 then return kept end
  local current = bucket_of(window)
  redis.call('HINCRBY', key, current, amount)
  redis.call('PEXPIRE', key, leaves_at(current, window) - now + slack)
  local found = false
  for i = 1, #kept, 2 do
    if kept[i] == current then
      kept[i + 1] = kept[i + 1] + amount
      found = true
    end
  end
  if not found then
    kept[#kept + 1] = current
    kept[#kept + 1] = amount
  end
  return kept
end

local function fixed_add(key, window, amount)
  local count = redis.call('INCRBY', key, amount)
  local window_end = (math.floor(now / window) + 1) * window
  redis.call('PEXPIRE', key, window_end - now + slack)
  return count
end

local ARGS = 5

if mode == 'refund' then
  for i = 1, #KEYS do
    local base = ARGS + (i - 1) * 4
    local window = tonumber(ARGV[base + 2])
    local amount = tonumber(ARGV[base + 3])
    local key = KEYS[i]
    if ARGV[base + 1] == 'f' then
      local count = tonumber(redis.call('GET', key) or '0')
      if count > 0 then redis.call('DECRBY', key, math.min(amount, count)) end
    else
      local bucket = bucket_of(window)
      local count = tonumber(redis.call('HGET', key, bucket) or '0')
      if count > amount then redis.call('HINCRBY', key, bucket, -amount)
      elseif count > 0 then redis.call('HDEL', key, bucket) end
    end
  end
  return { 1 }
end

local admitted = 1
local results = {}
local pending = {}
for i = 1, #KEYS do
  local base = ARGS + (i - 1) * 4
  local kind = ARGV[base + 1]
  local window = tonumber(ARGV[base + 2])
  local amount = tonumber(ARGV[base + 3])
  local limit = tonumber(ARGV[base + 4])
  local key = KEYS[i]
  if kind == 'f' then
    local count
    if mode == 'get' then
      count = tonumber(redis.call('GET', key) or '0')
    else
      count = fixed_add(key, window, amount)
      if mode == 'admit' and count > limit then admitted = 0 end
    end
    results[i] = { count }
  else
    local count, kept = sliding_read(key, window)
    if mode == 'incr' then
      kept = sliding_add(key, window, amount, kept)
      count = count + amount
    elseif mode == 'admit' then
      if count + amount > limit then admitted = 0 end
      pending[#pending + 1] = i
    end
    local entry = { count }
    for j = 1, #kept do entry[#entry + 1] = kept[j] end
    results[i] = entry
  end
end

-- A sliding counter counts a request only once every limit of the request has admitted it.
if admitted == 1 then
  for _, i in ipairs(pending) do
    local base = ARGS + (i - 1) * 4
    local window = tonumber(ARGV[base + 2])
    local amount = tonumber(ARGV[base + 3])
    local entry = results[i]
    local kept = {}
    for j = 2, #entry do kept[#kept + 1] = entry[j] end
    kept = sliding_add(KEYS[i], window, amount, kept)
    local updated = { entry[1] + amount }
    for j = 1, #kept do updated[#updated + 1] = kept[j] end
    results[i] = updated
  end
end

local reply = { admitted }
for i = 1, #KEYS do reply[i + 1] = results[i] end
if server_ms >= 0 then reply[#KEYS + 2] = server_ms end
return reply
`;

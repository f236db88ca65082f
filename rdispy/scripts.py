"""Lua scripts: every step that must be atomic on the server.

Each script names its KEYS and ARGV in a header.  Keys come only through KEYS (all keys share the
cluster's hash tag).  Job state ``st`` in the job hash moves:

    (none) --take--> running --publish--> done
    (none) --cancel--> cancelled                (the consumer then skips the entry)
    running --release/requeue--> queued --take--> running ...
"""

from __future__ import annotations

import redis
from redis.commands.core import Script

# KEYS[1] jobs stream, KEYS[2..] job hashes (one per entry)
# ARGV[1] group, ARGV[2] attempt token, ARGV[3] job ttl, ARGV[4..] entry ids (same order)
# Returns per entry: 1 run it, 0 skip it (it was cancelled or already done; it is acked).
TAKE = """
local out = {}
for i = 2, #KEYS do
  local eid = ARGV[i + 2]
  local st = redis.call('HGET', KEYS[i], 'st')
  if st == 'cancelled' or st == 'done' then
    redis.call('XACK', KEYS[1], ARGV[1], eid)
    redis.call('XDEL', KEYS[1], eid)
    out[#out + 1] = 0
  else
    redis.call('HSET', KEYS[i], 'st', 'running', 'a', ARGV[2])
    redis.call('HINCRBY', KEYS[i], 'n', 1)
    redis.call('EXPIRE', KEYS[i], ARGV[3])
    out[#out + 1] = 1
  end
end
return out
"""

# KEYS[1] jobs stream, KEYS[2] job hash, KEYS[3] client's result stream
# ARGV[1] group, ARGV[2] entry id, ARGV[3] attempt token, ARGV[4] result ttl,
# ARGV[5..] result fields (name, value, ...)
# Publishes only if this attempt is still the job's current one: a late duplicate is dropped.
# Returns 1 published, 0 fenced off.
PUBLISH = """
local job = redis.call('HMGET', KEYS[2], 'a', 'st')
if job[1] ~= ARGV[3] or job[2] ~= 'running' then return 0 end
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('HSET', KEYS[2], 'st', 'done')
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"""

# KEYS[1] job hash; ARGV[1] ttl
# Returns 1 if the job is now cancelled (it will never run), 0 if it already started or ended.
CANCEL = """
if redis.call('HSETNX', KEYS[1], 'st', 'cancelled') == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return 1
end
local st = redis.call('HGET', KEYS[1], 'st')
if st == 'cancelled' then return 1 end
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'st', 'cancelled')
  return 1
end
return 0
"""

# KEYS[1] jobs stream, KEYS[2] job hash
# ARGV[1] group, ARGV[2] entry id, ARGV[3] attempt token of the releasing consumer
# Puts a taken but never started entry back at the end of the queue, uncharged.
# Returns 1 released, 0 not ours any more.
RELEASE = """
if redis.call('HGET', KEYS[2], 'a') ~= ARGV[3] then return 0 end
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if #entry == 0 then return 0 end
redis.call('XADD', KEYS[1], '*', unpack(entry[1][2]))
redis.call('HSET', KEYS[2], 'st', 'queued', 'a', '')
redis.call('HINCRBY', KEYS[2], 'n', -1)
return 1
"""

# KEYS[1] jobs stream, KEYS[2] job hash, KEYS[3] client's result stream
# ARGV[1] group, ARGV[2] entry id, ARGV[3] 1 if the lost attempt counts against the job,
# ARGV[4] max retries, ARGV[5] result ttl, ARGV[6..] the "lost" result fields to publish if
# the job may not run again.
# Returns 1 requeued, 2 failed (result published), 0 nothing to do (entry gone or job ended).
RECOVER = """
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local st = redis.call('HGET', KEYS[2], 'st')
if #entry == 0 or st == 'done' or st == 'cancelled' then return 0 end
if ARGV[3] == '0' then redis.call('HINCRBY', KEYS[2], 'n', -1) end
local n = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
if n <= tonumber(ARGV[4]) then
  redis.call('XADD', KEYS[1], '*', unpack(entry[1][2]))
  redis.call('HSET', KEYS[2], 'st', 'queued', 'a', '')
  return 1
end
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('HSET', KEYS[2], 'st', 'done')
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 2
"""


class Scripts:
    """The scripts registered on one client (EVALSHA, loaded on first use)."""

    def __init__(self, client: redis.Redis) -> None:
        self.take: Script = client.register_script(TAKE)
        self.publish: Script = client.register_script(PUBLISH)
        self.cancel: Script = client.register_script(CANCEL)
        self.release: Script = client.register_script(RELEASE)
        self.recover: Script = client.register_script(RECOVER)

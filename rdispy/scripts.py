"""Lua scripts: every step that must be atomic on the server.

Each script names its KEYS and ARGV in a header.  Keys come only through KEYS (all keys share the
cluster's hash tag).  Who may act on a job entry is decided by the consumer group's pending
entries list (PEL): a consumer owns an entry from delivery until it publishes; when a dead
consumer's entry is requeued it gets a new id, so the old owner's late publish finds nothing it
owns and is dropped.  The job record ``job:<id>`` holds ``st`` ("done" once a result was
published, so a duplicate entry can never publish twice) and ``n`` (attempts lost so far).
"""

from __future__ import annotations

import redis
from redis.commands.core import Script

# KEYS[1] jobs stream, KEYS[2] job record, KEYS[3] client's result stream
# ARGV[1] group, ARGV[2] entry id, ARGV[3] consumer name, ARGV[4] result ttl,
# ARGV[5..] result fields (name, value, ...)
# Publishes the result and acknowledges the entry, only if the consumer still owns it and no
# result was published for the job yet.  Returns 1 published, 0 dropped (fenced or duplicate).
PUBLISH = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3]) == 0 then
  return 0
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('HSETNX', KEYS[2], 'st', 'done') == 0 then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[3], ARGV[4])
return 1
"""

# KEYS[1] jobs stream; ARGV[1] group, ARGV[2] entry id
# Deletes an entry no consumer has been handed yet.  Returns 1 if it will now never run, 0 if a
# consumer already has it (or it is gone: finished, or requeued under another id).
CANCEL = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1) > 0 then return 0 end
return redis.call('XDEL', KEYS[1], ARGV[2])
"""

# KEYS[1] jobs stream; ARGV[1] group, ARGV[2] entry id, ARGV[3] consumer name
# Puts an entry the consumer took but never started back at the end of the queue, uncharged.
# Returns 1 released, 0 not ours any more.
RELEASE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3]) == 0 then
  return 0
end
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if #entry == 0 then return 0 end
redis.call('XADD', KEYS[1], '*', unpack(entry[1][2]))
return 1
"""

# KEYS[1] jobs stream, KEYS[2] job record, KEYS[3] client's result stream
# ARGV[1] group, ARGV[2] entry id, ARGV[3] 1 if the lost attempt counts against the job,
# ARGV[4] max retries, ARGV[5] ttl, ARGV[6..] the "lost" result fields to publish if the job
# may not run again.
# Settles a pending entry of a dead consumer.  Returns 1 requeued, 2 failed (result published),
# 0 nothing to do (entry gone or job already done).
RECOVER = """
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if #entry == 0 or redis.call('HGET', KEYS[2], 'st') == 'done' then return 0 end
local lost = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
if ARGV[3] == '1' then
  lost = redis.call('HINCRBY', KEYS[2], 'n', 1)
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
if lost <= tonumber(ARGV[4]) then
  redis.call('XADD', KEYS[1], '*', unpack(entry[1][2]))
  return 1
end
redis.call('HSET', KEYS[2], 'st', 'done')
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[3], ARGV[5])
return 2
"""


class Scripts:
    """The scripts registered on one client (EVALSHA, loaded on first use)."""

    def __init__(self, client: redis.Redis) -> None:
        self.publish: Script = client.register_script(PUBLISH)
        self.cancel: Script = client.register_script(CANCEL)
        self.release: Script = client.register_script(RELEASE)
        self.recover: Script = client.register_script(RECOVER)

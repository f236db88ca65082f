"""Lua scripts: every step that must be atomic on the server.

Each script names its KEYS and ARGV in a header.  Keys come only through KEYS (all keys share the
cluster's hash tag).  Who may act on a job entry is decided by the consumer group's pending
entries list (PEL): a consumer owns an entry from delivery until it publishes; when a dead
consumer's entry is requeued it gets a new id, so the old owner's late publish finds nothing it
owns and is dropped.  The job record ``job:<id>`` holds ``st`` ("done" once a result was
published, so a duplicate entry can never publish twice), ``n`` (attempts lost so far), ``o``
(how it ended when no result was published: "failed", "cancelled"), the job's attempt
history (``hr``, ``h<i>``, ``hd<i>``: see rdispy.attempts) and ``tb`` (the traceback of the
exception it raised, as text).
"""

from __future__ import annotations

import redis
from redis.commands.core import Script

from rdispy.attempts import ATTEMPTS_KEPT, RECENT_KEPT

# Records one attempt (ARGV index ``a``, JSON; '' records nothing) in the job record (KEYS[2]) as
# field ``field`` and in the recent stream (KEYS index ``r``).  Fields: ``hr`` the attempt whose
# result was published, ``h<i>`` lost attempts (i = attempts lost so far, a ring of
# ATTEMPTS_KEPT), ``hd<i>`` attempts whose result was dropped (another attempt had taken over).
_RECORD = f"""
local function record(field, r, a)
  if ARGV[a] == '' then return end
  redis.call('HSET', KEYS[2], field, ARGV[a])
  redis.call('XADD', KEYS[r], 'MAXLEN', '~', {RECENT_KEPT}, '*', 'a', ARGV[a])
end
local function ring(i) return ((tonumber(i) - 1) % {ATTEMPTS_KEPT}) + 1 end
local function dropped(r, a, ttl)
  if ARGV[a] == '' then return end
  local i = ring(redis.call('HINCRBY', KEYS[2], 'nd', 1))
  redis.call('HSET', KEYS[2], 'hd' .. i, ARGV[a])
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('XADD', KEYS[r], 'MAXLEN', '~', {RECENT_KEPT}, '*', 'a', ARGV[a], 'd', '1')
end
"""

# KEYS[1] jobs stream, KEYS[2] job record, KEYS[3] client's result stream, KEYS[4] counters,
# KEYS[5] recent attempts stream
# ARGV[1] group, ARGV[2] entry id, ARGV[3] consumer name, ARGV[4] result ttl, ARGV[5] the
# attempt (JSON, or ''), ARGV[6] the counter to raise ("finished" or "failed"), ARGV[7] the
# job's traceback ('' when it did not raise; kept in the job record as ``tb``, not in the recent
# stream), ARGV[8..] result fields (name, value, ...)
# Publishes the result and acknowledges the entry, only if the consumer still owns it and no
# result was published for the job yet; the job record keeps who published (``pb``: consumer and
# entry id), so a publish sent again after its reply was lost returns 1.  Returns 1 published;
# -1 dropped because the job was taken over (a settle charged it a lost attempt: this node was
# declared dead); 0 dropped otherwise (a duplicate, or a server that lost the entry, e.g. one
# that restarted empty).  A dropped attempt is still recorded (hd<i>).
PUBLISH = f"""
local owned = #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1, ARGV[3]) > 0
local mark = ARGV[3] .. ' ' .. ARGV[2]
if not owned and redis.call('HGET', KEYS[2], 'pb') == mark then return 1 end
local taken = not owned and redis.call('HEXISTS', KEYS[2], 'n') == 1
if owned then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
end
if not owned or redis.call('HSETNX', KEYS[2], 'st', 'done') == 0 then
  if ARGV[5] ~= '' then
    local i = ((redis.call('HINCRBY', KEYS[2], 'nd', 1) - 1) % {ATTEMPTS_KEPT}) + 1
    redis.call('HSET', KEYS[2], 'hd' .. i, ARGV[5])
    redis.call('EXPIRE', KEYS[2], ARGV[4])
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', {RECENT_KEPT}, '*', 'a', ARGV[5], 'd', '1')
  end
  if taken then return -1 end
  return 0
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[2], 'hr', ARGV[5], 'pb', mark)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', {RECENT_KEPT}, '*', 'a', ARGV[5])
else
  redis.call('HSET', KEYS[2], 'pb', mark)
end
if ARGV[7] ~= '' then redis.call('HSET', KEYS[2], 'tb', ARGV[7]) end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 8))
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('HINCRBY', KEYS[4], ARGV[6], 1)
return 1
"""

# KEYS[1] the stream the job was sent to, KEYS[2] job record, KEYS[3] the shared jobs stream
# ARGV[1] group, ARGV[2] entry id
# Deletes an entry no consumer has been handed yet.  A job sent to a client's fair queue may
# have been moved into the shared stream (MOVE notes where in the job record): it is looked for
# there.  Returns 1 if it will now never run, 0 if a consumer already has it (or it is gone:
# finished, or requeued under another id).
CANCEL = """
local stream, eid = KEYS[1], ARGV[2]
if stream ~= KEYS[3] and redis.call('XDEL', stream, eid) == 1 then return 1 end
local moved = redis.call('HGET', KEYS[2], 'e')
if stream ~= KEYS[3] and moved then
  stream, eid = KEYS[3], moved
end
local ok, pending = pcall(redis.call, 'XPENDING', stream, ARGV[1], eid, eid, 1)
if ok and #pending > 0 then return 0 end
return redis.call('XDEL', stream, eid)
"""

# KEYS[1] the job's stream, KEYS[2] job record, KEYS[3] shared jobs stream
# ARGV[1] group, ARGV[2] entry id
# Whether a consumer has been handed the job (the entry is in the group's PEL, or gone from its
# stream: published, or requeued under a new id): what CANCEL would refuse, without withdrawing.
# Returns 1 taken, 0 still queued.
TAKEN = """
local stream, eid = KEYS[1], ARGV[2]
local moved = redis.call('HGET', KEYS[2], 'e')
if stream ~= KEYS[3] and moved then
  stream, eid = KEYS[3], moved
end
if #redis.call('XRANGE', stream, eid, eid) == 0 then return 1 end
local ok, pending = pcall(redis.call, 'XPENDING', stream, ARGV[1], eid, eid, 1)
if ok and #pending > 0 then return 1 end
return 0
"""

# KEYS[1] a client's fair queue, KEYS[2] the shared jobs stream, KEYS[3] the job's record
# ARGV[1] entry id in the queue, ARGV[2] ttl
# Moves that entry into the shared stream verbatim (it is signed for the shared stream) and notes
# its new id in the job record, for CANCEL.  Returns 1 moved, 0 gone (cancelled or moved).
MOVE = """
local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #entry == 0 then return 0 end
local new = redis.call('XADD', KEYS[2], '*', unpack(entry[1][2]))
redis.call('XDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], 'e', new)
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
"""


# KEYS[1] a client's fair queue, KEYS[2] the fair queues' index; ARGV[1] the client id
# Drops the client from the index if its queue is empty: in one step, so that a job queued
# meanwhile (its client adds itself to the index after each batch) is never left unindexed.
# Returns 1 dropped, 0 the queue holds jobs (or the client was not indexed).
FORGET_QUEUE = """
if redis.call('XLEN', KEYS[1]) > 0 then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
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

# KEYS[1] jobs stream, KEYS[2] job record, KEYS[3] client's result stream, KEYS[4] counters,
# KEYS[5] recent attempts stream
# ARGV[1] group, ARGV[2] entry id, ARGV[3] 1 if the lost attempt counts against the job,
# ARGV[4] max retries, ARGV[5] ttl, ARGV[6] the lost attempt (JSON, or ''), ARGV[7..] the "lost"
# result fields to publish if the job may not run again.
# Settles a pending entry of a dead consumer.  Returns 1 requeued, 2 failed (result published),
# 0 nothing to do (entry gone or job already done).
RECOVER = (
    _RECORD
    + """
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if #entry == 0 or redis.call('HGET', KEYS[2], 'st') == 'done' then return 0 end
local lost = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
if ARGV[3] == '1' then
  lost = redis.call('HINCRBY', KEYS[2], 'n', 1)
  record('h' .. ring(lost), 5, 6)
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
if lost <= tonumber(ARGV[4]) then
  redis.call('XADD', KEYS[1], '*', unpack(entry[1][2]))
  if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[4], 'retried', 1) end
  return 1
end
redis.call('HSET', KEYS[2], 'st', 'done', 'o', 'failed')
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('HINCRBY', KEYS[4], 'failed', 1)
return 2
"""
)

# KEYS[1] the stream holding the entry, KEYS[2] job record, KEYS[3] client's result stream,
# KEYS[4] counters
# ARGV[1] group, ARGV[2] entry id, ARGV[3] ttl, ARGV[4..] the "cancelled" result fields
# Withdraws a job no consumer has been handed yet and tells its client (the monitor's cancel;
# a client cancelling its own job uses CANCEL).  Returns 1 withdrawn, 0 a consumer has it (stop
# it on its node instead) or it is gone, 2 it was a duplicate of a finished job (deleted).
WITHDRAW = """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if ok and #pending > 0 then return 0 end
if redis.call('XDEL', KEYS[1], ARGV[2]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[2], 'st', 'done') == 0 then return 2 end
redis.call('HSET', KEYS[2], 'o', 'cancelled')
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('XADD', KEYS[3], '*', unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
return 1
"""

# KEYS[1] a stream
# ARGV[1] first id (inclusive, or "(id" exclusive), ARGV[2] last id, ARGV[3] most entries,
# ARGV[4] a job id to look for ('' for none), ARGV[5..] field names
# Reads entries without sending their payloads.  Returns {rows, last id read ('' if none)}:
# one row {id, value of each named field} per entry, in order; with a job id, only the first
# entry of that job among those read.
PEEK = """
local out, last = {}, ''
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])) do
  last = entry[1]
  local fields = {}
  for i = 1, #entry[2], 2 do fields[entry[2][i]] = entry[2][i + 1] end
  if ARGV[4] == '' or fields['id'] == ARGV[4] then
    local row = {entry[1]}
    for i = 5, #ARGV do row[#row + 1] = fields[ARGV[i]] or '' end
    out[#out + 1] = row
    if ARGV[4] ~= '' then break end
  end
end
return {out, last}
"""

# KEYS[1] client's result stream, KEYS[2] client's record
# ARGV[1] most entries the stream may hold before provisional results are dropped,
# ARGV[2..] the event's fields
# Adds a provisional result unless the client has that many entries unread; then counts it as
# dropped in the client's record (if the client is still there).  Final results never come
# here, so they are never dropped.  Returns 1 added, 0 dropped.
PROVISIONAL = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HINCRBY', KEYS[2], 'dropped', 1) end
  return 0
end
redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
return 1
"""


# KEYS[1] a node name's lease; ARGV[1] our holder value (incarnation host pid), ARGV[2] the value
# we held before (after a reincarnation) or '', ARGV[3] ttl in ms (0 releases it).
# Takes, refreshes or releases the lease only if it is free or ours: two live workers can never
# hold one node name.  Returns {1} when we hold it (or released it), otherwise {0, holder, its
# remaining ttl in ms}.
LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and (ARGV[2] == '' or holder ~= ARGV[2]) then
  return {0, holder, redis.call('PTTL', KEYS[1])}
end
if ARGV[3] == '0' then
  if holder then redis.call('DEL', KEYS[1]) end
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
end
return {1}
"""


class Scripts:
    """The scripts registered on one client (EVALSHA, loaded on first use)."""

    def __init__(self, client: redis.Redis) -> None:
        self.publish: Script = client.register_script(PUBLISH)
        self.cancel: Script = client.register_script(CANCEL)
        self.taken: Script = client.register_script(TAKEN)
        self.release: Script = client.register_script(RELEASE)
        self.recover: Script = client.register_script(RECOVER)
        self.move: Script = client.register_script(MOVE)
        self.forget_queue: Script = client.register_script(FORGET_QUEUE)
        self.provisional: Script = client.register_script(PROVISIONAL)
        self.lease: Script = client.register_script(LEASE)
        self.withdraw: Script = client.register_script(WITHDRAW)
        self.peek: Script = client.register_script(PEEK)

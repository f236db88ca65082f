"""The hot-path link against a real server: commands sent ahead have their replies read, in
order, by the next read on the link and handed to their handlers; a lost connection tells the
handlers (None) so that the caller can send again."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from rdispy.link import Link

pytestmark = pytest.mark.integration


@pytest.fixture
def key() -> str:
    return f"link-test:{uuid.uuid4().hex}"


def test_replies_of_commands_sent_ahead_reach_their_handlers_in_order(
    rclient: redis.Redis, key: str
) -> None:
    link = Link(rclient)
    seen: list[tuple[str, list[Any] | None]] = []
    link.send([("INCR", key), ("INCR", key)], lambda r: seen.append(("first", r)))
    link.send([("INCRBY", key, 10), ("NOSUCHCOMMAND",)], lambda r: seen.append(("second", r)))
    assert link.owed and seen == []
    assert link.call("GET", key) == b"12"  # the read on the link settles what was sent ahead
    assert [name for name, _ in seen] == ["first", "second"]
    assert seen[0][1] == [1, 2]
    second = seen[1][1]
    assert second is not None and second[0] == 12 and isinstance(second[1], redis.ResponseError)
    assert not link.owed
    link.close()


def test_handlers_run_before_the_settled_hook_and_the_own_replies(
    rclient: redis.Redis, key: str
) -> None:
    link = Link(rclient)
    replies: list[list[Any] | None] = []
    link.send([("SET", key, "ahead")], replies.append)
    settled: list[bool] = []
    assert link.pipeline([("GET", key)], settled=lambda: settled.append(bool(replies))) == [
        b"ahead"
    ]
    assert replies == [[b"OK"]] and settled == [True]
    link.close()


def test_a_lost_connection_tells_the_handlers_and_the_next_call_reconnects(
    rclient: redis.Redis, key: str
) -> None:
    link = Link(rclient)
    outcome: list[list[Any] | None] = []
    link.send([("BLPOP", f"{key}:none", 5)], outcome.append)  # its reply cannot come yet
    rclient.client_kill_filter(_type="normal", skipme=True)
    with pytest.raises(redis.ConnectionError):
        link.call("PING")
    assert outcome == [None] and not link.owed
    assert link.call("PING") == b"PONG"  # reconnected
    link.close()

"""A follower's query thread that is abandoned (its poll timed out) and ends after the event
loop has closed (the daemon stopped) ends quietly: nobody waits for it any more. A poll still
unanswered after `probe_after` gets a plain connection beside it (`DbFollower._ask`)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from tollwatch.cdr_ingest.database import DbError
from tollwatch.cdr_ingest.live.db_follow import DbFollower, DbPosition, _in_thread
from tollwatch.cdr_ingest.live.events import SourceStatus


@pytest.mark.parametrize("fails", [False, True])
def test_a_query_ending_after_its_loop_closed_raises_nothing(
    monkeypatch: pytest.MonkeyPatch, fails: bool
) -> None:
    release, done = threading.Event(), threading.Event()
    raised: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))

    def query(_: bool) -> int:
        release.wait(10)
        try:
            if fails:
                raise RuntimeError("timed out waiting for connection")
            return 1
        finally:
            done.set()

    async def poll() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(_in_thread(query, False), 0.05)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(poll())
    finally:
        loop.close()
    release.set()
    assert done.wait(10)
    for t in threading.enumerate():
        if t.name == "db-follow":
            t.join(10)
    assert raised == []


def _follower(query_s: float, verdict: str | None, timeout: float = 5.0) -> tuple[Any, list[int]]:
    """A DbFollower whose query answers after `query_s` seconds and whose plain connection
    says `verdict` (None: connected), counting the checks made."""
    follower: Any = object.__new__(DbFollower)
    follower.pbx, follower.key = "pbx", "mysql://127.0.0.1/cdr"
    follower.timeout, follower.probe_after = timeout, 0.1
    follower.status = SourceStatus(name="pbx", kind="db", connected=True)
    checks: list[int] = []

    def query(_: bool) -> tuple[DbPosition, list[object]]:
        time.sleep(query_s)
        return DbPosition("2026-12-03 10:00:00"), []

    def check(_: bool) -> None:
        checks.append(1)
        if verdict is not None:
            raise DbError(f"mysql://127.0.0.1: {verdict}")

    follower._next, follower._check = query, check
    return follower, checks


def test_a_slow_poll_to_a_server_that_refuses_us_ends_with_the_drivers_words() -> None:
    follower, checks = _follower(3.0, "Access denied for user 'tw'")
    t = time.monotonic()
    with pytest.raises(DbError, match="Access denied"):
        asyncio.run(follower._ask(False))
    assert time.monotonic() - t < 1.5  # not the query's 3 s, nor the 5-s timeout
    assert checks == [1] and not follower.status.connected


def test_a_slow_poll_to_a_reachable_server_is_waited_for() -> None:
    follower, checks = _follower(0.4, None)
    pos, rows = asyncio.run(follower._ask(False))
    assert (pos.end, rows, checks) == ("2026-12-03 10:00:00", [], [1])


def test_a_quick_poll_makes_no_check_and_a_hung_one_times_out() -> None:
    follower, checks = _follower(0.0, "Access denied")
    assert asyncio.run(follower._ask(False))[1] == [] and checks == []
    follower, checks = _follower(2.0, None, timeout=0.5)
    with pytest.raises(DbError, match="no answer within"):
        asyncio.run(follower._ask(False))
    assert checks == [1]

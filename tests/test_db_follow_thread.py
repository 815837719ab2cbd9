"""A follower's query thread that is abandoned (its poll timed out) and ends after the event
loop has closed (the daemon stopped) ends quietly: nobody waits for it any more."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tollwatch.cdr_ingest.live.db_follow import _in_thread


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

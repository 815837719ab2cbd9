"""The AMI connection under load and abuse: a slow consumer behind a fast replay server keeps
its connection (the keepalive measures the peer, not our backlog) and handles every event; a
full backlog pauses reading instead of dropping; a drop keeps what was received; a bare-LF
frame does not swallow the next one."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bench.gen_ami import generate
from tests.helpers import settings
from tests.test_daemon import Recorder
from tests.test_daemon_ami import SECRET, wait_for
from tollwatch.cdr_ingest.live.ami import AmiSource
from tollwatch.cdr_ingest.live.ami_framing import split_frames
from tollwatch.cdr_ingest.live.backlog import EventQueue
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi
from tollwatch.daemon import Daemon
from tollwatch.state import StateStore

KEEPALIVE_TIMEOUT = 2.0  # s without an answer to Ping: a loaded 2-core CI box must not trip it


def slow_daemon(tmp_path: Path, port: int, per_event: float, **daemon: Any) -> Daemon:
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path), "max_backoff": "1s", **daemon})
    d = Daemon(s, StateStore.in_dir(tmp_path), [], [Recorder()], ["pbx"])
    source = AmiSource("pbx", "127.0.0.1", port, "tollwatch", SECRET, events=d.queue,
                       keepalive=0.5, timeout=KEEPALIVE_TIMEOUT)
    d.sources.append(_Feed(source))
    real = d.process

    async def slow(event: Any) -> None:  # CPU-bound work that holds the event loop
        time.sleep(per_event)
        await real(event)

    d.process = slow  # type: ignore[method-assign]
    return d


class _Feed:
    def __init__(self, source: AmiSource) -> None:
        self.source = source
        self.name = source.name
        self.status = source.status

    async def run(self, queue: asyncio.Queue[Any]) -> None:
        await self.source.run()


def logins(fake: FakeAmi) -> int:
    return sum(1 for a in list(fake.actions) if a.get("Action") == "Login")


class ThreadedFake:
    """A FakeAmi on its own event loop in a thread: it sends at socket speed, whatever the
    daemon's loop is doing (as a real Asterisk would)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fake = FakeAmi(username="tollwatch", secret=SECRET)

    async def __aenter__(self) -> ThreadedFake:
        self.thread.start()
        await self._run(self.fake.start())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._run(self.fake.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    async def _run(self, coro: Any) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def replay(self, stream: bytes) -> int:
        sent: int = await self._run(self.fake.replay(stream))
        return sent

    def drop_clients(self) -> None:
        self.loop.call_soon_threadsafe(self.fake.drop_clients)


@pytest.mark.soak  # ~10-30 s of AMI load each: not in the fast core
async def test_slow_consumer_under_a_fast_replay_keeps_the_connection(tmp_path: Path) -> None:
    stream = b"".join(generate(300, concurrent=100, seed=7))
    async with ThreadedFake() as server:
        fake = server.fake
        daemon = slow_daemon(tmp_path, fake.port, per_event=0.003)
        source = daemon.sources[0]
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await wait_for(lambda: source.status.connected, 30)  # a loaded CI may need a retry
        before, errors = logins(fake), source.status.errors
        sent = await server.replay(stream)  # as fast as the socket takes it
        await asyncio.sleep(0.3)
        assert daemon.queue.qsize() > 300  # a real backlog: processing is the bottleneck
        peak_age = 0.0
        while daemon.queue.qsize():  # seconds of backlog, pings answered meanwhile
            peak_age = max(peak_age, daemon.queue.oldest_age())
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.2)  # quiet peer: a Ping goes out and is answered
        stop.set()
        await task
    assert sent > 5_000
    assert peak_age > KEEPALIVE_TIMEOUT  # the backlog was older than the keepalive timeout ...
    assert logins(fake) == before and source.status.errors == errors  # ... the connection stayed up
    assert any(a.get("Action") == "Ping" for a in fake.actions)
    assert daemon.events == source.status.events > 600  # every event received was handled
    assert daemon.queue.peak > 300


@pytest.mark.soak  # ~10-30 s of AMI load each: not in the fast core
async def test_full_backlog_pauses_reading_and_loses_nothing(tmp_path: Path) -> None:
    stream = b"".join(generate(300, concurrent=100, seed=3))
    async with ThreadedFake() as server:
        fake = server.fake
        daemon = slow_daemon(tmp_path, fake.port, per_event=0.002, max_backlog=200)
        source = daemon.sources[0]
        paused: list[bool] = []
        daemon.queue.add_pressure_listener(paused.append)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await wait_for(lambda: source.status.connected, 30)  # a loaded CI may need a retry
        before, errors = logins(fake), source.status.errors
        await server.replay(stream)
        await wait_for(lambda: daemon.queue.qsize() == 0 and not daemon.queue.over_limit, 60)
        await asyncio.sleep(1.5)
        stop.set()
        await task
    assert True in paused and paused[-1] is False  # paused at the limit, resumed after
    assert daemon.queue.peak < 200 + 400  # bounded: at most one read beyond the limit
    assert logins(fake) == before and source.status.errors == errors
    assert daemon.events == source.status.events


@pytest.mark.soak  # ~10-30 s of AMI load each: not in the fast core
async def test_a_drop_keeps_the_events_already_received(tmp_path: Path) -> None:
    stream = b"".join(generate(300, concurrent=100, seed=5))
    async with ThreadedFake() as server:
        fake = server.fake
        daemon = slow_daemon(tmp_path, fake.port, per_event=0.003)
        source = daemon.sources[0]
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await wait_for(lambda: source.status.connected, 30)  # a loaded CI may need a retry
        before = logins(fake)
        await server.replay(stream)
        await wait_for(lambda: source.status.events > 0 and daemon.queue.qsize() > 100)
        received = source.status.events
        server.drop_clients()  # the connection goes while a backlog waits
        await wait_for(lambda: logins(fake) > before, 20)  # the supervisor reconnects
        await wait_for(lambda: daemon.queue.qsize() == 0, 60)
        stop.set()
        await task
    assert daemon.events >= received  # nothing already received was discarded
    assert daemon.events == source.status.events


def test_bare_lf_frame_does_not_swallow_the_next() -> None:
    text = ("Event: Hangup\nUniqueid: 1.1\nCause: 16\n\n"
            "Event: DialBegin\r\nUniqueid: 1.2\r\n\r\n"
            "Response: Success\r\nActionID: 7\r\nPing: Pong\r\n\r\nEvent: Par")
    frames, rest = split_frames(text)
    assert frames == ["Event: Hangup\r\nUniqueid: 1.1\r\nCause: 16",
                      "Event: DialBegin\r\nUniqueid: 1.2",
                      "Response: Success\r\nActionID: 7\r\nPing: Pong"]
    assert rest == "Event: Par"
    run_on = "Event: A\r\nX: 1\r\nEvent: B\r\nY: 2\r\n\r\n"  # a missing blank line
    assert split_frames(run_on)[0] == ["Event: A\r\nX: 1", "Event: B\r\nY: 2"]
    lf_only = "Event: A\nX: 1\n\n" * 80_000  # never a CRLF CRLF: the buffer stays bounded
    frames, rest = split_frames(lf_only)
    assert len(frames) == 80_000 and rest == ""


@pytest.mark.parametrize("limit", [3])
async def test_event_queue_measures(limit: int) -> None:
    now = [100.0]
    q: EventQueue[int] = EventQueue(limit, resume_at=1, clock=lambda: now[0])
    told: list[bool] = []
    q.add_pressure_listener(told.append)
    for i in range(5):
        q.put_nowait(i)  # never refused
        now[0] += 1
    assert told == [True] and q.over_limit and q.oldest_age() == 5.0 and q.peak == 5
    got = [q.get_nowait() for _ in range(4)]
    assert got == [0, 1, 2, 3] and told == [True, False] and not q.over_limit
    await asyncio.wait_for(q.wait_room(), 1)

"""Snapshots of a big state are pickled in a child process: same bytes, the loop never held."""

from __future__ import annotations

import asyncio
import os
import pickle
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import settings
from tollwatch.cdr_ingest.live import CallEnded, CallStarted
from tollwatch.daemon import Daemon
from tollwatch.snapshots import Snapshotter
from tollwatch.state import StateStore

T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
PARENT = os.getpid()


def slow(value: object, seconds: float) -> bytes:
    time.sleep(seconds)
    return pickle.dumps(value)


async def test_a_slow_pickle_moves_to_a_child_and_the_loop_goes_on() -> None:
    snap = Snapshotter(inline_max=0.01)
    state = {"calls": list(range(1000))}
    first = await snap.take({"pbx": lambda: slow(state, 0.02)})  # in place: measured slow
    assert snap.forked == 0 and snap.last_s >= 0.02
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    second = await snap.take({"pbx": lambda: slow(state, 0.5), "b": lambda: b""})
    task.cancel()
    assert time.perf_counter() - started >= 0.5
    assert snap.forked == 1 and snap.failed == 0
    assert second == {"pbx": first["pbx"], "b": b""}
    assert ticks >= 10  # the loop ran all along (~100 on an idle machine; a held loop: 0-1)


async def test_the_child_sees_the_state_as_it_was_at_fork() -> None:
    snap = Snapshotter(inline_max=0.0)
    snap.last_s = 1.0  # as after a slow pickle
    state = {"n": 1}

    def later_change() -> None:
        state["n"] = 2  # runs in the parent while the child pickles

    asyncio.get_running_loop().call_later(0.05, later_change)
    got = await snap.take({"pbx": lambda: slow(state, 0.2)})
    assert snap.forked == 1
    assert pickle.loads(got["pbx"]) == {"n": 1} and state == {"n": 2}


async def test_a_failing_child_falls_back_to_a_pickle_in_place() -> None:
    snap = Snapshotter(inline_max=0.0)
    snap.last_s = 1.0

    def only_here() -> bytes:
        if os.getpid() != PARENT:
            raise RuntimeError("boom in the child")
        return b"state"

    assert await snap.take({"pbx": only_here}) == {"pbx": b"state"}
    assert snap.failed == 1 and snap.forked == 0


def feed(daemon: Daemon, n: int) -> list[CallStarted | CallEnded]:
    events: list[CallStarted | CallEnded] = []
    for i in range(n):
        at = T0 + timedelta(seconds=20 * i)
        events.append(CallStarted("pbx", f"c{i}", at, "209", "acme", f"01023276543{i:02d}",
                                  "carrier"))  # fmt: skip
        if i % 2:
            events.append(CallEnded("pbx", f"c{i}", at + timedelta(seconds=30)))
    return events


@pytest.mark.parametrize("forked", [False, True])
async def test_daemon_state_saved_through_the_child_restores(tmp_path: Path, forked: bool) -> None:
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path)})
    daemon = Daemon(s, StateStore.in_dir(tmp_path), [], [], ["pbx"])
    if forked:
        daemon.snapshotter.last_s = 1.0
    for event in feed(daemon, 30):
        await daemon.process(event)
    assert daemon.publisher.outgoing  # decided, not yet published: the flush publishes first
    await daemon.publisher.publish_queued()
    expected = daemon.pipelines["pbx"].snapshot()
    await daemon.flush_async()
    assert daemon.snapshotter.forked == int(forked)
    assert daemon.store.load_snapshot("pbx") == expected and not daemon._dirty
    again = Daemon(s, StateStore.in_dir(tmp_path), [], [], ["pbx"])
    again.restore()
    pipe, before = again.pipelines["pbx"], daemon.pipelines["pbx"]
    assert set(pipe.up) == set(before.up) and set(pipe.engine.tracker.open) == set(
        before.engine.tracker.open
    )
    assert {k: sorted(i.calls) for k, i in pipe.engine.tracker.open.items()} == {
        k: sorted(i.calls) for k, i in before.engine.tracker.open.items()
    }


async def test_an_interrupted_flush_keeps_the_pbx_dirty(tmp_path: Path) -> None:
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path)})
    daemon = Daemon(s, StateStore.in_dir(tmp_path), [], [], ["pbx"])
    for event in feed(daemon, 3):
        await daemon.process(event)
    daemon.snapshotter.last_s = 1.0
    real = daemon.pipelines["pbx"].snapshot
    daemon.pipelines["pbx"].snapshot = lambda: slow(real(), 5.0)  # type: ignore[method-assign]
    task = asyncio.create_task(daemon.flush_async())
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 2.0  # the child is killed, not waited for (5 s)
    assert daemon._dirty == {"pbx"}  # the final flush saves it
    daemon.pipelines["pbx"].snapshot = real  # type: ignore[method-assign]
    await daemon.flush_final()
    assert daemon.store.load_snapshot("pbx") == real()


def pending_incidents(daemon: Daemon, n: int) -> list[str]:
    from tollwatch.rules.incidents import Incident, Severity

    pending = daemon.publisher.updates.setdefault("pbx", {})
    for i in range(n):
        inc = Incident(id=f"s:{i}", site="s", source=str(200 + i), opened_at=T0,
                       last_activity=T0, severity=Severity.WARNING)  # fmt: skip
        pending[inc.id] = inc
    return list(pending)


async def test_views_at_a_tick_leave_room_for_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_daemon import Recorder
    from tollwatch import publisher

    monkeypatch.setattr(publisher, "PUBLISH_SLICE", 0.0)  # hand the loop back after each view
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path)})
    rec = Recorder()
    daemon = Daemon(s, StateStore.in_dir(tmp_path), [], [rec], ["pbx"])
    ids = pending_incidents(daemon, 5)
    between: list[int] = []

    async def other() -> None:
        for _ in range(10):
            between.append(len(rec.sent))
            await asyncio.sleep(0)

    await asyncio.gather(daemon.publisher.publish("pbx", [], [], flush=True), other())
    assert [v["id"] for _, v in rec.sent] == ids
    assert len(set(between) - {0, 5}) >= 2  # the other task ran while views were published

    ids = pending_incidents(daemon, 5)  # stopping while views go out: all still go out
    rec.sent.clear()
    task = asyncio.create_task(daemon.publisher.publish("pbx", [], [], flush=True))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [v["id"] for _, v in rec.sent] == ids
    await daemon.publisher.written()
    assert {i["id"] for i in daemon.store.incidents()} == set(ids)


async def test_a_big_state_is_saved_less_often(tmp_path: Path) -> None:
    snap = Snapshotter(inline_max=10.0, duty=0.05, hold_duty=0.05)
    assert snap.due()
    await snap.take({"pbx": lambda: slow({}, 0.02)})  # >= 20 ms: at most every 0.4 s or more
    assert snap.last_s >= 0.02 and not snap.due()
    # how long pickling took sets the pause (a loaded machine stretches the 20 ms): wait it out
    await asyncio.sleep(snap.last_s / 0.05 - (time.monotonic() - snap.taken_at) + 0.05)
    assert snap.due()
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path)})
    daemon = Daemon(s, StateStore.in_dir(tmp_path), [], [], ["pbx"])
    for event in feed(daemon, 3):
        await daemon.process(event)
    daemon.snapshotter.last_s, daemon.snapshotter.taken_at = 1.0, time.monotonic()
    await daemon.flush_async()  # not due: nothing saved, still dirty
    assert daemon.store.load_snapshot("pbx") is None and daemon._dirty == {"pbx"}
    await daemon.flush_final()  # stopping saves it whatever
    assert daemon.store.load_snapshot("pbx") is not None


async def test_what_holds_the_loop_is_paced_apart() -> None:
    """A pickle in place holds the loop all along, a child only for the fork() call: the
    next snapshot waits until that pause is at most `hold_duty` of the time."""
    snap = Snapshotter(inline_max=10.0, duty=1.0, hold_duty=0.1)
    await snap.take({"pbx": lambda: slow({}, 0.02)})  # in place: the loop held >= 20 ms
    assert snap.held_s == snap.last_s >= 0.02
    assert not snap.due()  # the pickling duty alone (1.0) would allow it at once
    await asyncio.sleep(snap.held_s / 0.1 - (time.monotonic() - snap.taken_at) + 0.05)
    assert snap.due()
    snap.inline_max = 0.0
    started = time.perf_counter()
    await snap.take({"pbx": lambda: slow({}, 0.3)})  # in a child: held only by fork()
    took = time.perf_counter() - started
    assert snap.forked == 1 and snap.last_s >= 0.3
    # the fork() call only (however long a loaded machine makes it), not the child's pickle
    assert 0.0 < snap.held_s <= took - 0.29


async def test_the_child_steps_aside_for_the_daemon() -> None:
    snap = Snapshotter(inline_max=0.0)
    snap.last_s = 1.0
    here = os.nice(0)
    got = await snap.take({"pbx": lambda: pickle.dumps((os.nice(0), len(os.sched_getaffinity(0))))})
    assert snap.forked == 1
    nice, cores = pickle.loads(got["pbx"])
    assert nice == min(19, here + 10) and cores == (os.cpu_count() or 1)


def baseline_made_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], set[int]]:
    """Record the pid of every process that makes a baseline's JSON; the pids so far."""
    from tollwatch import daemon as daemon_mod
    from tollwatch.rules.baseline_io import dumps

    made_in = tmp_path / "pids"

    def recorded(*args: object, **kwargs: object) -> str:
        with made_in.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return dumps(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(daemon_mod, "dumps", recorded)
    return lambda: {int(x) for x in made_in.read_text().split()}


@pytest.mark.parametrize("forked", [False, True])
async def test_a_due_baseline_is_written_by_the_snapshot_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forked: bool
) -> None:
    """Its JSON is made where the snapshot is pickled (a forked child for a big state), not on
    the loop; it is written only when due (BASELINE_EVERY), after the rows."""
    from tollwatch import daemon as daemon_mod
    from tollwatch.rules.baseline_io import dumps

    made_in = baseline_made_in(tmp_path, monkeypatch)
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path)})
    daemon = Daemon(s, StateStore.in_dir(tmp_path), [], [], ["pbx"])
    # every snapshot in a child, or none (whatever a loaded machine makes of a small pickle)
    daemon.snapshotter.inline_max = -1.0 if forked else float("inf")
    for event in feed(daemon, 30):
        await daemon.process(event)
    await daemon.flush_async()  # not due yet: the snapshot alone
    assert daemon.store.baselines() == {} and daemon._learned == {"pbx"}
    monkeypatch.setattr(daemon_mod, "BASELINE_EVERY", 0.0)
    daemon._dirty.add("pbx")
    daemon.snapshotter.taken_at = -float("inf")
    await daemon.flush_async()
    await daemon.publisher.written()
    expected = dumps(daemon.pipelines["pbx"].baseline, s.site.name)
    assert daemon.store.baselines() == {"pbx": expected} and not daemon._learned
    pids = made_in()
    assert daemon.snapshotter.forked == (2 if forked else 0)
    assert (os.getpid() not in pids) if forked else (pids == {os.getpid()})
    await daemon.publisher.close()


async def test_the_state_saved_at_stop_is_made_in_a_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping saves every changed state and learned baseline, built in a forked child
    (however small: the pickler's memo and the baseline's dicts stay out of the daemon; only
    the bytes come back); a restart finds them as they were."""
    from tests.test_daemon import run_until_idle
    from tollwatch.rules.baseline_io import dumps, to_dict

    made_in = baseline_made_in(tmp_path, monkeypatch)
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path), "snapshot_every": "1h"})
    daemon = Daemon(s, StateStore.in_dir(tmp_path), [], [], ["pbx"])
    for event in feed(daemon, 30):
        await daemon.process(event)
    await run_until_idle(daemon, lambda: True)  # starts, then stops at once
    assert daemon.snapshotter.forked == 1 and daemon.snapshotter.failed == 0
    assert made_in() and os.getpid() not in made_in()
    store = StateStore.in_dir(tmp_path)
    assert store.load_snapshot("pbx") == daemon.pipelines["pbx"].snapshot()
    assert store.baselines() == {"pbx": dumps(daemon.pipelines["pbx"].baseline, s.site.name)}
    assert not daemon._dirty and not daemon._learned
    again = Daemon(s, StateStore.in_dir(tmp_path), [], [], ["pbx"])
    again.restore()
    assert set(again.pipelines["pbx"].engine.tracker.open) == set(
        daemon.pipelines["pbx"].engine.tracker.open
    )
    assert to_dict(again.pipelines["pbx"].baseline) == to_dict(daemon.pipelines["pbx"].baseline)


async def test_a_failing_child_at_stop_still_saves_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_daemon import run_until_idle

    def no_fork() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path), "snapshot_every": "1h"})
    daemon = Daemon(s, StateStore.in_dir(tmp_path), [], [], ["pbx"])
    for event in feed(daemon, 5):
        await daemon.process(event)
    await run_until_idle(daemon, lambda: True)
    assert daemon.snapshotter.failed == 1 and daemon.snapshotter.forked == 0
    assert StateStore.in_dir(tmp_path).load_snapshot("pbx") == daemon.pipelines["pbx"].snapshot()
    assert StateStore.in_dir(tmp_path).baselines().keys() == {"pbx"}

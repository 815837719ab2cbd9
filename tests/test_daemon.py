"""The daemon with in-memory sources: incidents as they happen, restart mid-attack, shutdown."""

from __future__ import annotations

import asyncio
import csv
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import settings
from tests.test_parity import live_events
from tollwatch.alerting.base import IncidentView
from tollwatch.cdr_ingest.live import LiveEvent, SourceStatus
from tollwatch.daemon import Daemon
from tollwatch.state import StateStore

UTC = ZoneInfo("UTC")


class ListSource:
    """Puts given events on the queue, then stays 'connected' until cancelled."""

    def __init__(self, name: str, events: list[LiveEvent]) -> None:
        self.name = name
        self.events = events
        self.status = SourceStatus(name, "ami")

    async def run(self, queue: asyncio.Queue[LiveEvent]) -> None:
        self.status.connected = True
        for ev in self.events:
            await queue.put(ev)
        await asyncio.Event().wait()


class FlakySource(ListSource):
    """Fails twice before delivering: the supervisor must retry, not crash."""

    def __init__(self, name: str, events: list[LiveEvent]) -> None:
        super().__init__(name, events)
        self.attempts = 0

    async def run(self, queue: asyncio.Queue[LiveEvent]) -> None:
        self.attempts += 1
        if self.attempts <= 2:
            raise ConnectionRefusedError("connection refused")
        await super().run(queue)


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[tuple[str, IncidentView]] = []

    async def send(self, kind: str, view: IncidentView) -> None:
        self.sent.append((kind, view))


def attack_events(fixtures: Path) -> list[LiveEvent]:
    calls: list[dict[str, Any]] = []
    for r in csv.reader((fixtures / "Master-attack.csv").open()):
        def ts(x: str) -> datetime:
            return datetime.strptime(x, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        calls.append({"uid": r[16], "src": "209", "dst": r[2], "start": ts(r[9]),
                      "answer": ts(r[10]), "end": ts(r[11])})
    return live_events(calls)


async def run_until_idle(daemon: Daemon, until: Any, timeout: float = 10.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not until() and loop.time() < deadline:
        await asyncio.sleep(0.02)
    stop.set()
    await task


def make(tmp_path: Path, sources: list[Any], rec: Recorder) -> Daemon:
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path), "max_backoff": "1s"})
    # the recorded attack happened at 13:30 UTC; the daemon's clock says 13:31 that day
    return Daemon(s, StateStore.in_dir(tmp_path), sources, [rec], ["pbx"],
                  clock=lambda: datetime(2026, 11, 24, 13, 31, tzinfo=UTC))


async def test_attack_becomes_critical_by_the_tenth_call(tmp_path: Path, fixtures: Path) -> None:
    events = [e for e in attack_events(fixtures) if e.pbx == "pbx"]
    rec = Recorder()
    daemon = make(tmp_path, [ListSource("pbx", events)], rec)
    await run_until_idle(daemon, lambda: daemon.events == len(events))
    kinds = [(k, v["severity"]) for k, v in rec.sent]
    assert kinds[0] == ("opened", "warning")
    assert ("escalated", "critical") in kinds
    crit = next(v for k, v in rec.sent if k == "escalated")
    assert crit["source"] == "209" and len(crit["call_ids"]) <= 10
    stored = daemon.store.incidents()
    assert len(stored) == 1 and stored[0]["calls"] == 24


async def test_restart_mid_attack_continues_the_same_incident(
    tmp_path: Path, fixtures: Path
) -> None:
    events = attack_events(fixtures)
    half = len(events) // 2
    first, second = Recorder(), Recorder()
    d1 = make(tmp_path, [ListSource("pbx", events[:half])], first)
    await run_until_idle(d1, lambda: d1.events == half)
    d1.store.close()
    d2 = make(tmp_path, [ListSource("pbx", events[half:])], second)
    await run_until_idle(d2, lambda: d2.events == len(events) - half)
    ids = {v["id"] for _, v in first.sent} | {v["id"] for _, v in second.sent}
    assert len(ids) == 1  # the same incident across the restart
    opened = [k for k, _ in first.sent + second.sent if k == "opened"]
    escalated = [k for k, _ in first.sent + second.sent if k == "escalated"]
    assert len(opened) == 1 and len(escalated) == 1  # no duplicate alert
    [stored] = d2.store.incidents()
    assert stored["calls"] == 24 and stored["severity"] == "critical"


@pytest.mark.slow
async def test_failing_source_is_retried_and_status_written(tmp_path: Path, fixtures: Path) -> None:
    events = attack_events(fixtures)
    rec = Recorder()
    src = FlakySource("pbx", events)
    daemon = make(tmp_path, [src], rec)
    await run_until_idle(daemon, lambda: daemon.events == len(events), timeout=20)
    assert src.attempts == 3 and src.status.errors == 2
    assert daemon.events == len(events)
    status = daemon.store.read_status()
    assert status["source:pbx"][1]["connected"] is True
    assert status["daemon"][1]["open_incidents"] == 1


async def test_events_for_an_unknown_pbx_are_counted_not_fatal(tmp_path: Path) -> None:
    from tollwatch.cdr_ingest.live import CallEnded

    rec = Recorder()
    ev = CallEnded("elsewhere", "1.1", datetime(2026, 11, 24, tzinfo=UTC))
    daemon = make(tmp_path, [ListSource("x", [ev])], rec)
    await run_until_idle(daemon, lambda: daemon.errors == 1)
    assert daemon.errors == 1 and rec.sent == []


async def test_followed_master_csv_feeds_the_daemon(tmp_path: Path, fixtures: Path) -> None:
    """A PBX without AMI: old rows are history (skipped), appended rows are live."""
    from tollwatch.sources import csv_sources

    master = tmp_path / "Master.csv"
    calls = (fixtures / "Master-calls.csv").read_bytes()
    attack = (fixtures / "Master-attack.csv").read_bytes()
    master.write_bytes(attack)  # yesterday's attack, already in the file at first start
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path / "state")},
                 csv_sources=[{"name": "pbx", "path": str(master)}])
    rec = Recorder()
    store = StateStore.in_dir(tmp_path / "state")
    daemon = Daemon(s, store, [], [rec], ["pbx"],
                    clock=lambda: datetime(2026, 11, 24, 13, 31, tzinfo=UTC))
    [feed] = csv_sources(s, store)
    feed.follower.poll = 0.05
    daemon.sources.append(feed)
    with master.open("ab") as fh:
        fh.write(calls)  # today's normal calls arrive
    await run_until_idle(daemon, lambda: daemon.pipelines["pbx"].calls_seen == 5)
    assert daemon.pipelines["pbx"].calls_seen == 5  # the 24 old rows were not replayed
    assert rec.sent == []
    assert store.load_position(str(master)) is not None


async def test_a_quiet_hour_closes_the_incident_in_the_store(
    tmp_path: Path, fixtures: Path
) -> None:
    events = attack_events(fixtures)
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path)})
    # the daemon's clock is three hours after the attack: the first tick closes it
    daemon = Daemon(s, StateStore.in_dir(tmp_path), [ListSource("pbx", events)], [Recorder()],
                    ["pbx"], clock=lambda: datetime(2026, 11, 24, 16, 30, tzinfo=UTC))
    await run_until_idle(
        daemon, lambda: daemon.events == len(events) and not daemon.store.incidents(
            open_only=True) and bool(daemon.store.incidents()))
    [stored] = daemon.store.incidents()
    assert stored["severity"] == "critical" and stored["calls"] == 24
    assert daemon.store.incidents(open_only=True) == []
    assert daemon.pipelines["pbx"].engine.tracker.open == {}


async def test_live_views_count_minutes_of_calls_still_up(tmp_path: Path) -> None:
    from tollwatch.cdr_ingest.live import CallAnswered, CallStarted

    t0 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # night: off-hours
    events: list[LiveEvent] = []
    for i in range(5):  # five calls to Sierra Leone, answered, still up
        uid = f"1795500000.{i}"
        events.append(CallStarted("pbx", uid, t0, "209", "acme", f"01023276543{i:02d}",
                                  "carrier"))
        events.append(CallAnswered("pbx", uid, t0))
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path)},
                 rates={"per_minute": {"232": 1.5}})
    rec = Recorder()
    daemon = Daemon(s, StateStore.in_dir(tmp_path), [ListSource("pbx", events)], [rec], ["pbx"],
                    clock=lambda: datetime(2026, 11, 24, 2, 10, tzinfo=UTC))
    await run_until_idle(daemon, lambda: daemon.events == len(events) and bool(rec.sent))
    kind, view = rec.sent[-1]
    # critical at the 5th call's start (a walked number block): the 4 calls answered before it
    # have been up 10 minutes each by the daemon's clock
    assert (kind, view["calls"]) == ("escalated", 5)
    assert view["minutes"] == 40.0
    assert view["spend"] == 60.0

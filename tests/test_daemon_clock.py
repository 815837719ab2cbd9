"""Event time ahead of the daemon's clock (Asterisk's `Timestamp:` from a PBX clock ahead of
ours, a replay faster than real time): incidents still expire after their gap at a tick, and
a view counts minutes to the PBX's present; with event time = our clock nothing changes."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.helpers import settings
from tests.test_daemon import Recorder, attack_events
from tollwatch.cdr_ingest.live import CallAnswered, CallStarted, LiveEvent
from tollwatch.daemon import Daemon
from tollwatch.state import StateStore

UTC = ZoneInfo("UTC")
WALL = datetime(2026, 11, 24, 13, 31, tzinfo=UTC)  # the attack happened at 13:30 UTC


def daemon_at(tmp_path: Path, rec: Recorder, wall: datetime = WALL, **over: object) -> Daemon:
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path)}, **over)
    return Daemon(s, StateStore.in_dir(tmp_path), [], [rec], ["pbx"], clock=lambda: wall)


def shifted(events: list[LiveEvent], by: timedelta) -> list[LiveEvent]:
    return [dataclasses.replace(e, at=e.at + by) for e in events]  # type: ignore[call-arg]


def later_call(at: datetime) -> CallStarted:
    """A relevant call of another phone to another country: it moves the rules' clock and
    joins no incident."""
    uid = f"{at.timestamp():.0f}.9"
    return CallStarted("pbx", uid, at, "555", "acme", "01012125550123", "carrier")


async def run(daemon: Daemon, events: list[LiveEvent]) -> None:
    for event in events:
        await daemon.process(event)
        await daemon.publisher.publish_now()
    await daemon.tick()
    await daemon.publisher.publish_queued()
    await daemon.publisher.written()


async def test_an_incident_ahead_of_our_clock_expires_after_its_gap(
    tmp_path: Path, fixtures: Path
) -> None:
    ahead = timedelta(days=30)  # event time a month ahead of the daemon's clock
    events = shifted(attack_events(fixtures), ahead)
    last = max(e.at for e in events)
    daemon = daemon_at(tmp_path, Recorder())
    tracker = daemon.pipelines["pbx"].engine.tracker
    await run(daemon, [*events, later_call(last + timedelta(minutes=30))])
    assert len(tracker.open) == 1  # quiet for half an hour of its own time: still open
    await run(daemon, [later_call(last + timedelta(hours=3))])
    assert tracker.open == {}  # three hours: closed at the tick, by the PBX's clock
    [stored] = daemon.store.incidents()
    assert stored["calls"] == 24 and daemon.store.incidents(open_only=True) == []
    await daemon.publisher.close()


async def test_with_event_time_on_our_clock_an_incident_expires_as_before(
    tmp_path: Path, fixtures: Path
) -> None:
    events = attack_events(fixtures)
    last = max(e.at for e in events)
    soon = daemon_at(tmp_path / "a", Recorder(), wall=last + timedelta(minutes=30))
    await run(soon, events)
    assert len(soon.pipelines["pbx"].engine.tracker.open) == 1
    assert soon.now("pbx") == last + timedelta(minutes=30)  # our clock, not the last event's
    late = daemon_at(tmp_path / "b", Recorder(), wall=last + timedelta(hours=3))
    await run(late, events)
    assert late.pipelines["pbx"].engine.tracker.open == {}
    for daemon in (soon, late):
        await daemon.publisher.close()


async def test_a_view_counts_minutes_to_the_pbx_present(tmp_path: Path) -> None:
    t0 = WALL + timedelta(days=2)  # event time two days ahead of our clock
    events: list[LiveEvent] = []
    for i in range(5):  # five calls to Sierra Leone at night (off-hours), answered, still up
        uid = f"1795500000.{i}"
        at = t0 + timedelta(minutes=i)
        events.append(CallStarted("pbx", uid, at, "209", "acme", f"01023276543{i:02d}",
                                  "carrier"))  # fmt: skip
        events.append(CallAnswered("pbx", uid, at))
    rec = Recorder()
    daemon = daemon_at(tmp_path, rec, rates={"per_minute": {"232": 1.5}})
    await run(daemon, events)
    assert daemon.now("pbx") == t0 + timedelta(minutes=4)  # the last event's time
    # opened at the 5th call's start (t0 + 4 min): the 4 calls answered before it have been
    # up 4, 3, 2 and 1 minutes by the PBX's clock (by ours, not yet answered: 0)
    [(kind, view)] = rec.sent
    assert (kind, view["calls"], view["minutes"], view["spend"]) == ("opened", 5, 10.0, 15.0)
    await daemon.publisher.close()


def test_the_bench_stream_carries_event_time_pass_after_pass(tmp_path: Path) -> None:
    """`gen_ami.py --timestamps` stamps every message as timestampevents=yes does; the bench's
    sender rebases them to its clock and shifts each `--loop` pass by `pass_every`; the
    tracker takes the stamp as the event's time."""
    from bench.bench_daemon import looped, stamps
    from bench.gen_ami import generate
    from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
    from tollwatch.cdr_ingest.live.fake_ami import parse_frames
    from tollwatch.sources import cdr_options

    path = tmp_path / "ami.txt"
    path.write_bytes(b"".join(generate(40, concurrent=10, seed=3, timestamps=True)))
    span = stamps(path)
    assert span is not None and span[1] > span[0] + 60  # minutes of calls
    start, day = 1_800_000_000.0, 86_400.0
    msgs = parse_frames(b"".join(looped(path, 2, start, day)))
    assert msgs[-1]["Event"] == "FullyBooted" and "Timestamp" not in msgs[-1]
    times = [float(m["Timestamp"]) for m in msgs[:-1]]
    assert all("Timestamp" in m for m in msgs[:-1]) and len(times) % 2 == 0
    first, second = times[: len(times) // 2], times[len(times) // 2 :]
    assert first[0] == start and second[0] == start + day
    assert first == sorted(first) and second == sorted(second)
    assert [round(t - day, 6) for t in second] == [round(t, 6) for t in first]
    uids = {m["Uniqueid"] for m in msgs if "Uniqueid" in m}
    assert any(u.startswith("11796") for u in uids) and any(u.startswith("1796") for u in uids)
    tracker = AmiCallTracker("pbx", cdr_options(settings("JP", "UTC")))
    tracker.use_version("22.0.0")
    started = [ev for m in msgs for ev in tracker.feed(m, WALL) if isinstance(ev, CallStarted)]
    assert started and {e.at.timestamp() // day for e in started} == {
        start // day,
        start // day + 1,
    }  # the stamps' days, not our clock's (WALL)


def test_the_bench_site_clock_reads_the_hour_asked_whatever_the_time() -> None:
    """`bench_daemon.py --local-hour H`: a zone in which the run starts at H o'clock, so that
    runs at different times of day compare (the dense stream: office hours or after hours)."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from bench.bench_daemon import zone_at_hour

    start = datetime(2026, 12, 2, 0, 0, 30, tzinfo=UTC)
    for minutes in range(0, 24 * 60, 17):
        now = start + timedelta(minutes=minutes)
        for hour in range(24):
            zone = zone_at_hour(hour, now)
            assert now.astimezone(ZoneInfo(zone)).hour == hour, (now, hour, zone)

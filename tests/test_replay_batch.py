"""The batch replay's own promises: it turns the garbage collector off only while it runs, and
it leaves no reference cycles behind (so turning it off cannot make memory grow)."""

from __future__ import annotations

import gc
import random
from datetime import datetime, timedelta

from tests.helpers import Traffic, at, settings
from tollwatch.rules.batch import replay
from tollwatch.rules.engine import Engine, events_for, relevant
from tollwatch.rules.model import AuthEvent, Call, Finding

NUMBERS = [
    "0102327654300",
    "0105358001122",
    "01044201234567",
    "01033123456789",
    "0101876555123",
    "0112025550100",
    "01086101234567",
]


def busy_traffic() -> Traffic:
    """Three weeks of many sources calling abroad, day and night, with floods to a premium
    range from several phones (windows, bursts, incidents opening and closing, the baseline
    rolling days)."""
    rng = random.Random(12)
    traffic = Traffic(settings("JP", "Asia/Tokyo"))
    t = at("2026-11-02T08:00", "Asia/Tokyo")
    for i in range(3000):
        t += timedelta(seconds=rng.randint(30, 900))
        number = rng.choice(NUMBERS) + (str(rng.randint(0, 9)) if rng.random() < 0.5 else "")
        traffic.call(
            f"2{rng.randint(0, 40):02d}",
            number,
            t,
            talk=rng.choice([3, 60, 2400]),
            ring=rng.randint(0, 20),
            answered=rng.random() < 0.8,
        )
        if i % 500 == 250:  # a flood to one premium block from five phones
            for k in range(30):
                traffic.call(f"3{k % 5:02d}", f"01023276543{k:02d}", t + timedelta(seconds=k))
    return traffic


def test_replay_leaves_no_reference_cycles_and_restores_the_collector() -> None:
    traffic = busy_traffic()
    engine = Engine.from_settings(traffic.settings)
    calls = sorted(filter(relevant, traffic.calls), key=lambda c: c.start)
    found: list[int] = []  # objects each collection found unreachable, from here on

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            found.append(info["collected"])

    gc.collect()
    assert gc.isenabled()
    gc.callbacks.append(count)
    try:
        incidents = replay(engine, calls)
        assert gc.isenabled()
        gc.collect()
    finally:
        gc.callbacks.remove(count)
    assert any(i.severity.label == "critical" for i in incidents)
    assert len(engine.tracker.closed) > 1  # incidents also closed (gap) along the way
    assert sum(found) == 0  # nothing the replay dropped was kept alive by a cycle


def test_replay_leaves_the_collector_off_when_it_was_off() -> None:
    traffic = busy_traffic()
    gc.disable()
    try:
        replay(Engine.from_settings(traffic.settings), [])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_replay_leaves_out_a_rule_idle_until_a_security_event_and_only_then() -> None:
    traffic = Traffic(settings("JP", "Asia/Tokyo"))
    t0 = at("2026-11-24T13:29:20")
    call = traffic.call("209", "01044201234567", t0 + timedelta(minutes=5), talk=60)
    engine = Engine.from_settings(traffic.settings)
    auth = next(r for r in engine.rules if r.rule_type == "auth_failures")
    asked: list[str] = []
    on_start = auth.on_start

    def spy(c: Call, now: datetime) -> list[Finding]:
        asked.append(c.call_id)
        return on_start(c, now)

    auth.on_start = spy  # type: ignore[method-assign]
    engine.leave_out_idle(False)  # dispatch lists made again, with the spy
    assert auth.start_idle()
    replay(engine, [call])
    assert asked == []  # no break-in: not asked
    later = traffic.call("209", "01044201234567", t0 + timedelta(minutes=9))
    for event in events_for(later):
        engine.handle(event)
    assert asked == [later.call_id]  # after the replay, live events reach it again
    engine = Engine.from_settings(traffic.settings)
    auth = next(r for r in engine.rules if r.rule_type == "auth_failures")
    for i in range(6):
        engine.handle_auth(AuthEvent(t0 + timedelta(seconds=i), "failed", "209", "198.51.100.7"))
    engine.handle_auth(AuthEvent(t0 + timedelta(minutes=1), "success", "209", "198.51.100.7"))
    assert not auth.start_idle()
    replay(engine, [call])
    inc = next(i for i in engine.tracker.all_incidents() if i.source == "209")
    assert "auth_failures" in inc.hits and inc.severity.label == "critical"

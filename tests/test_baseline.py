"""Baselines: learning, cold start, no look-ahead, persistence, and the rules that use them."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Traffic, at, settings
from tests.test_daemon import ListSource, Recorder
from tests.test_parity import live_events
from tollwatch.config import Settings
from tollwatch.daemon import Daemon
from tollwatch.rules.baseline import Baseline
from tollwatch.rules.baseline_io import dumps, load_file, loads, new_baseline, to_dict
from tollwatch.rules.engine import Engine
from tollwatch.rules.incidents import Incident, Severity
from tollwatch.rules.model import Call
from tollwatch.state import StateStore

MONDAY = at("2026-09-07 00:00")  # history starts here; scored week starts four weeks later
SCORED = MONDAY + timedelta(weeks=4)
US = "001212{:07d}"  # New York; numbers spread (not one block dialed in sequence)


def us(n: int) -> str:
    return US.format(n * 7919 % 10**7)


def office(t: Traffic, weeks: int = 4, per_slot: int = 4, mexico: bool = True) -> None:
    """Weekdays: `per_slot` calls to the US each 10 minutes 13:00-15:00 from different phones,
    and (mexico) a team of three calling Mexico every working day."""
    n = 0
    for day in range(weeks * 7):
        start = MONDAY + timedelta(days=day)
        if start.weekday() >= 5:
            continue
        for slot in range(12):
            for k in range(per_slot):
                n += 1
                t.call(f"2{k:02d}", us(n % 1000),
                       start + timedelta(hours=13, minutes=10 * slot, seconds=30 * k), talk=120)
        if mexico:
            for k in range(3):
                t.call(f"3{k:02d}", f"00525512345{k:02d}", start + timedelta(hours=10, minutes=k))


def engine_after(t: Traffic) -> Engine:
    engine = Engine.from_settings(t.settings)
    from tollwatch.rules.batch import replay

    replay(engine, sorted(t.calls, key=lambda c: c.start))
    return engine


def critical(incidents: list[Incident]) -> list[Incident]:
    return [i for i in incidents if i.severity == Severity.CRITICAL]


def test_volume_learned_by_hour_of_week_after_min_history() -> None:
    t = Traffic(settings("GB", "UTC"))
    office(t, weeks=4)
    b = engine_after(t).baseline
    assert b is not None
    tuesday = SCORED + timedelta(days=1, hours=14, minutes=5)
    usual = b.volume("international", timedelta(minutes=10), tuesday)
    assert usual is not None
    count, label = usual
    assert label == "Tuesday 14:00"
    assert 4 <= count <= 12  # 4 calls per 10 min; buckets straddle (at most 3 x 4)
    # nothing normal at 03:00 on a Tuesday, nor on a Saturday afternoon
    assert b.volume("international", timedelta(minutes=10), tuesday - timedelta(hours=11)) \
        == (0, "Tuesday 03:00")
    assert b.is_routine("MX") and not b.is_routine("SL")
    # cold start: after one week nothing is ready, volume queries say None (floors apply)
    early = Traffic(settings("GB", "UTC"))
    office(early, weeks=1)
    b1 = engine_after(early).baseline
    assert b1 is not None
    assert b1.volume("international", timedelta(minutes=10), MONDAY + timedelta(days=8)) is None


def test_pbx_burst_threshold_follows_the_site_and_says_why() -> None:
    low = {"warning_score": 40}  # burst_pbx alone (50) then makes an incident to look at
    t = Traffic(settings("GB", "UTC", incidents=low))
    office(t, weeks=4, per_slot=12)  # a busy site: 12 international calls every 10 minutes
    tuesday = SCORED + timedelta(days=1, hours=14)
    for k in range(12):  # an ordinary busy Tuesday afternoon slot: 12 calls
        t.call(f"2{k:02d}", us(900 + k), tuesday + timedelta(seconds=20 * k))
    incidents = t.run(only=["burst_pbx"])
    assert incidents == []  # 12 in 10 min is normal here (floor 30 would also hold)
    t2 = Traffic(settings("GB", "UTC", incidents=low))
    office(t2, weeks=4, per_slot=12)
    for k in range(80):  # 80 calls in 10 minutes, well above 2 x usual
        t2.call(f"2{k % 40:02d}", us(k), tuesday + timedelta(seconds=7 * k))
    found = t2.run(only=["burst_pbx"])
    reasons = [r for i in found for r in i.reasons()]
    assert any("usual for Tuesday 14:00 is ≤" in r for r in reasons), reasons
    assert all("threshold 30" not in r for r in reasons)  # the learned one is higher


def test_routine_high_risk_scores_like_any_call_abroad_new_one_does_not() -> None:
    t = Traffic(settings("GB", "UTC"))
    office(t, weeks=4)
    evening = SCORED + timedelta(days=1, hours=21)  # Tuesday 21:00, office closed
    t.call("300", "0052551234500", evening)  # Mexico: routine for this site
    t.call("201", "002327654321", evening + timedelta(hours=1))  # Sierra Leone: never
    incidents = t.run()
    sources = {i.source: i for i in incidents}
    assert "300" not in sources  # off-hours 30 only: no incident
    assert "201" in sources and sources["201"].severity == Severity.WARNING
    assert any("high-risk" in r for r in sources["201"].reasons())


def test_slow_drip_to_a_new_high_risk_country_goes_critical_while_calls_are_up() -> None:
    t = Traffic(settings("GB", "UTC"))
    office(t, weeks=4)
    tuesday = SCORED + timedelta(days=1, hours=14)
    calls: list[Call] = []
    for k, minute in enumerate((0, 8, 17, 26, 38, 50)):
        calls.append(t.call("207", f"0025261234{k:03d}", tuesday + timedelta(minutes=minute),
                            talk=27 * 60, ring=5))
    incidents = critical(t.run())
    assert len(incidents) == 1 and incidents[0].source == "207"
    inc = incidents[0]
    assert {c.call_id for c in calls} & set(inc.calls)
    detected = inc.detected_at[Severity.CRITICAL]
    assert detected < max(c.end for c in calls if c.end)  # before the calls hang up
    assert any("min to high-risk or new destinations" in r for r in inc.reasons())


def test_no_look_ahead_an_attack_does_not_teach_itself() -> None:
    """A burst to a new high-risk country from many phones on one day: routine needs days
    before the call, so the attack's own calls never make the destination routine."""
    t = Traffic(settings("GB", "UTC"))
    office(t, weeks=4)
    wed = SCORED + timedelta(days=2, hours=11)
    for k in range(12):  # forwarded-style: 12 different sources, 2 minutes
        t.call(f"9{k:02d}", f"0023277{k:06d}", wed + timedelta(seconds=10 * k))
    found = critical(t.run())
    assert found and found[0].source == "*"
    assert any("high-risk calls PBX-wide" in r for r in found[0].reasons())
    engine = engine_after(t)
    assert engine.baseline is not None
    assert not engine.baseline.is_routine("SL", wed + timedelta(hours=1))


def test_night_desk_at_its_usual_hours_is_not_off_hours() -> None:
    t = Traffic(settings("GB", "UTC"))
    office(t, weeks=4)
    for day in range(28 + 2):
        night = MONDAY + timedelta(days=day, hours=2)
        for k in range(5):
            t.call("250", us(500 + k), night + timedelta(minutes=9 * k))
    incidents = t.run(only=["off_hours"])
    late = [i for i in incidents if i.first_call_at >= SCORED]
    assert late == []  # the same desk, learned: no longer off-hours
    early = [i for i in incidents if i.first_call_at < MONDAY + timedelta(days=3)]
    assert early  # before the baseline knew the desk, the shipped rule applied


def test_baseline_json_round_trip_and_daemon_restart(tmp_path: Path) -> None:
    s = settings("GB", "UTC", daemon={"data_dir": str(tmp_path)})
    t = Traffic(s)
    office(t, weeks=3)
    b = engine_after(t).baseline
    assert b is not None
    copy = loads(new_baseline(s), dumps(b))
    assert to_dict(copy) == to_dict(b)

    calls: list[dict[str, Any]] = [
        {"uid": f"u{k}", "src": "201", "dst": f"005255123450{k}",
         "start": MONDAY + timedelta(minutes=k), "answer": MONDAY + timedelta(minutes=k),
         "end": MONDAY + timedelta(minutes=k, seconds=30)}
        for k in range(3)
    ]

    async def run_once(events: list[Any]) -> Daemon:
        daemon = Daemon(s, StateStore.in_dir(tmp_path), [ListSource("pbx", events)],
                        [Recorder()], ["pbx"])
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if daemon.events >= len(events):
                break
        stop.set()
        await task
        return daemon

    first = asyncio.run(run_once(live_events(calls)))
    learned = to_dict(first.pipelines["pbx"].baseline)
    assert learned["dest_days"] == {"MX": ["2026-09-07"]}
    second = asyncio.run(run_once([]))  # restart, nothing new: the baseline is back
    assert to_dict(second.pipelines["pbx"].baseline) == learned
    assert StateStore.in_dir(tmp_path).baselines()["pbx"]


def _learned_file(tmp_path: Path, weeks: int) -> tuple[Baseline, Settings]:
    """An office's learned baseline saved to a file, and settings that start from it."""
    from tollwatch.rules.baseline_io import save

    t = Traffic(settings("GB", "UTC"))
    office(t, weeks=weeks)
    b = engine_after(t).baseline
    assert b is not None
    save(b, tmp_path / "learned.json")
    return b, settings("GB", "UTC", baseline={"file": str(tmp_path / "learned.json")})


def test_daemon_starts_from_a_learned_file(tmp_path: Path) -> None:
    b, s = _learned_file(tmp_path, weeks=3)
    daemon = Daemon(s, StateStore.in_dir(tmp_path / "state"), [], [], ["pbx"])
    daemon.restore()
    assert daemon.pipelines["pbx"].baseline.is_routine("MX", None)
    assert to_dict(daemon.pipelines["pbx"].baseline) == to_dict(b)


def test_a_loaded_baseline_is_indexed_at_start_not_at_the_first_roll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The day index (what each day added, for forgetting it) is built when the daemon
    restores, so the first day roll after a restart, on the event loop, does not build it;
    the roll then forgets exactly what it would have."""
    b, s = _learned_file(tmp_path, weeks=5)
    daemon = Daemon(s, StateStore.in_dir(tmp_path / "state"), [], [], ["pbx"])
    daemon.restore()
    restored = daemon.pipelines["pbx"].baseline
    lazy = load_file(tmp_path / "learned.json", s)  # loaded as a scan does: not indexed yet
    built: list[int] = []
    real = Baseline._index

    def spy(self: Baseline) -> Any:
        built.append(id(self))
        return real(self)

    monkeypatch.setattr(Baseline, "_index", spy)
    assert b.last_day is not None
    later = b.last_day + timedelta(days=3)
    restored._roll(later)
    lazy._roll(later)
    assert built == [id(lazy)]  # the restored one was indexed by restore()
    assert to_dict(restored) == to_dict(lazy) != to_dict(b)


def _when(d: datetime) -> str:
    return d.strftime("%Y-%m-%d %H:%M:%S")


def test_exposure_counts_cost_where_rates_are_set() -> None:
    rules = {"long_call": {"exposure_minutes": 0, "exposure_pbx_minutes": 0,
                           "exposure_amount": 40.0}}
    s = settings("GB", "UTC", rates={"per_minute": {"252": 2.0}},
                 rules=[{"name": k, **v} for k, v in rules.items()])
    t = Traffic(s)
    office(t, weeks=4)
    tuesday = SCORED + timedelta(days=1, hours=14)
    t.call("207", "0025261234000", tuesday, talk=25 * 60)  # 50.00 after 25 min
    engine = Engine.from_settings(s, {"long_call": {"type": "long_call", **rules["long_call"],
                                                    "score": 20, "exposure_score": 60}})
    from tollwatch.rules.batch import replay

    found = replay(engine, sorted(t.calls, key=lambda c: c.start))
    [inc] = found
    [reason] = inc.reasons()
    assert "estimated" in reason and "threshold 40.00 USD" in reason
    call = t.calls[-1]
    assert call.end is not None
    first = inc.hits["long_call"].first_at  # fired while the call was up, at 40.00
    assert call.start + timedelta(minutes=19) <= first <= call.start + timedelta(minutes=21)


def test_pair_never_seen_scores_a_little_more_if_high_risk() -> None:
    t = Traffic(settings("GB", "UTC", incidents={"warning_score": 5}))
    office(t, weeks=4)
    tuesday = SCORED + timedelta(days=1, hours=11)
    t.call("299", "0052551234599", tuesday)  # Mexico: known to the PBX, new for 299
    t.call("298", us(4242), tuesday)  # the US: known, new for 298
    t.call("200", us(4343), tuesday)  # the US from a desk that calls it: nothing
    by_source = {i.source: i for i in t.run(only=["new_destination"])}
    assert by_source["299"].score == 10 and by_source["298"].score == 5
    assert "200" not in by_source
    assert "299 never called Mexico (+52) before" in by_source["299"].reasons()


def test_concurrent_threshold_follows_the_usual_calls_up() -> None:
    s = settings("GB", "UTC", incidents={"warning_score": 30})
    t = Traffic(s)
    n = 0
    for day in range(28):  # every weekday 15:00: 14 calls up at once for 20 minutes
        start = MONDAY + timedelta(days=day, hours=15)
        if start.weekday() < 5:
            for k in range(14):
                n += 1
                t.call(f"2{k:02d}", us(n), start + timedelta(seconds=k), talk=1200)
    tuesday = SCORED + timedelta(days=1, hours=15)
    for k in range(14):  # the same on an ordinary Tuesday: usual, no finding
        t.call(f"2{k:02d}", us(9000 + k), tuesday + timedelta(seconds=k), talk=1200)
    assert t.run(only=["concurrent"]) == [] or all(
        i.first_call_at < SCORED for i in t.run(only=["concurrent"]))
    for k in range(30):  # 44 up at once: above 2 x 14
        t.call(f"4{k:02d}", us(9500 + k), tuesday + timedelta(minutes=5, seconds=k), talk=600)
    late = [i for i in t.run(only=["concurrent"]) if i.first_call_at >= SCORED]
    assert late and any("usual for Tuesday 15:00 is ≤ 14" in r for r in late[0].reasons())


def test_usual_is_the_quantile_of_each_days_busiest_window_overlapping_the_hour() -> None:
    """`usual` against its definition written out: for each day of the kind in the span, the
    most calls in `k` consecutive 5-minute buckets (k = the window in buckets, plus one) of
    the windows overlapping the hour, clamped at the day's ends; then the quantile."""
    import math
    import random

    from tollwatch.rules.baseline import BUCKET, BUCKETS, PER_HOUR, DayStats

    rng = random.Random(12)
    b = Engine.from_settings(settings("GB", "UTC")).baseline
    assert b is not None
    first = MONDAY.date()
    for i in range(21):
        stats = DayStats(i % 7)
        stats.intl = [rng.choice((0, 0, 1, 2, 7)) for _ in range(BUCKETS)]
        stats.novel = [rng.choice((0, 0, 0, 1, 3)) for _ in range(BUCKETS)]
        b.days[first + timedelta(days=i)] = stats

    def plain(counts: list[int], hour: int, k: int) -> int:
        def total(lo: int, hi: int) -> int:
            return sum(counts[max(0, lo) : min(BUCKETS, hi)])

        return max(total(s, s + k) for s in range(hour * PER_HOUR - k + 1, (hour + 1) * PER_HOUR))

    for window in (timedelta(minutes=1), timedelta(minutes=10), timedelta(hours=3)):
        k = max(1, math.ceil(window.total_seconds() / BUCKET)) + 1
        for what, field in (("international", "intl"), ("high_risk", "novel")):
            for hour in (0, 1, 11, 22, 23):
                for kind in (0, 6):
                    start, today = first + timedelta(days=2), first + timedelta(days=19)
                    values = sorted(
                        plain(getattr(s, field), hour, k)
                        for d, s in b.days.items() if start <= d < today and s.kind == kind
                    )
                    rank = max(0, math.ceil(b.options.quantile * len(values)) - 1)
                    assert b.usual(kind, hour, what, window, start, today) == values[rank]

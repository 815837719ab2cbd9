"""Each rule, and the scenarios the brief sets for the defaults, on event time."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.helpers import Traffic, at, settings
from tollwatch.rules.incidents import Severity
from tollwatch.rules.model import Call

SL = "0102327654321"  # Sierra Leone, high-risk
UK = "01044201234567"  # United Kingdom, not high-risk
ES = "01034911234567"  # Spain, on the high-risk list
TOKYO = "0312345678"


def jp(**extra: object) -> Traffic:
    return Traffic(settings("JP", "Asia/Tokyo", **extra))  # type: ignore[arg-type]


def test_salesperson_calling_spain_on_tuesday_afternoon_is_no_incident() -> None:
    t = jp()
    t.call("201", ES, at("2026-11-24T15:00", "Asia/Tokyo"), talk=600)
    t.call("201", TOKYO, at("2026-11-24T15:20", "Asia/Tokyo"), talk=60)
    assert t.run() == []


def test_twenty_calls_to_sierra_leone_at_3am_sunday_is_critical() -> None:
    t = jp()
    start = at("2026-11-29T03:00", "Asia/Tokyo")  # a Sunday
    for i in range(20):  # spread over three hours: no burst, no concurrency
        t.call("205", f"010232765{i:04d}"[:13], start + timedelta(minutes=9 * i), talk=120)
    [inc] = t.run()
    assert inc.severity == Severity.CRITICAL
    assert inc.source == "205"
    assert len(inc.calls) == 20
    assert inc.hits["high_risk_destination"].score == 70  # ten or more within 6h
    assert inc.hits["off_hours"].score == 60  # five or more within 6h


def test_a_few_evening_calls_abroad_are_at_most_a_warning() -> None:
    t = jp()
    evening = at("2026-11-24T20:30", "Asia/Tokyo")
    for i, number in enumerate([UK, ES, "0103312345678", "01049301234567", UK]):
        t.call("214", number, evening + timedelta(minutes=15 * i), talk=300)
    [inc] = t.run()
    assert inc.severity == Severity.WARNING


def test_burst_on_a_public_holiday_at_10am_is_critical() -> None:
    t = jp()
    start = at("2026-11-03T10:00", "Asia/Tokyo")  # Culture Day, a Tuesday
    for i in range(8):
        t.call("207", f"0104420123456{i}", start + timedelta(seconds=40 * i), talk=30)
    [inc] = t.run()
    assert inc.severity == Severity.CRITICAL
    assert "burst" in inc.hits
    assert "public holiday (Culture Day)" in inc.hits["off_hours"].reason


def test_high_risk_alone_scores_below_warning() -> None:
    t = jp()
    t.call("201", SL, at("2026-11-24T11:00", "Asia/Tokyo"))
    engine_incidents = t.run(only=["high_risk_destination"])
    assert engine_incidents == []


def test_off_hours_single_call_to_high_risk_is_a_warning() -> None:
    t = jp()
    c = t.call("201", SL, at("2026-11-24T23:30", "Asia/Tokyo"))
    [inc] = t.run()
    assert inc.severity == Severity.WARNING
    assert inc.detected_at[Severity.WARNING] == c.start
    assert "outside business hours (08:00-20:00)" in inc.hits["off_hours"].reason


def test_closure_day_counts_as_off_hours() -> None:
    t = jp(hours={"closures": ["2026-12-29"]})
    t.call("201", SL, at("2026-12-29T11:00", "Asia/Tokyo"))
    [inc] = t.run()
    assert "closure day" in inc.hits["off_hours"].reason


def test_burst_per_source_needs_the_count_within_the_window() -> None:
    t = jp()
    start = at("2026-11-24T11:00", "Asia/Tokyo")
    for i in range(7):  # 7 < 8
        t.call("201", UK, start + timedelta(seconds=60 * i), talk=20)
    t.call("201", UK, start + timedelta(minutes=11), talk=20)  # first call left the window
    assert t.run(only=["burst"]) == []


def test_burst_pbx_wide_from_many_sources_is_one_pbx_incident() -> None:
    t = jp(incidents={"warning_score": 50})
    start = at("2026-11-24T11:00", "Asia/Tokyo")
    for i in range(30):
        t.call(f"2{i:02d}", UK, start + timedelta(seconds=15 * i), talk=10)
    [inc] = t.run(only=["burst_pbx"])
    assert inc.source == "*"
    assert len(inc.sources) == 30
    assert inc.hits["burst_pbx"].reason.startswith("30 international calls PBX-wide")


def test_off_hours_pbx_burst_is_critical_and_ignores_business_hours() -> None:
    t = jp()
    night = at("2026-11-28T02:00", "Asia/Tokyo")  # a Saturday night
    for i in range(10):  # ten compromised phones, one call each, within half an hour
        t.call(f"3{i:02d}", UK, night + timedelta(minutes=3 * i), talk=60)
    day = at("2026-11-24T11:00", "Asia/Tokyo")
    for i in range(10):  # the same at 11 a.m. on a Tuesday: nothing
        t.call(f"3{i:02d}", UK, day + timedelta(minutes=3 * i), talk=60)
    [inc] = t.run(only=["burst_off_hours"])
    assert inc.source == "*" and inc.severity == Severity.CRITICAL
    assert len(inc.calls) == 10 and inc.first_call_at == night


def test_concurrent_counts_calls_up_at_once() -> None:
    t = jp(incidents={"warning_score": 40})
    start = at("2026-11-24T11:00", "Asia/Tokyo")
    for i in range(10):
        t.call("201", UK, start + timedelta(seconds=i), talk=300)
    t.call("202", UK, start + timedelta(hours=1), talk=300)
    [inc] = t.run(only=["concurrent"])
    assert inc.hits["concurrent"].reason.startswith("10 international calls up at once")
    t2 = jp(incidents={"warning_score": 40})
    for i in range(10):  # one after another: never more than one up
        t2.call("201", UK, start + timedelta(minutes=i), talk=30)
    assert t2.run(only=["concurrent"]) == []


def test_sequential_dialing_walks_a_block() -> None:
    t = jp(incidents={"warning_score": 60})
    start = at("2026-11-24T11:00", "Asia/Tokyo")
    for i in range(5):
        t.call("209", f"01023276543{i:02d}", start + timedelta(minutes=5 * i), talk=30)
    [inc] = t.run(only=["sequential_dialing"])
    assert "block +23276543xx" in inc.hits["sequential_dialing"].reason
    t2 = jp(incidents={"warning_score": 60})
    for i in range(5):  # same number again and again is not walking a range
        t2.call("209", SL, start + timedelta(minutes=5 * i), talk=30)
    assert t2.run(only=["sequential_dialing"]) == []


def test_new_destination_after_min_history() -> None:
    t = jp(incidents={"warning_score": 20})
    day0 = at("2026-11-02T11:00", "Asia/Tokyo")
    t.call("201", UK, day0)
    t.call("201", UK, day0 + timedelta(days=8))
    c = t.call("201", "0103312345678", day0 + timedelta(days=8, hours=1))  # France: new
    [inc] = t.run(only=["new_destination"])
    assert [x.call_id for x in inc.ordered_calls()] == [c.call_id]
    assert "first call to France (+33)" in inc.hits["new_destination"].reason


def test_new_destination_silent_during_warm_up() -> None:
    t = jp(incidents={"warning_score": 20})
    t.call("201", "0103312345678", at("2026-11-02T11:00", "Asia/Tokyo"))
    assert t.run(only=["new_destination"]) == []


def test_long_call_fires_while_the_call_is_still_up() -> None:
    t = jp(incidents={"warning_score": 20})
    c = t.call("201", UK, at("2026-11-24T11:00", "Asia/Tokyo"), talk=3 * 3600)
    [inc] = t.run(only=["long_call"])
    hit = inc.hits["long_call"]
    assert c.answer is not None and c.end is not None
    assert hit.first_at == c.answer + timedelta(minutes=30)
    assert hit.first_at < c.end


def test_short_call_flood() -> None:
    t = jp(incidents={"warning_score": 40})
    start = at("2026-11-24T11:00", "Asia/Tokyo")
    for i in range(10):
        t.call("203", f"0104420123{i:04d}", start + timedelta(seconds=30 * i), talk=3)
    [inc] = t.run(only=["short_call_flood"])
    assert inc.hits["short_call_flood"].reason.startswith("10 international calls shorter")


def test_spend_fires_before_hangup_on_an_expensive_call() -> None:
    t = jp(rates={"per_minute": {"232": 2.0}}, incidents={"warning_score": 60})
    c = t.call("201", SL, at("2026-11-24T11:00", "Asia/Tokyo"), talk=3600)
    [inc] = t.run(only=["spend"])
    hit = inc.hits["spend"]
    assert c.answer is not None and c.end is not None
    assert hit.first_at == c.answer + timedelta(minutes=25)  # 25 min x 2.00 = 50.00
    assert hit.first_at < c.end
    assert hit.reason.startswith("estimated spend 120.00 USD within 1h")


def test_incident_gap_splits_attacks() -> None:
    t = jp()
    for day in ("2026-11-29T03:00", "2026-11-29T09:00"):
        for i in range(8):
            t.call("205", SL, at(day, "Asia/Tokyo") + timedelta(seconds=30 * i), talk=20)
    incidents = t.run()
    assert len(incidents) == 2
    assert all(i.severity == Severity.CRITICAL for i in incidents)


def test_per_source_allowlist_exempts_destination_rules_only() -> None:
    t = jp(allowlist={"sources": {"201": ["232"]}})
    t.call("201", SL, at("2026-11-24T23:30", "Asia/Tokyo"))
    t.call("202", SL, at("2026-11-24T23:30", "Asia/Tokyo"))
    [inc] = t.run()  # 201 may call Sierra Leone: only off_hours (30) is left, below warning
    assert inc.source == "202"
    assert set(inc.hits) == {"high_risk_destination", "off_hours"}


def test_auth_failures_then_success_then_calls_abroad_is_critical() -> None:
    from tollwatch.rules.model import AuthEvent

    t = jp()
    s = t.settings
    from tollwatch.rules.engine import Engine

    engine = Engine.from_settings(s, {k: v.model_dump() for k, v in s.rules.items()})
    t0 = at("2026-11-24T13:29:20")
    changes = []
    for i in range(6):
        ev = AuthEvent(t0 + timedelta(seconds=i), "failed", "209", "198.51.100.7", "PJSIP")
        changes += engine.handle_auth(ev)
    incidents = engine.tracker.all_incidents()
    assert {i.source for i in incidents} == {"209", "from 198.51.100.7"}
    assert all(i.severity == Severity.WARNING for i in incidents)
    engine.handle_auth(AuthEvent(t0 + timedelta(minutes=1), "success", "209", "198.51.100.7"))
    call = t.call("209", UK, t0 + timedelta(minutes=5), talk=60)  # not high-risk, daytime
    from tollwatch.rules.engine import events_for

    for ev in events_for(call):
        engine.handle(ev)
    inc = next(i for i in engine.tracker.all_incidents() if i.source == "209")
    assert inc.severity == Severity.CRITICAL
    assert inc.detected_at[Severity.CRITICAL] == call.start
    assert "logged in at 2026-11-24 13:30:20 UTC after repeated failed attempts" in (
        inc.hits["auth_failures"].reason)


def test_exposure_minutes_summed_as_each_calls_minutes() -> None:
    """long_call's total over the exposed calls (one loop, min and max written out) is the sum
    of each call's talk minutes within [since, now], to the last bit: calls up, ended,
    unanswered, answered before `since`, ending after `now`."""
    import random

    from tollwatch.rules.builtin.long_call import _total_minutes

    def _minutes(c: Call, since: datetime, now: datetime) -> float:  # the plain definition
        if c.answer is None:
            return 0.0
        stop = c.end if c.ended and c.end is not None else now
        return max(0.0, (min(stop, now) - max(c.answer, since)).total_seconds()) / 60.0

    rng = random.Random(7)
    t = Traffic(settings("GB", "UTC"))
    base = at("2026-10-05 09:00")
    for i in range(400):
        c = t.call(f"2{i % 9:02d}", "0012125550123", base + timedelta(seconds=rng.uniform(0, 7200)),
                   talk=rng.choice((0.0, 0.4, 59.9, 600.25, 5400.0)), ring=rng.uniform(0, 30),
                   answered=rng.random() < 0.8)
        c.ended = rng.random() < 0.5
    for k in range(1, 60):
        calls = rng.sample(t.calls, k)
        now = base + timedelta(seconds=rng.uniform(0, 9000))
        since = now - timedelta(hours=rng.choice((0.5, 2)))
        assert _total_minutes(calls, since, now) == sum(_minutes(c, since, now) for c in calls)

"""An incident keeps exact aggregates and the details of its first and last calls only; its view
(the daemon's and `scan`'s) equals one built from scratch over every call, step by step."""

from __future__ import annotations

import pickle
import random
from collections import Counter, deque
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import settings
from tollwatch.live_views import IncidentViews
from tollwatch.report_format import _iso, incident_dict, not_listed
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.incident_calls import IncidentCalls
from tollwatch.rules.incidents import Incident, RuleHit, Severity
from tollwatch.rules.model import Call

TZ = ZoneInfo("Asia/Tokyo")
T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
CLASSIFIER = Classifier(settings("JP", "UTC", rates={"per_minute": {"232": 1.2, "53": 0.7}}))
NUMBERS = ["0102327654321", "0102327654399", "01053580011", "01044201234567", "0101876555123",
           "+77011234567", "0312345678"]  # fmt: skip


def from_scratch(inc: Incident, every: list[Call], limit: tuple[int, int],
                 now: datetime | None) -> dict[str, Any]:
    """The view as it was built before the cap, over every call; the listed calls: the first
    and last ones added and those still up."""
    first, last = limit
    listed = {c.call_id: c for c in every[:first] + every[first:][-last:] if last} | {
        c.call_id: c for c in every[:first]}
    listed |= {c.call_id: c for c in every if not (c.ended and c.end is not None)}
    shown = sorted(listed.values(), key=lambda c: (c.start, c.call_id))
    accounts = sorted({c.account for c in every if c.account})
    numbers = Counter(c.dest.e164 for c in every if c.dest.e164)
    rated = [c for c in every if c.dest.rate]
    return {
        "id": inc.id, "site": inc.site, "severity": inc.severity.label, "score": inc.score,
        "source": inc.source, "sources": sorted({c.source for c in every}),
        "account": accounts[0] if len(accounts) == 1 else ",".join(accounts),
        "rules": [h.rule for h in sorted(inc.hits.values(), key=lambda h: -h.score)],
        "regions": sorted({c.dest.region for c in every if c.dest.region}),
        "destinations": sorted({c.label() for c in every}),
        "numbers": sorted(numbers), "number_calls": [numbers[n] for n in sorted(numbers)],
        "calls": len(every), "calls_not_listed": len(every) - len(shown),
        "attempts_refused": inc.refused,
        "minutes": round(sum(c.up_for(now or c.end or c.start) for c in every) / 60.0, 2),
        "spend": round(sum((c.dest.rate or 0.0) * c.up_for(now or c.end or c.start) / 60.0
                           for c in rated), 2) if rated else None,
        "first_call_at": _iso(min((c.start for c in every), default=inc.opened_at), TZ),
        "last_call_at": _iso(max((c.start for c in every), default=inc.last_activity), TZ),
        "detected_at": _iso(inc.detected_at.get(inc.severity), TZ),
        "call_ids": [c.call_id for c in shown],
        "call_numbers": [c.dest.e164 or "" for c in shown],
        "reasons": inc.reasons(),
    }


@pytest.mark.parametrize("seed", range(12))
def test_views_equal_a_view_from_every_call_as_an_incident_grows(seed: int) -> None:
    rnd = random.Random(seed)
    limit = rnd.choice([(0, 1), (2, 3), (5, 10), (50, 150)])
    inc = Incident(id=f"site:*:{seed}", site="site", source="*", opened_at=T0, last_activity=T0,
                   log=IncidentCalls(limit))  # fmt: skip
    views = IncidentViews(TZ)
    assert views.view(inc, T0) == from_scratch(inc, [], limit, T0)  # no calls yet
    calls: list[Call] = []
    now = T0
    for step in range(60):
        now += timedelta(seconds=rnd.choice([0, 1, 7, 30]), microseconds=rnd.choice([0, 250]))
        for _ in range(rnd.choice([0, 1, 1, 3])):  # calls join, some older than the last
            start = now - timedelta(seconds=rnd.choice([0, 0, 5, 120]))
            call = Call(
                call_id=f"{1795527000 + rnd.randrange(500)}.{step}.{len(calls)}",
                source=rnd.choice(["201", "202", "209", "carrier-fwd"]),
                account=rnd.choice(["", "", "acme", "sales"]),
                dest=CLASSIFIER.classify(rnd.choice(NUMBERS)),
                start=start,
            )
            calls.append(call)
            assert inc.take(call)
        for call in rnd.sample(calls, min(len(calls), 2)):  # a call comes back: counted once
            assert not inc.take(call)
        for call in rnd.sample(calls, min(len(calls), 3)):  # calls answer, end
            if call.answer is None and rnd.random() < 0.5:
                call.answer = max(call.start, now - timedelta(seconds=1))
            elif call.answer is not None and call.end is None and rnd.random() < 0.4:
                call.end = now
                if rnd.random() < 0.8:
                    call.ended = True
        if rnd.random() < 0.2:
            rule = rnd.choice(["burst", "off_hours", "high_risk"])
            inc.hits[rule] = RuleHit(rule, rule, rnd.choice([30, 40, 60]), f"why {step}", 1,
                                     now, now)  # fmt: skip
            inc.severity = Severity(min(2, len(inc.hits)))
            inc.detected_at.setdefault(inc.severity, now)
        inc.refused += rnd.random() < 0.1
        at = now if rnd.random() < 0.9 else None
        assert views.view(inc, at) == from_scratch(inc, calls, limit, at), step
    assert len(calls) > 20 and len(views) == 1
    if limit[0] + limit[1] < 20:
        assert inc.calls_not_listed > 0  # the cap was exercised


def test_a_long_incident_keeps_a_bounded_number_of_calls() -> None:
    """100,000 calls, ended as they come: the incident holds 200 of them; every count is exact
    and a call whose details were dropped but that a rule still holds counts once."""
    inc = Incident(id="s:*:1", site="s", source="*", opened_at=T0, last_activity=T0)
    held: deque[Call] = deque(maxlen=500)  # what a rule window would still hold
    talk = timedelta(0)
    for i in range(100_000):
        start = T0 + timedelta(seconds=i)
        c = Call(f"c{i}", f"2{i % 7:02d}", "", CLASSIFIER.classify(NUMBERS[i % 5]), start,
                 answer=start + timedelta(seconds=2), end=start + timedelta(seconds=2 + i % 60))
        c.ended = True
        talk += timedelta(seconds=i % 60)
        assert inc.take(c)
        held.append(c)
        assert not inc.take(held[0])  # dropped from the details (after 200), still counted
    view = incident_dict(inc, TZ)
    assert len(inc.log.head) + len(inc.log.tail) == 200 and not inc.log.up
    assert view["calls"] == 100_000 and len(view["call_ids"]) == 200
    assert view["calls_not_listed"] == 99_800 and sum(view["number_calls"]) == 100_000
    assert view["call_ids"][:2] == ["c0", "c1"] and view["call_ids"][-1] == "c99999"
    assert view["minutes"] == round(talk.total_seconds() / 60.0, 2)
    # only those held elsewhere, and dead entries pruned whenever the map doubled
    assert inc.log.gone is not None and len(inc.log.gone) <= 2 * 500
    assert sum(r() is not None for r in inc.log.gone.values()) <= 500
    assert not_listed(view["calls_not_listed"]) == "… and 99,800 more calls"
    assert not_listed(1) == "… and 1 more call" and not_listed(0) == ""


def test_a_snapshot_keeps_counts_and_the_dropped_calls_still_held() -> None:
    inc = Incident(id="s:209:1", site="s", source="209", opened_at=T0, last_activity=T0,
                   log=IncidentCalls((1, 2)))  # fmt: skip
    calls = [Call(f"c{i}", "209", "", CLASSIFIER.classify(NUMBERS[i % 5]),
                  T0 + timedelta(seconds=i)) for i in range(6)]  # fmt: skip
    for c in calls:
        inc.take(c)
    window = calls[1:3]  # dropped from the incident's details, held by a rule
    inc2, window2 = pickle.loads(pickle.dumps((inc, window)))  # pickled together, as snapshots
    assert incident_dict(inc2, TZ, T0) == incident_dict(inc, TZ, T0)
    assert [inc2.take(c) for c in window2] == [False, False]  # still counted once
    assert inc2.call_count == 6


def test_a_snapshot_from_before_the_call_log_is_counted_in() -> None:
    inc = Incident(id="s:209:1", site="s", source="209", opened_at=T0, last_activity=T0)
    state = dict(inc.__dict__)
    del state["log"]
    calls = [Call(f"c{i}", "209", "", CLASSIFIER.classify(NUMBERS[i]), T0) for i in range(3)]
    state["calls"] = {c.call_id: c for c in calls}  # the old layout: every call by id
    old = Incident.__new__(Incident)
    old.__setstate__(state)
    assert old.call_count == 3 and sorted(old.calls) == ["c0", "c1", "c2"]


def test_dropped_calls_leave_no_reference_cycles() -> None:
    """Dropping a call's details makes no cyclic garbage: a closed incident's log is freed by
    reference counting alone (the daemon freezes its heap and runs the full collector rarely).
    A dropped call counts once while something holds it, and not once nothing does."""
    import gc

    calls = [Call(f"c{i}", "209", "", CLASSIFIER.classify(NUMBERS[i % 5]),
                  T0 + timedelta(seconds=i), end=T0 + timedelta(seconds=i + 5))
             for i in range(2_000)]  # fmt: skip
    for c in calls:
        c.ended = True  # an ended call is not kept as up
    gc.collect()
    gc.disable()
    try:
        log = IncidentCalls((1, 2))
        for c in calls:
            assert log.add(c)
        assert log.count == 2_000 and not log.add(calls[500])  # dropped, still held: counted
        dropped = calls[700]
        calls[700] = calls[0]  # nothing holds c700 any more
        del dropped
        assert "c700" not in log and log.add(Call("c700", "209", "", calls[1].dest, T0))
        del log
        assert gc.collect() == 0
    finally:
        gc.enable()

"""The daemon's incremental incident views equal report_format.incident_dict, step by step."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import settings
from tollwatch.live_views import IncidentViews
from tollwatch.report_format import incident_dict
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.incidents import Incident, RuleHit, Severity
from tollwatch.rules.model import Call

TZ = ZoneInfo("Asia/Tokyo")
T0 = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
CLASSIFIER = Classifier(settings("JP", "UTC", rates={"per_minute": {"232": 1.2, "53": 0.7}}))
NUMBERS = ["0102327654321", "0102327654399", "01053580011", "01044201234567", "0101876555123",
           "+77011234567", "0312345678"]  # fmt: skip


@pytest.mark.parametrize("seed", range(12))
def test_views_equal_incident_dict_as_an_incident_grows(seed: int) -> None:
    rnd = random.Random(seed)
    inc = Incident(id=f"site:*:{seed}", site="site", source="*", opened_at=T0, last_activity=T0)
    views = IncidentViews(TZ)
    assert views.view(inc, T0) == incident_dict(inc, TZ, T0)  # no calls yet
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
            inc.calls[call.call_id] = call
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
        assert views.view(inc, at) == incident_dict(inc, TZ, at), step
    assert len(calls) > 20 and len(views) == 1


def test_a_restored_incident_is_taken_afresh() -> None:
    inc = Incident(id="s:209:1", site="s", source="209", opened_at=T0, last_activity=T0)
    for i in range(5):
        c = Call(f"c{i}", "209", "", CLASSIFIER.classify(NUMBERS[i]), T0 + timedelta(seconds=i))
        inc.calls[c.call_id] = c
    views = IncidentViews(TZ)
    first = views.view(inc, T0)
    restored: Incident = pickle.loads(pickle.dumps(inc))  # same id, another object
    c = Call("c9", "209", "", CLASSIFIER.classify(NUMBERS[0]), T0)
    restored.calls[c.call_id] = c
    assert views.view(restored, T0) == incident_dict(restored, TZ, T0) != first
    views.forget(restored.id)
    assert len(views) == 0

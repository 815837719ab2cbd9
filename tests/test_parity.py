"""Replaying a CDR file as live events gives the same incidents as `tollwatch scan` on it."""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import settings
from tollwatch.cdr_ingest.live import CallAnswered, CallEnded, CallStarted, LiveEvent
from tollwatch.live import LivePipeline
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.incidents import Incident
from tollwatch.scan import run_scan
from tollwatch.settings import rule_specs

TZ = ZoneInfo("Asia/Tokyo")
BASE = datetime(2026, 11, 28, 23, 30, tzinfo=TZ)  # Saturday night into Sunday
NUMBERS = [
    "0102327654300", "0102327654301", "0102327654302", "0102327654303", "0102327654304",
    "0105358001122", "01044201234567", "01033123456789", "0101876555123", "0312345678",
]

call_strategy = st.fixed_dictionaries({
    "src": st.sampled_from(["201", "202", "203", "209"]),
    "dst": st.sampled_from(NUMBERS),
    "offset": st.integers(0, 3 * 3600),
    "ring": st.integers(0, 20),
    "talk": st.integers(0, 2400),
    "answered": st.booleans(),
    "failover": st.booleans(),  # a further leg of the previous call (same uniqueid and number)
})


def q(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def legs(calls: list[dict[str, Any]]) -> None:
    """Turn calls marked `failover` into further legs of the call before them: same uniqueid,
    source and number, on the next trunk, starting when (or a little after) that leg ended."""
    prev: dict[str, Any] | None = None
    for i, c in enumerate(calls):
        c.setdefault("trunk", "carrier")
        c.setdefault("uid", f"1795527000.{i}")
        if c.get("failover") and prev is not None and "prev_end" in prev:
            c.update(uid=prev["uid"], src=prev["src"], dst=prev["dst"],
                     trunk=f"carrier{i}", offset=prev["prev_end"] + 1 + c["offset"] % 3)
        c["prev_end"] = c["offset"] + c["ring"] + (c["talk"] if c["answered"] else 0)
        prev = c


def write_master(calls: list[dict[str, Any]], path: Path) -> None:
    legs(calls)
    lines = []
    for i, c in enumerate(calls):
        start = BASE + timedelta(seconds=c["offset"])
        answer = start + timedelta(seconds=c["ring"]) if c["answered"] else None
        end = (answer + timedelta(seconds=c["talk"])) if answer else start + timedelta(
            seconds=c["ring"])
        c.update(start=start, answer=answer, end=end)
        fmt = "%Y-%m-%d %H:%M:%S"
        billsec = int((end - answer).total_seconds()) if answer else 0
        fields = [
            q("acme"), q(c["src"]), q(c["dst"]), q("from-internal"), q(f'"Desk" <{c["src"]}>'),
            q(f"PJSIP/{c['src']}-{i:08x}"), q(f"PJSIP/{c['trunk']}-{i:08x}"), q("Dial"),
            q(f"PJSIP/{c['dst']}@{c['trunk']},60"), q(start.strftime(fmt)),
            q(answer.strftime(fmt)) if answer else "", q(end.strftime(fmt)),
            str(int((end - start).total_seconds())), str(billsec),
            q("ANSWERED" if answer else "NO ANSWER"), q("DOCUMENTATION"), q(c["uid"]), q(""),
        ]
        lines.append(",".join(fields))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def live_events(calls: list[dict[str, Any]]) -> list[LiveEvent]:
    utc = ZoneInfo("UTC")
    heap: list[tuple[datetime, int, int, LiveEvent]] = []
    n = 0
    for c in calls:
        start, answer, end = (t.astimezone(utc) if t else None for t in
                              (c["start"], c["answer"], c["end"]))
        assert start is not None and end is not None
        items: list[tuple[datetime, int, LiveEvent]] = [
            (start, 1, CallStarted("pbx", c["uid"], start, c["src"], "acme", c["dst"],
                                   c.get("trunk", "carrier"))),
        ]
        if answer is not None:
            items.append((answer, 2, CallAnswered("pbx", c["uid"], answer)))
        last = answer or start
        items.append((end, 0 if end > last else 3, CallEnded("pbx", c["uid"], end)))
        for at, kind, ev in items:
            n += 1
            heapq.heappush(heap, (at, kind, n, ev))
    return [heapq.heappop(heap)[3] for _ in range(len(heap))]


def feed_live(pipeline: LivePipeline, calls: list[dict[str, Any]]) -> None:
    """The calls' live events into the pipeline, ticking once a second between events as the
    daemon does."""
    clock: datetime | None = None
    for ev in live_events(calls):
        if clock is not None:
            t = clock + timedelta(seconds=1)
            while t < ev.at:
                pipeline.tick(t)
                t += timedelta(seconds=1)
        pipeline.feed(ev)
        clock = ev.at


def summary(incidents: list[Incident]) -> list[tuple[Any, ...]]:
    return sorted(
        (i.source, i.severity.label, i.score, tuple(sorted(i.calls)),
         i.detected_at.get(i.severity), tuple(sorted(i.hits)))
        for i in incidents
    )


S = settings("JP", "Asia/Tokyo")
CLASSIFIER = Classifier(S)


@pytest.mark.fuzz
@hsettings(max_examples=25, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(call_strategy, min_size=1, max_size=40))
def test_live_replay_equals_scan(tmp_path_factory: Any, calls: list[dict[str, Any]]) -> None:
    path = tmp_path_factory.mktemp("cdr") / "Master.csv"
    write_master(calls, path)
    batch = run_scan([path], S).incidents

    pipeline = LivePipeline("pbx", S, CLASSIFIER, rule_specs(S))
    feed_live(pipeline, calls)
    live = pipeline.engine.tracker.all_incidents()
    assert summary(live) == summary(batch)


def test_fixture_attack_replayed_live_equals_scan(fixtures: Path) -> None:
    import csv

    s = settings("JP", "UTC")
    batch = run_scan([fixtures / "Master-attack.csv"], s).incidents
    pipeline = LivePipeline("pbx", s, Classifier(s), rule_specs(s))
    utc = ZoneInfo("UTC")
    rows = list(csv.reader((fixtures / "Master-attack.csv").open()))
    calls = []
    for r in rows:
        def ts(x: str) -> datetime:
            return datetime.strptime(x, "%Y-%m-%d %H:%M:%S").replace(tzinfo=utc)
        calls.append({"uid": r[16], "src": "209", "dst": r[2], "start": ts(r[9]),
                      "answer": ts(r[10]), "end": ts(r[11])})
    for ev in live_events(calls):
        pipeline.feed(ev)
    assert summary(pipeline.engine.tracker.all_incidents()) == summary(batch)
    assert len(batch) == 1 and batch[0].severity.label == "critical"


def _history(path: Path) -> Path:
    """Three weeks before BASE: UK and France daily, Cuba (high risk) daily from two desks."""
    calls: list[dict[str, Any]] = []
    for day in range(1, 22):
        for k, (src, dst) in enumerate([("201", "01044201234567"), ("202", "01033123456789"),
                                        ("203", "0105358001122"), ("204", "0105358001122")]):
            calls.append({"src": src, "dst": dst, "offset": -day * 86400 + 3600 * (k + 1),
                          "ring": 3, "talk": 200, "answered": True})
    write_master(calls, path)
    return path


_LEARNED: dict[str, str] = {}


def _learned_copy(tmp: Path) -> Any:
    from tollwatch.learn import learn_files
    from tollwatch.rules.baseline_io import dumps, loads, new_baseline

    if "b" not in _LEARNED:
        baseline, _ = learn_files([_history(tmp / "history.csv")], S)
        _LEARNED["b"] = dumps(baseline)
    return loads(new_baseline(S), _LEARNED["b"])


@pytest.mark.fuzz
@hsettings(max_examples=15, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(call_strategy, min_size=1, max_size=40))
def test_live_replay_equals_scan_with_a_learned_baseline(
    tmp_path_factory: Any, calls: list[dict[str, Any]]
) -> None:
    """Baselines are consulted and updated the same way in scan and in the daemon."""
    tmp = tmp_path_factory.mktemp("cdr")
    path = tmp / "Master.csv"
    write_master(calls, path)
    learned = _learned_copy(tmp)
    assert learned.ready(BASE) and learned.is_routine("CU", BASE)
    batch = run_scan([path], S, baseline=learned).incidents
    pipeline = LivePipeline("pbx", S, CLASSIFIER, rule_specs(S), baseline=_learned_copy(tmp))
    feed_live(pipeline, calls)
    assert summary(pipeline.engine.tracker.all_incidents()) == summary(batch)

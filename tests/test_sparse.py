"""Leaving calls out of sparse rules' on_start or on_end (rules.sparse) changes no incident.

Random calls from a few phones to a few number blocks, close enough in time for the per-source
burst, sequential-dialing and short-call windows to fill now and then (counts lowered to 3), are
replayed twice through fresh engines: every call to every rule, and with the calls the batch
may leave out (`Call.sparse`, from `sparse_bits`). The incidents must be the same in every
detail the tracker keeps: ids, severity, score, calls, and each rule's score, count, reason
and finding size. The same with an engine that had calls before the frame (its clock guards
the first calls of the frame)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import Traffic, at, settings
from tollwatch.rules.batch import replay
from tollwatch.rules.engine import Engine, relevant
from tollwatch.rules.incidents import Incident
from tollwatch.rules.model import Call
from tollwatch.rules.sparse import sparse_bits
from tollwatch.settings import rule_specs

S = settings("JP", "Asia/Tokyo")
SPECS = rule_specs(S)
SPECS["burst"] = {**SPECS["burst"], "count": 3, "window": timedelta(minutes=10)}
SPECS["sequential_dialing"] = {**SPECS["sequential_dialing"], "count": 3}
SPECS["short_call_flood"] = {**SPECS["short_call_flood"], "count": 3}
BASE = at("2026-11-27T18:30", "Asia/Tokyo")  # Friday evening: business hours, then closed
BLOCKS = ["01023276543", "01053580011", "01044201234", "01018765551"]

call_strategy = st.tuples(
    st.sampled_from(["201", "202", "203"]),
    st.sampled_from(BLOCKS),
    st.integers(0, 99),  # the last two digits
    st.integers(0, 400),  # seconds after the call before
    st.integers(0, 1200),  # talk
    st.booleans(),  # answered
)


def make(calls: list[tuple[str, str, int, int, int, bool]]) -> list[Call]:
    traffic = Traffic(S)
    t = BASE
    for source, block, last, gap, talk, answered in calls:
        t += timedelta(seconds=gap)
        traffic.call(source, f"{block}{last:02d}", t, talk=talk, answered=answered)
    return sorted(filter(relevant, traffic.calls), key=lambda c: c.start)


def spare(engine: Engine, calls: list[Call]) -> None:
    """Mark the calls the way `calls_from_frame` does with an engine."""
    when = pl.Datetime("us", "UTC")
    frame = pl.DataFrame(
        {
            "start": [c.start for c in calls],
            "answer": [c.answer for c in calls],
            "end": [c.end for c in calls],
            "source": [c.source for c in calls],
            "e164": [c.dest.e164 for c in calls],
        },
        schema={"start": when, "answer": when, "end": when, "source": pl.String,
                "e164": pl.String},
    )
    groups = [g for g in (r.sparse_group() for r in engine.sparse) if g is not None]
    for call, bits in zip(calls, sparse_bits(frame, groups, engine.clock), strict=True):
        call.sparse = bits


def details(incidents: list[Incident]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            i.id,
            i.severity.label,
            i.score,
            tuple(sorted(i.calls)),
            i.call_count,
            sorted(i.detected_at.items()),
            sorted((k, h.score, h.count, h.reason, h.size) for k, h in i.hits.items()),
        )
        for i in incidents
    )


def run(calls: list[Call], sparse: bool, split: int = 0) -> tuple[list[Any], int]:
    """Replay `calls`; the first `split` of them without sparse bits, as earlier input."""
    engine = Engine.from_settings(S, SPECS)
    if split:
        replay(engine, calls[:split])
    rest = calls[split:]
    if sparse:
        spare(engine, rest)
    return details(replay(engine, rest)), sum(1 for c in rest if c.sparse)


@pytest.mark.fuzz
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(call_strategy, min_size=1, max_size=60), st.integers(0, 30))
def test_leaving_sparse_calls_out_changes_no_incident(
    calls: list[tuple[str, str, int, int, int, bool]], split: int
) -> None:
    split = min(split, len(calls) - 1)
    every, _ = run(make(calls), sparse=False, split=split)
    spared, _ = run(make(calls), sparse=True, split=split)
    assert spared == every


def test_sparse_calls_are_left_out_and_busy_ones_are_not() -> None:
    """Calls far apart are left out of the three rules; a flood of short calls to one block is
    not (and fires all three)."""
    lone = [("201", BLOCKS[0], i, 3600, 60, True) for i in range(5)]
    flood = [("202", BLOCKS[1], i, 5, 3, True) for i in range(6)]
    calls = make(lone + flood)
    found, spared = run(calls, sparse=True)
    assert [c.sparse for c in calls[:5]] == [7] * 5  # all three rules, bits 0, 1 and 2
    assert all(c.sparse == 0 for c in calls[5:])
    assert spared == 5
    assert found == run(make(lone + flood), sparse=False)[0]
    rules = {k for *_, hits in found for k, *_ in hits}
    assert {"burst", "sequential_dialing", "short_call_flood"} <= rules


def test_an_earlier_clock_keeps_the_first_calls_of_the_frame() -> None:
    """Calls within the span after the engine's clock may meet calls the frame does not
    show: they are not left out."""
    engine = Engine.from_settings(S, SPECS)
    engine.clock = BASE - timedelta(minutes=30)
    calls = make([("201", BLOCKS[0], 1, 0, 60, True), ("201", BLOCKS[0], 2, 7200, 60, True)])
    assert calls[0].start == BASE  # 30 minutes after the clock: within both spans (10m, 1h)
    spare(engine, calls)
    # the 10-minute windows of burst (on start) and short_call_flood (on end) cannot reach back
    # to the clock; sequential dialing's hour can
    assert calls[0].sparse == 5
    assert calls[1].sparse == 7

"""Leaving lone legs untracked (rules.attempts.lone_legs, `Call.lone`) changes nothing.

Random calls, some of them further legs of an earlier call (same linkedid: failover after an
unanswered leg, a parallel fork while it is up, a new attempt after an answered one, to the
same number or another), are replayed twice through fresh engines: with every leg tracked,
and with the legs that are alone in their group in the frame left untracked. Every call must
be judged a repeat the same way, and the incidents must be the same in every detail. The same
with part of the calls replayed before (their groups already tracked by the engine)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import Traffic, at, settings
from tests.test_sparse import details
from tollwatch.rules.attempts import lone_legs
from tollwatch.rules.batch import replay
from tollwatch.rules.engine import Engine, relevant
from tollwatch.rules.model import Call

S = settings("JP", "Asia/Tokyo")
BASE = at("2026-11-27T18:30", "Asia/Tokyo")
NUMBERS = ["0102327654300", "0102327654301", "01044201234567", "0105358001122"]

call_strategy = st.tuples(
    st.sampled_from(["201", "202", "203"]),
    st.sampled_from(NUMBERS),
    st.integers(0, 400),  # seconds after the call before
    st.integers(0, 900),  # talk
    st.booleans(),  # answered
    st.integers(0, 3),  # 0: a new call; k: a further leg of the call k before (if any)
)


def make(calls: list[tuple[str, str, int, int, bool, int]]) -> list[Call]:
    traffic = Traffic(S)
    t = BASE
    made: list[Call] = []
    for source, number, gap, talk, answered, leg_of in calls:
        t += timedelta(seconds=gap % 60 if leg_of else gap)
        call = traffic.call(source, number, t, talk=talk, answered=answered)
        if leg_of and len(made) >= leg_of:
            first = made[-leg_of]
            call.linkedid = first.linkedid or first.call_id
        made.append(call)
    return sorted(filter(relevant, traffic.calls), key=lambda c: c.start)


def mark(engine: Engine, calls: list[Call]) -> None:
    frame = pl.DataFrame(
        {"call_id": [c.call_id for c in calls], "linkedid": [c.linkedid for c in calls]}
    )
    for call, lone in zip(calls, lone_legs(frame, engine.attempts), strict=True):
        call.lone = lone


def run(calls: list[Call], lone: bool, split: int) -> tuple[object, list[bool], int]:
    engine = Engine.from_settings(S)
    if split:
        replay(engine, calls[:split])
    rest = calls[split:]
    if lone:
        mark(engine, rest)
    found = details(replay(engine, rest))
    return found, [c.repeat for c in calls], sum(c.lone for c in rest)


@pytest.mark.fuzz
@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(call_strategy, min_size=1, max_size=50), st.integers(0, 25))
def test_leaving_lone_legs_untracked_changes_nothing(
    calls: list[tuple[str, str, int, int, bool, int]], split: int
) -> None:
    split = min(split, len(calls) - 1)
    every, repeats, _ = run(make(calls), lone=False, split=split)
    alone, lone_repeats, _ = run(make(calls), lone=True, split=split)
    assert lone_repeats == repeats
    assert alone == every


def test_only_legs_alone_in_the_frame_and_the_tracker_are_lone() -> None:
    calls = make(
        [
            ("201", NUMBERS[0], 0, 0, False, 0),
            ("201", NUMBERS[0], 5, 60, True, 1),
            ("202", NUMBERS[2], 30, 60, True, 0),
            ("203", NUMBERS[3], 30, 60, True, 0),
        ]
    )
    _, repeats, lone = run(calls, lone=True, split=0)
    assert [c.lone for c in calls] == [False, False, True, True]
    assert repeats == [False, True, False, False]  # failover after an unanswered leg
    assert lone == 2
    engine = Engine.from_settings(S)
    replay(engine, calls[:1])  # the first leg is tracked: the second is not alone any more
    mark(engine, calls[1:])
    assert [c.lone for c in calls[1:]] == [False, True, True]

"""A window's finding hands the tracker only the calls new to the incident it goes to: the
incident ends up with exactly the calls it would have had from every finding's whole window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.helpers import UTC, Traffic, settings
from tollwatch.rules.builtin._window import Windows
from tollwatch.rules.builtin.concurrent import Up
from tollwatch.rules.model import Call, Finding

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
TRAFFIC = Traffic(settings("JP", "UTC"))

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 400)),  # key, seconds on
        st.tuples(st.just("find"), st.integers(0, 2), st.integers(0, 3)),  # key, incident
        st.tuples(st.just("new"), st.integers(0, 3), st.just(0)),  # incident closed, new one
        st.tuples(st.just("end"), st.integers(0, 2), st.integers(0, 30)),  # Up: a call ends
    ),
    max_size=120,
)


def finding(calls: Any, window: Any) -> Finding:
    return Finding("r", "burst", T0, None, calls, 10, "why", window=window)


@pytest.mark.fuzz
@hsettings(max_examples=150, deadline=None)
@given(ops=ops)
def test_windows_and_calls_up_give_incidents_every_call(ops: list[tuple[str, int, int]]) -> None:
    windows = Windows(timedelta(minutes=10))
    ups: dict[int, Up] = {}
    incidents: list[object] = [object() for _ in range(4)]
    up_incidents: list[object] = [object() for _ in range(4)]  # the calls-up findings' own
    fast: dict[int, set[str]] = {i: set() for i in (0, 1, 2, 3, 10, 11, 12, 13)}
    full: dict[int, set[str]] = {i: set() for i in (0, 1, 2, 3, 10, 11, 12, 13)}
    now = T0
    n = 0
    for op, a, b in ops:
        if op == "add":
            now += timedelta(seconds=b)
            n += 1
            call = TRAFFIC.call(f"{200 + n % 3}", "0102327654300", now)
            windows.add(str(a), now, call)
            up = ups.setdefault(a, Up())
            up.up[call.call_id] = call
            up.added += 1
        elif op == "end":
            up = ups.get(a)
            if up is not None and up.up:
                del up.up[list(up.up)[b % len(up.up)]]
        elif op == "new":
            incidents[a], up_incidents[a] = object(), object()
            fast[a], full[a], fast[10 + a], full[10 + a] = set(), set(), set(), set()
        else:
            inc = incidents[b]
            window = windows.held(str(a))
            whole = list(window.calls)
            got = finding(window.calls, window).calls_new_to(inc)
            fast[b] |= {c.call_id for c in got}
            full[b] |= {c.call_id for c in whole}
            up = ups.get(a)
            if up is not None:
                key = 10 + b
                got = finding(up.calls, up).calls_new_to(up_incidents[b])
                fast[key] |= {c.call_id for c in got}
                full[key] |= {c.call_id for c in up.calls}
        assert fast == full


def test_a_window_sends_only_what_came_since() -> None:
    windows = Windows(timedelta(minutes=10))
    calls: list[Call] = []
    inc = object()
    for i in range(5):
        calls.append(TRAFFIC.call("201", "0102327654300", T0 + timedelta(seconds=i)))
        windows.add("201", calls[-1].start, calls[-1])
    w = windows.held("201")
    assert list(finding(w.calls, w).calls_new_to(inc)) == calls
    extra = TRAFFIC.call("201", "0102327654300", T0 + timedelta(seconds=9))
    windows.add("201", extra.start, extra)
    assert list(finding(w.calls, w).calls_new_to(inc)) == [extra]
    assert list(finding(w.calls, w).calls_new_to(object())) == [*calls, extra]  # another one


def test_a_snapshot_from_before_windows_is_read() -> None:
    """Rule state pickled by the version that kept a deque of (time, call) per group."""
    import pickle
    from collections import deque

    calls = [TRAFFIC.call(f"20{i % 2}", "0102327654300", T0 + timedelta(seconds=i))
             for i in range(4)]
    old = Windows.__new__(Windows)
    old.__dict__.update(span=timedelta(minutes=10),
                        _groups={"*": deque((c.start, c) for c in calls)})
    state = pickle.loads(pickle.dumps(old.__dict__))
    restored = Windows.__new__(Windows)
    restored.__setstate__(state)
    assert [c.call_id for c in restored.held("*")] == [c.call_id for c in calls]
    nxt = TRAFFIC.call("201", "0102327654300", T0 + timedelta(minutes=10, seconds=1))
    assert restored.add("*", nxt.start, nxt) == 3  # the first two left the 10-minute window


def test_calls_up_from_a_snapshot_before_up_are_read() -> None:
    from tollwatch.rules.engine import Engine

    s = settings("JP", "UTC")
    engine = Engine.from_settings(s, {"c": {"type": "concurrent", "count": 2}})
    rule = engine.rules[0]
    calls = [TRAFFIC.call("201", "0102327654300", T0), TRAFFIC.call("202", "0102327654300", T0)]
    rule.restore({"active": {"*": {c.call_id: c for c in calls}}})  # the old shape
    found = rule.on_start(TRAFFIC.call("203", "0102327654300", T0), T0)
    assert [len(f.calls) for f in found] == [3]
    rule.on_end(calls[0], T0)
    assert [len(f.calls) for f in rule.on_start(calls[0], T0)] == [3]

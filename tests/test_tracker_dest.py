"""Calls join an open incident keyed by their destination while it is active, from any source,
and none once every such incident has been quiet for longer than the gap (the tracker then
skips the destination lookups: `IncidentTracker._dest_latest`), also after a snapshot."""

from __future__ import annotations

from datetime import timedelta

from tests.helpers import Traffic, at, settings
from tollwatch.rules.incidents import IncidentTracker
from tollwatch.rules.model import Call, Finding, dest_block_key

GAP = timedelta(hours=1)


def tracker() -> IncidentTracker:
    return IncidentTracker("site", 60, 100, GAP)


def finding(calls: tuple[Call, ...], key: str) -> Finding:
    return Finding(
        "burst_destination", "burst", calls[-1].start, calls[-1], calls, 100, "flood", True, key
    )


def test_calls_join_a_destination_incident_only_while_it_is_active() -> None:
    traffic = Traffic(settings("JP", "Asia/Tokyo"))
    t0 = at("2026-11-24T10:00")
    other = traffic.call("300", "0102327654399", t0 - timedelta(minutes=1))
    first = traffic.call("301", "0102327654300", t0)
    key = dest_block_key(first)
    tr = tracker()
    assert tr.add(finding((other, first), key)) is not None  # critical at once
    near = traffic.call("302", "0102327654301", t0 + timedelta(minutes=59))
    assert tr.add_call(near, near.start) is not None  # same block, another source
    later = traffic.call("303", "0102327654302", near.start + GAP)
    assert tr.add_call(later, later.start) is not None  # exactly the gap after the last call
    quiet = traffic.call("304", "0102327654303", later.start + GAP + timedelta(seconds=1))
    assert tr.add_call(quiet, quiet.start) is None  # quiet for longer: joins nothing
    [inc] = tr.all_incidents()
    assert inc.source == key
    assert set(inc.calls) == {other.call_id, first.call_id, near.call_id, later.call_id}

    restored = tracker()  # a snapshot's open incidents: the latest activity is read from them
    restored.open = dict(tr.open)
    again = traffic.call("305", "0102327654304", later.start + timedelta(minutes=30))
    assert restored.add_call(again, again.start) is not None
    restored.open = {}
    assert restored.add_call(again, again.start) is None


def test_an_earlier_event_never_moves_an_incidents_last_activity_back() -> None:
    """A finding or call timed before the incident's latest activity (a timer fired on a
    clock ahead of the calls, a late event) leaves the latest activity where it is: the
    incident is not closed as quiet between two of its own calls."""
    traffic = Traffic(settings("JP", "Asia/Tokyo"))
    t0 = at("2026-11-24T10:00")
    ahead = traffic.call("301", "0102327654300", t0 + timedelta(minutes=50))
    tr = tracker()
    assert tr.add(finding((ahead,), "dest:x")) is not None
    late = traffic.call("301", "0102327654301", t0)  # timed 50 minutes before
    assert tr.add(finding((late,), "dest:x")) is not None
    [inc] = tr.open.values()
    assert inc.last_activity == ahead.start
    own = traffic.call("301", "0102327654302", ahead.start + GAP - timedelta(minutes=1))
    assert tr.add_call(own, own.start) is not None  # joins: 59 minutes after the latest
    assert inc.last_activity == own.start
    tr.add_call(late, late.start)  # a call event from the past: counted, nothing moved back
    assert inc.last_activity == own.start
    tr.expire(own.start + GAP)
    assert list(tr.open.values()) == [inc]

"""The AMI reader's fast path gives exactly what panoramisk's Message path gives, or steps aside.

`event_name` / `parse_event` (ami_framing) read plain event frames without panoramisk; the
tracker's `skip` counts, by name alone, the events `feed` would ignore. Each is held to the slow
path it replaces on generated frames (case variants, repeated headers, ActionID, Result,
lines without ": ") and on the Asterisk 22 recordings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from panoramisk.message import Message

from tollwatch.cdr_ingest.live.ami import _plain
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
from tollwatch.cdr_ingest.live.ami_framing import event_name, parse_event, split_frames

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/asterisk-22"
AT = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)

_NAMES = ["Event", "event", "EVENT", "Channel", "channel", "Uniqueid", "ActionID", "actionid",
          "CommandID", "Result", "result", "content", "Content", "Exten", "Exten ", " Exten",
          "DestChannel", "Privilege", ""]  # fmt: skip
_VALUES = st.text(alphabet="abAB01:/ %2C,-;\t\u00e9", max_size=8)
_EVENTS = st.sampled_from(["DialBegin", "Hangup", "VarSet", "Newchannel", "Dial", "FullyBooted",
                           "SuccessfulAuth", "UserEvent", "PeerStatus", "Shutdown", "",
                           "Dial: Begin", "CoreShowChannel"])  # fmt: skip
_LINE = st.one_of(
    st.tuples(st.sampled_from(_NAMES), _VALUES).map(lambda kv: f"{kv[0]}: {kv[1]}"),
    st.sampled_from(["no separator", "Key:value", "", "Key: ", ": value"]),
)


@pytest.mark.fuzz
@hsettings(max_examples=400, deadline=None)
@given(_EVENTS, st.lists(_LINE, max_size=8))
@example("DialBegin", ["Channel: PJSIP/201-1", "channel: x"])  # names differing in case only
@example("DialBegin", ["Channel: a", "Channel: b"])  # repeated: joined by panoramisk
@example("CoreShowChannel", ["ActionID: 12"])  # an action's list: goes to the action
@example("VarSet", ["event: Hangup"])
@example("DialBegin", ["Result: %41"])
def test_fast_parse_is_panoramisk_or_nothing(name: str, lines: list[str]) -> None:
    frame = "\r\n".join([f"Event: {name}", *lines])
    message = Message.from_line(frame)
    fast_name = event_name(frame)
    if fast_name is not None:
        assert message is not None and message.event == fast_name == message["Event"]
        assert "actionid" not in message and "commandid" not in message
        msg = parse_event(frame)
        if msg is not None:
            assert msg == _plain(message)
            assert list(msg) == list(_plain(message))


def test_fast_parse_on_the_recordings() -> None:
    """Every event frame of the recordings takes the fast path and parses as panoramisk."""
    for rec in ("ami-calls.txt", "ami-attack.txt"):
        frames, rest = split_frames((FIXTURES / rec).read_bytes().decode())
        events = [f for f in frames if f.startswith("Event: ")]
        assert len(events) > 100 and not rest.strip()
        for frame in events:
            assert event_name(frame) is not None
            assert parse_event(frame) == _plain(Message.from_line(frame))


@pytest.mark.parametrize("version", ["11.0.0", "7.0.3", None])
def test_skip_counts_what_feed_ignores(version: str | None) -> None:
    """Skipping by name leaves the tracker exactly as feeding the event would."""
    fed, skipped = AmiCallTracker("pbx"), AmiCallTracker("pbx")
    if version:
        fed.use_version(version)
        skipped.use_version(version)
    frames, _ = split_frames((FIXTURES / "ami-calls.txt").read_bytes().decode())
    out_fed, out_skipped = [], []
    n_skipped = 0
    for frame in frames:
        message = Message.from_line(frame)
        if message is None or "Event" not in message:
            continue
        msg = _plain(message)
        out_fed += fed.feed(msg, AT)
        if skipped.skip(msg["Event"]):
            n_skipped += 1
            continue
        out_skipped += skipped.feed(msg, AT)
    assert n_skipped > 0
    assert out_skipped == out_fed
    assert skipped.stats == fed.stats
    assert skipped.calls_up == fed.calls_up


@pytest.mark.parametrize("name", ["VarSet", "Newstate", "BridgeEnter", "Shutdown", "Custom"])
def test_skip_matches_feed_for_one_event(name: str) -> None:
    fed, skipped = AmiCallTracker("pbx"), AmiCallTracker("pbx")
    fed.use_version("7.0.3")
    skipped.use_version("7.0.3")
    assert fed.feed({"Event": name}, AT) == []
    assert skipped.skip(name)
    assert skipped.stats == fed.stats


@pytest.mark.parametrize("name", ["DialBegin", "Hangup", "FullyBooted", "SuccessfulAuth",
                                  "UserEvent", "PeerStatus", "ContactStatus", ""])  # fmt: skip
def test_skip_leaves_what_feed_reads(name: str) -> None:
    assert not AmiCallTracker("pbx").skip(name)


def test_before_the_banner_asterisk_11_events_are_read() -> None:
    tracker = AmiCallTracker("pbx")  # no banner: Newchannel and Dial may be Asterisk 11's
    assert not tracker.skip("Newchannel") and not tracker.skip("Dial")
    tracker.use_version("7.0.3")
    assert tracker.skip("Newchannel") and tracker.skip("Dial")


def _strptime_only(tv: str, at: datetime) -> datetime:
    """event_time's EventTV reading before its fast path (a time outside the years 1900-2199,
    or one that leaves Python's dates in UTC, is not taken)."""
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            when = datetime.strptime(tv, fmt).astimezone(UTC)
        except (ValueError, OverflowError):
            continue
        return when if 1900 <= when.year < 2200 else at
    return at


_TV = st.tuples(
    st.sampled_from(["2026", "2026", "1999", "0000", "0001", "9999", "1899", "2200",
                     "\u0662\u0660\u0662\u0666"]),
    st.sampled_from(["01", "11", "12", "13", "00", "1"]),
    st.sampled_from(["01", "24", "29", "31", "32"]),
    st.sampled_from(["T", "T", "T", "t", " "]),
    st.sampled_from(["00", "13", "23", "24", "9"]),
    st.sampled_from(["00", "31", "59", "60"]),
    st.sampled_from(["00", "12", "59", "60", "61"]),
    st.sampled_from(["", ".1", ".179", ".123456", ".1234567", "."]),
    st.sampled_from(["+0000", "-0800", "-0800", "-0130", "+0530", "+2359", "+2400", "+9900",
                     "+0060", "Z", "+05:30", "", "+000"]),
).map(lambda p: "{}-{}-{}{}{}:{}:{}{}{}".format(*p))


@pytest.mark.fuzz
@hsettings(max_examples=300, deadline=None)
@given(_TV)
@example("2026-11-24T13:31:12.179+0000")
@example("2026-11-24T13:31:12.1+0530")
@example("2026-02-29T13:31:12-0800")
@example("2026-11-24T13:31:12-0800")
@example("2026-11-24T23:59:59.999999-0130")
@example("9999-12-31T23:59:59-0500")
@example("0001-01-01T00:00:00+0900")
def test_event_tv_fast_path_reads_as_strptime(tv: str) -> None:
    from tollwatch.cdr_ingest.live.ami_fields import event_time

    got = event_time({"EventTV": tv}, AT)
    assert got == _strptime_only(tv, AT) and got.utcoffset() == _strptime_only(tv, AT).utcoffset()


@pytest.mark.parametrize("header,value", [
    ("EventTV", "9999-12-31T23:59:59.000000-0500"),  # year 10000 in UTC: OverflowError
    ("EventTV", "0001-01-01T00:00:00+0900"),  # before year 1 in UTC
    ("EventTV", "2400-01-01T00:00:00+0000"),
    ("Timestamp", "253402300799"),  # 9999-12-31T23:59:59Z: a window past it overflows
    ("Timestamp", "-62135596800"),
])  # fmt: skip
def test_event_times_outside_1900_2199_are_taken_at_arrival(header: str, value: str) -> None:
    """An event time a window or the baseline's period cannot be put on (the engine's clock
    would overflow at the next call) is not taken: the event is timed at its arrival. Before,
    such an EventTV raised OverflowError out of the tracker (the event was dropped)."""
    from tollwatch.cdr_ingest.live.ami_fields import event_time

    assert event_time({header: value}, AT) == AT
    tracker = AmiCallTracker("pbx")
    tracker.use_version("20.0.0")
    msg = {"Event": "InvalidPassword", "AccountID": "209", "RemoteAddress": "IPV4/UDP/1.2.3.4/5060",
           header: value}
    assert [e.at for e in tracker.feed(msg, AT)] == [AT]

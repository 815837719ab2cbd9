"""The AMI reader works on bytes: held to the text reader it replaces.

`Framer.feed_raw` cuts the socket's bytes into frames without decoding plain event frames, and
`_Manager.handle_frames` skips the events the tracker ignores by their name alone (checking once
per read, not per frame, that no frame carries a header that would route it elsewhere). Both are
compared here with the reader before them (the stream decoded as it came, cut with
`split_frames`, every frame through `fast_event` or panoramisk) on generated streams: event
frames with special headers in any case (a second Event, ActionID, CommandID, Result, content),
repeated headers, lines without ": ", responses, bare-LF frames and missing blank lines, bytes
that are not UTF-8 and characters cut between two reads, every read size.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tollwatch.cdr_ingest.live.ami import AmiSource, _Manager
from tollwatch.cdr_ingest.live.ami_framing import Framer, _Protocol, split_frames

AT = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


class _Reference:
    """The text framer before `feed_raw`: decode as the bytes come, then `split_frames`."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._rest = ""
        self._first = True

    def feed(self, data: bytes) -> list[str]:
        text = self._rest + self._decoder.decode(data)
        if self._first:
            if "\r\n" not in text and len(text) < 200:
                self._rest = text
                return []
            self._first = False
            if text.startswith("Asterisk Call Manager/"):
                text = text.partition("\r\n")[2]
        frames, self._rest = split_frames(text)
        return frames


_NAMES = ["Newstate", "VarSet", "BridgeEnter", "DialBegin", "DialEnd", "Hangup",
          "SuccessfulAuth", "FullyBooted", "Shutdown", "UserEvent", "CoreShowChannel", "",
          "Dial Begin", "Newst\u00e9te"]  # fmt: skip
_KEYS = ["Channel", "DestChannel", "Uniqueid", "Exten", "Context", "DialString", "CallerIDNum",
         "Event", "event", "EVENT", "ActionID", "actionid", "CommandID", "commandid", "Result",
         "result", "content", "Content", "Service", "AccountID", "RemoteAddress"]  # fmt: skip
_VALUE = st.sampled_from(["PJSIP/201-1", "PJSIP/carrier-2", "1700000000.1", "0044207",
                          "from-internal", "carrier/0044207", "%41", "AMI", "1", "",
                          "caf\u00e9", "\u65e5\u672c", "a b"])  # fmt: skip
_LINE = st.one_of(
    st.tuples(st.sampled_from(_KEYS), _VALUE).map(lambda kv: f"{kv[0]}: {kv[1]}".encode()),
    st.sampled_from([b"no separator", b"Key:value", b"Key: \xff\xfe bad", b"Exten: \xe6\x97"]),
)


@st.composite
def _piece(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["event", "event", "event", "event", "response", "bare-lf",
                                 "no-blank", "crlf", "junk"]))  # fmt: skip
    lines = draw(st.lists(_LINE, max_size=5))
    head = f"Event: {draw(st.sampled_from(_NAMES))}".encode()
    if kind == "response":
        return b"\r\n".join([b"Response: Success", *lines]) + b"\r\n\r\n"
    if kind == "bare-lf":
        return b"\n".join([head, *lines]) + b"\n\n"
    if kind == "no-blank":  # a frame whose blank line is missing: the next starts right away
        return b"\r\n".join([head, *lines]) + b"\r\n"
    if kind == "crlf":
        return b"\r\n"
    if kind == "junk":
        return draw(st.binary(max_size=20))
    return b"\r\n".join([head, *lines]) + b"\r\n\r\n"


_STREAM = st.lists(_piece(), max_size=25).map(lambda ps: BANNER + b"".join(ps)
                                              + b"Event: FullyBooted\r\n\r\n")
_CUTS = st.lists(st.integers(1, 300), min_size=1, max_size=12)


def _reads(stream: bytes, cuts: list[int]) -> list[bytes]:
    out, at, i = [], 0, 0
    while at < len(stream):
        out.append(stream[at : at + cuts[i % len(cuts)]])
        at += cuts[i % len(cuts)]
        i += 1
    return out


@pytest.mark.fuzz
@hsettings(max_examples=400, deadline=None)
@given(_STREAM, _CUTS)
@example(BANNER + "Event: Hangup\r\nChannel: caf\u00e9\r\n\r\n".encode(), [len(BANNER) + 26])
def test_bytes_framer_gives_the_text_framers_frames(stream: bytes, cuts: list[int]) -> None:
    new, old = Framer(), _Reference()
    got: list[str] = []
    want: list[str] = []
    for data in _reads(stream, cuts):
        got += new.feed(data)
        want += old.feed(data)
    assert got == want
    assert new.version == "11.0.0"


class _Transport:
    def write(self, data: bytes) -> None:
        pass


def _reader() -> tuple[AmiSource, _Protocol, list[str]]:
    source = AmiSource("pbx", "127.0.0.1", 1, "u", "s", clock=lambda: AT)
    manager = _Manager(source, host="127.0.0.1", port=1, loop=asyncio.get_running_loop(),
                       events="on")  # fmt: skip
    manager.register_event("*", source._on_event)
    protocol = _Protocol()
    protocol.connection_made(_Transport())
    protocol.factory = manager
    slow: list[str] = []
    plain_slow = protocol.slow_frame

    def recording(frame: str) -> None:
        slow.append(frame)
        plain_slow(frame)

    protocol.slow_frame = recording  # type: ignore[method-assign]
    return source, protocol, slow


def _state(source: AmiSource) -> dict[str, Any]:
    events = []
    while not source.events.empty():
        events.append(source.events.get_nowait())
    return {"events": events, "stats": source.tracker.stats, "bad": source.bad_frames,
            "errors": source.status.errors, "calls": source.tracker.calls_up,
            "dialect": source.tracker.dialect_text}  # fmt: skip


@pytest.mark.fuzz
@hsettings(max_examples=300, deadline=None)
@given(_STREAM, _CUTS)
@example(BANNER + b"Event: Newstate\r\nactionid: 7\r\n\r\nEvent: DialBegin\r\n\r\n", [500])
@example(BANNER + b"Event: Newstate\r\nX: 1\r\nevent: DialBegin\r\n\r\n", [500])
@example(BANNER + b"Event: Newstate\nChannel: a\n\nEvent: Hangup\nChannel: b\n\n", [500])
@example(BANNER + b"Event: Newstate\r\nResult: %41\r\n\r\n", [500])
async def test_reader_on_bytes_does_what_the_text_reader_did(stream: bytes,
                                                             cuts: list[int]) -> None:
    new_source, new_protocol, new_slow = _reader()
    old_source, old_protocol, old_slow = _reader()
    old_manager: Any = old_protocol.factory
    framer = _Reference()
    for data in _reads(stream, cuts):
        new_protocol.data_received(data)
        old_manager.received()  # the text reader: every frame through fast_event or panoramisk
        for frame in framer.feed(data):
            if not old_manager.fast_event(frame):
                old_protocol.slow_frame(frame)
        old_manager.read_done()
    assert _state(new_source) == _state(old_source)
    # panoramisk sees what it saw, except events the tracker skips whose only special header
    # is Result or content (which change neither their name nor where they go)
    routed = [f for f in old_slow if _ROUTES.search(f) or not f.startswith("Event: ")]
    assert [f for f in new_slow if f in routed] == routed
    left = iter(old_slow)
    assert all(f in left for f in new_slow)  # nothing new, in the same order


_ROUTES = re.compile(r"\r\n(?i:event|actionid|commandid): ")


async def test_names_read_off_frames_are_bounded() -> None:
    """Event names are whatever the peer sends: the reader remembers a bounded number."""
    source, protocol, _ = _reader()
    manager: Any = protocol.factory
    protocol.data_received(BANNER)
    for i in range(3000):
        protocol.data_received(f"Event: Custom{i}\r\nX: 1\r\n\r\n".encode())
    assert len(manager._names) <= 1024
    assert source.tracker.stats.unknown == 3000


def test_bytes_that_never_end_a_frame_are_dropped_and_memory_stays_flat() -> None:
    """A peer that sends megabytes with no line end at all (not AMI): the pending buffer grew
    without end (and was copied on every read). Past MAX_PENDING it is dropped and counted;
    the next real frame still comes through."""
    from tollwatch.cdr_ingest.live.ami_framing import MAX_PENDING, Framer

    f = Framer()
    f.feed_raw(b"Asterisk Call Manager/22.0.0\r\n")
    for _ in range(64):
        assert f.feed_raw(b"a" * 65536) == []
        assert len(f._rest) <= MAX_PENDING + 65536
    assert f.discarded >= 64 * 65536 - 2 * MAX_PENDING
    frames = f.feed_raw(b"\r\n\r\nEvent: FullyBooted\r\nPrivilege: system,all\r\n\r\n")
    assert frames[-1] == b"Event: FullyBooted\r\nPrivilege: system,all"

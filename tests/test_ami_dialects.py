"""AMI dialects: an attack recorded from Asterisk 22 and the same attack as Asterisk 11 writes
it give the same calls and the same incident; banners pick dialects; unknown events counted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import settings
from tollwatch.cdr_ingest.live import CallAnswered, CallEnded, CallStarted, LiveEvent
from tollwatch.cdr_ingest.live.ami import AmiSource
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
from tollwatch.cdr_ingest.live.ami_dialects import for_version
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi, encode, parse_frames
from tollwatch.live import LivePipeline
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.incidents import Incident
from tollwatch.settings import rule_specs

HERE = Path(__file__).resolve().parent
AST22 = HERE.parents[1] / "shared/fixtures/asterisk-22/ami-attack.txt"
AST11 = HERE / "fixtures/asterisk-11/ami-attack.txt"


def messages(path: Path) -> tuple[str, list[dict[str, str]]]:
    data = path.read_bytes()
    banner = data.split(b"\r\n", 1)[0].decode().partition("/")[2]
    return banner, parse_frames(data)[1:]


def uniqueid_clock(msgs: list[dict[str, str]]) -> list[datetime]:
    """Arrival time of each message: the newest Uniqueid epoch seen so far (Asterisk names
    channels by creation time), so both recordings replay on the same clock."""
    now = 0.0
    out = []
    for m in msgs:
        for key in ("Uniqueid", "UniqueID", "Uniqueid1", "Uniqueid2", "DestUniqueid"):
            if m.get(key):
                now = max(now, float(m[key].split(".")[0]))
        out.append(datetime.fromtimestamp(now, UTC))
    return out


def live(path: Path) -> tuple[AmiCallTracker, list[LiveEvent]]:
    banner, msgs = messages(path)
    tracker = AmiCallTracker("acme-pbx")
    tracker.use_version(banner)
    events = [e for m, at in zip(msgs, uniqueid_clock(msgs), strict=True)
              for e in tracker.feed(m, at)]  # fmt: skip
    return tracker, events


def incidents(events: list[LiveEvent]) -> list[Incident]:
    s = settings("JP", "UTC")
    pipeline = LivePipeline("acme-pbx", s, Classifier(s), rule_specs(s))
    for ev in events:
        pipeline.feed(ev)
    return pipeline.engine.tracker.all_incidents()


def summary(found: list[Incident]) -> list[tuple[Any, ...]]:
    return sorted((i.source, i.severity.label, i.score, tuple(sorted(i.calls)),
                   tuple(sorted(i.hits))) for i in found)  # fmt: skip


def test_asterisk11_attack_is_the_same_incident_as_asterisk22() -> None:
    t22, ev22 = live(AST22)
    t11, ev11 = live(AST11)
    assert t22.dialect.name == "asterisk12" and t11.dialect.name == "asterisk11"
    assert t11.dialect_text == "Asterisk 11 or older (AMI 1.3)"
    assert t22.dialect_text == "Asterisk 22 (AMI 11.0.0)"

    def calls(events: list[LiveEvent]) -> list[tuple[str, str, str, str]]:
        return [(e.call_id, e.source, e.dialed, e.trunk) for e in events
                if isinstance(e, CallStarted)]  # fmt: skip

    assert calls(ev11) == calls(ev22)
    assert len(calls(ev11)) == 24
    assert [e.call_id for e in ev11 if isinstance(e, CallAnswered)] == [
        e.call_id for e in ev22 if isinstance(e, CallAnswered)
    ]
    assert sorted(e.call_id for e in ev11 if isinstance(e, CallEnded)) == sorted(
        e.call_id for e in ev22 if isinstance(e, CallEnded)
    )
    assert t11.calls_up == 0 and t22.calls_up == 0
    found11, found22 = incidents(ev11), incidents(ev22)
    assert summary(found11) == summary(found22)
    assert [(i.severity.label, len(i.calls), i.source) for i in found11] == [
        ("critical", 24, "209")
    ]
    assert t11.stats.malformed == 0
    # NewCallerid, ChallengeSent mean nothing to any dialect: counted as unknown, not errors
    assert t11.stats.ignored["NewCallerid"] == 24 and t11.stats.ignored["ChallengeSent"] == 24
    assert t11.stats.unknown == 48


@pytest.mark.parametrize(
    ("banner", "dialect", "words"),
    [
        ("1.1", "asterisk11", "Asterisk 11 or older (AMI 1.1)"),  # Asterisk 1.8
        ("1.3", "asterisk11", "Asterisk 11 or older (AMI 1.3)"),
        ("2.10.4", "asterisk12", "Asterisk 12/13 (AMI 2.10.4)"),
        ("5.0.1", "asterisk12", "Asterisk 16 (AMI 5.0.1)"),
        ("7.0.3", "asterisk12", "Asterisk 18 (AMI 7.0.3)"),
        ("9.0.0", "asterisk12", "Asterisk 20 (AMI 9.0.0)"),
        ("11.0.0", "asterisk12", "Asterisk 22 (AMI 11.0.0)"),
    ],
)
def test_banner_picks_the_dialect(banner: str, dialect: str, words: str) -> None:
    d = for_version(banner)
    assert d is not None and d.name == dialect and d.release(banner) == words


def test_asterisk11_dial_without_banner_switches_dialect() -> None:
    _, msgs = messages(AST11)
    tracker = AmiCallTracker("p")
    clock = uniqueid_clock(msgs)
    started = [e for m, at in zip(msgs, clock, strict=True) for e in tracker.feed(m, at)
               if isinstance(e, CallStarted)]  # fmt: skip
    assert tracker.dialect.name == "asterisk11" and len(started) == 24
    assert started[0].dialed == "0102327654300" and started[0].account == "acme"


def test_unknown_events_are_counted_not_errors() -> None:
    tracker = AmiCallTracker("p")
    at = datetime(2026, 11, 24, tzinfo=UTC)
    for name in ("VarSet", "Newexten", "AgentCalled", "VarSet"):
        assert tracker.feed({"Event": name, "Channel": "PJSIP/201-1"}, at) == []
    assert tracker.stats.unknown == 4 and tracker.stats.malformed == 0


def test_asterisk11_masquerade_and_rename_keep_the_call() -> None:
    at = datetime(2026, 11, 24, tzinfo=UTC)
    tracker = AmiCallTracker("p")
    tracker.use_version("1.3")
    feed = [
        {"Event": "Newchannel", "Channel": "SIP/201-00000001", "Exten": "0044207",
         "Context": "from-internal", "AccountCode": "a", "Uniqueid": "1795527011.1"},
        {"Event": "Dial", "SubEvent": "Begin", "Channel": "SIP/201-00000001",
         "Destination": "SIP/carrier-00000002", "CallerIDNum": "201",
         "UniqueID": "1795527011.1", "DestUniqueID": "1795527011.2",
         "Dialstring": "carrier/0044207"},
        {"Event": "Masquerade", "Clone": "SIP/carrier-00000002", "CloneState": "Ringing",
         "Original": "SIP/carrier-00000003", "OriginalState": "Ringing"},
        {"Event": "Rename", "Channel": "SIP/carrier-00000002", "Newname": "SIP/carrier-00000009",
         "Uniqueid": "1795527011.2"},
        {"Event": "Bridge", "Bridgestate": "Link", "Channel1": "SIP/201-00000001",
         "Channel2": "SIP/carrier-00000009", "Uniqueid1": "1795527011.1",
         "Uniqueid2": "1795527011.2"},
        {"Event": "Hangup", "Channel": "SIP/carrier-00000009", "Uniqueid": "1795527011.2",
         "Cause": "16", "Cause-txt": "Normal Clearing"},
    ]  # fmt: skip
    events = [e for m in feed for e in tracker.feed(m, at)]
    assert [type(e).__name__ for e in events] == ["CallStarted", "CallAnswered", "CallEnded"]
    assert isinstance(events[0], CallStarted) and events[0].dialed == "0044207"
    assert tracker.stats.unknown == 0 and tracker.calls_up == 0


async def test_asterisk11_over_tcp_sees_the_attack() -> None:
    async with FakeAmi("tollwatch", "pa55", banner=b"Asterisk Call Manager/1.3\r\n") as ami:
        source = AmiSource("old-pbx", "127.0.0.1", ami.port, "tollwatch", "pa55")
        task = asyncio.create_task(source.run())
        await ami.replay(AST11)
        for _ in range(200):
            if source.status.events >= 24 * 3:
                break
            await asyncio.sleep(0.02)
        started = []
        while not source.events.empty():
            ev = source.events.get_nowait()
            if isinstance(ev, CallStarted):
                started.append(ev)
        assert len(started) == 24
        assert source.status.dialect == "Asterisk 11 or older (AMI 1.3)"
        assert source.status.unknown_events == 48  # NewCallerid, ChallengeSent
        await source.close()
        await asyncio.wait_for(task, 5)


async def test_traffic_without_call_events_while_channels_are_up_is_reported() -> None:
    up = encode({"Event": "Newchannel", "Privilege": "call,all", "Channel": "PJSIP/201-00000001",
                 "ChannelState": "6", "ChannelStateDesc": "Up", "CallerIDNum": "201",
                 "CallerIDName": "Desk", "ConnectedLineNum": "", "ConnectedLineName": "",
                 "Language": "en", "AccountCode": "", "Context": "from-internal",
                 "Exten": "0044", "Priority": "1", "Uniqueid": "1795527011.1",
                 "Linkedid": "1795527011.1"})  # fmt: skip
    noise = encode({"Event": "NewCallerid", "Privilege": "call,all",
                    "Channel": "PJSIP/201-00000001", "CallerIDNum": "201"})  # fmt: skip
    async with FakeAmi("tollwatch", "pa55") as ami:
        source = AmiSource("quiet", "127.0.0.1", ami.port, "tollwatch", "pa55",
                           keepalive=0.05, silence=0.2)  # fmt: skip
        task = asyncio.create_task(source.run())
        await ami.replay(up + noise)
        for _ in range(100):
            if source.status.warning:
                break
            await ami.replay(noise, start_after_login=False)
            await asyncio.sleep(0.05)
        assert source.status.warning.startswith("AMI events arrive but no call event for ")
        assert "reports 1 channel(s) up" in source.status.warning
        assert "read= (needs call)" in source.status.warning
        assert source.status.unknown_events >= 2  # NewCallerid: known to no dialect
        await source.close()
        await asyncio.wait_for(task, 5)

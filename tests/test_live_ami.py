"""AMI live source: tracker on real Asterisk 22 transcripts, fake server, AmiSource over TCP."""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tollwatch.cdr_ingest import CdrOptions
from tollwatch.cdr_ingest._outbound import classify
from tollwatch.cdr_ingest.live.ami import AmiAuthError, AmiConnectError, AmiDisconnected, AmiSource
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker, LegRules
from tollwatch.cdr_ingest.live.events import (
    AuthAttempt,
    CallAnswered,
    CallEnded,
    CallStarted,
    LiveEvent,
)
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi, parse_frames

FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/asterisk-22"
AT = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)


def transcript(name: str) -> list[dict[str, str]]:
    msgs = parse_frames((FIXTURES / name).read_bytes())
    assert msgs[0]["Response"] == "Success"  # the Login response
    return msgs[1:]


def master(name: str) -> list[list[str]]:
    with (FIXTURES / name).open(newline="") as f:
        return list(csv.reader(f))


def run(tracker: AmiCallTracker, msgs: list[dict[str, str]]) -> list[LiveEvent]:
    return [e for m in msgs for e in tracker.feed(m, AT)]


def of(kind: type, events: list[LiveEvent]) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, kind)]


# -- tracker on the transcripts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("transcript_name", "csv_name"),
    [("ami-attack.txt", "Master-attack.csv"), ("ami-calls.txt", "Master-calls.csv")],
)
def test_calls_match_master_csv(transcript_name: str, csv_name: str) -> None:
    tracker = AmiCallTracker("acme-pbx")
    events = run(tracker, transcript(transcript_name))
    rows = master(csv_name)
    started = of(CallStarted, events)
    assert [e.call_id for e in started] == [r[16] for r in rows]
    assert [e.dialed for e in started] == [r[2] for r in rows]
    assert [e.source for e in started] == [r[1] for r in rows]
    assert [e.channel for e in started] == [r[5] for r in rows]
    assert [e.dest_channel for e in started] == [r[6] for r in rows]
    assert {(e.account, e.trunk, e.pbx) for e in started} == {("acme", "carrier", "acme-pbx")}
    ids = [r[16] for r in rows]
    assert sorted(e.call_id for e in of(CallAnswered, events)) == sorted(ids)
    ended = of(CallEnded, events)
    assert sorted(e.call_id for e in ended) == sorted(ids)
    assert {e.cause for e in ended} == {"Normal Clearing"}
    assert tracker.in_progress() == []
    assert tracker._calls == {} and tracker._channels == {}  # memory released
    assert tracker.stats.malformed == 0 and tracker.stats.ignored["VarSet"] > 0


def test_attack_counts_and_order() -> None:
    events = run(AmiCallTracker("p"), transcript("ami-attack.txt"))
    assert len(of(CallStarted, events)) == 24
    assert {e.source for e in of(CallStarted, events)} == {"209"}
    assert len(of(CallAnswered, events)) == 24 and len(of(CallEnded, events)) == 24
    pos = {(type(e).__name__, getattr(e, "call_id", "")): i for i, e in enumerate(events)}
    for e in of(CallStarted, events):
        assert pos["CallStarted", e.call_id] < pos["CallAnswered", e.call_id]
        assert pos["CallAnswered", e.call_id] < pos["CallEnded", e.call_id]
    assert max(_concurrency(events)) == 7  # at most 7 up at once in this recording


def _concurrency(events: list[LiveEvent]) -> list[int]:
    up, out = 0, []
    for e in events:
        up += isinstance(e, CallStarted) - isinstance(e, CallEnded)
        out.append(up)
    return out


def test_bruteforce_auth_attempts() -> None:
    msgs = transcript("ami-bruteforce.txt")
    auths = of(AuthAttempt, run(AmiCallTracker("p"), msgs))
    failed = Counter(a.account for a in auths if a.outcome == "failed")
    assert failed == {"209": 16, "207": 5}
    assert {(a.service, a.event, a.address) for a in auths if a.outcome == "failed"} == {
        ("PJSIP", "ChallengeResponseFailed", "127.0.0.1")
    }
    # The one success is the AMI login of the session that recorded the transcript.
    [ok] = [a for a in auths if a.outcome == "success"]
    assert (ok.account, ok.service, ok.event) == ("monitor", "AMI", "SuccessfulAuth")
    # Arriving at AT, half an hour before their EventTV says: the PBX's clock does not agree
    # with ours, so our clock (arrival) times them, as it times the calls.
    assert auths[1].at == AT
    # Arriving a second after their EventTV: the clocks agree, EventTV times them.
    tv = datetime(2026, 11, 24, 13, 29, 20, 344000, tzinfo=UTC)
    fed = [e for m in msgs for e in AmiCallTracker("p").feed(m, tv + timedelta(seconds=1))]
    assert of(AuthAttempt, fed)[1].at == tv  # EventTV
    # ChallengeSent is not an attempt; our own AMI login is dropped once we know it.
    tracker = AmiCallTracker("p")
    tracker.ignore_own_login("monitor", "IPV4/TCP/127.0.0.1/46494")
    auths = of(AuthAttempt, run(tracker, msgs))
    assert len(auths) == 21 and {a.outcome for a in auths} == {"failed"}
    assert tracker.stats.ignored["ChallengeSent"] == 4


def test_timestamp_header_is_event_time() -> None:
    tracker = AmiCallTracker("p")
    msg = {"Event": "InvalidPassword", "AccountID": "207", "Service": "PJSIP",
           "RemoteAddress": "IPV6/UDP/[2001:db8::1]/5060", "Timestamp": "1795527074.500000",
           "EventTV": "2026-01-01T00:00:00.000+0000"}  # fmt: skip
    [a] = tracker.feed(msg, AT)
    assert isinstance(a, AuthAttempt)
    assert a.at == datetime.fromtimestamp(1795527074.5, UTC)
    assert (a.address, a.outcome) == ("2001:db8::1", "failed")


@pytest.mark.parametrize(
    ("arrival", "expected"),
    [
        (timedelta(seconds=1.5), "tv"),  # the clocks agree: the PBX's own time of the event
        (timedelta(seconds=-1.5), "tv"),
        (timedelta(seconds=3), "arrival"),  # PBX clock behind ours
        (timedelta(hours=-1), "arrival"),  # PBX clock an hour ahead of ours
        (timedelta(days=400), "arrival"),
    ],
)
def test_event_tv_is_taken_only_while_the_clocks_agree(
    arrival: timedelta, expected: str
) -> None:
    """Without a Timestamp header calls are timed by arrival; a security event's EventTV is on
    the PBX's clock, so it is taken only within EVENT_TV_SKEW of its arrival."""
    tv = datetime(2026, 11, 24, 13, 29, 20, 344000, tzinfo=UTC)
    msg = {"Event": "InvalidPassword", "AccountID": "207", "Service": "PJSIP",
           "RemoteAddress": "IPV4/UDP/192.0.2.7/5060",
           "EventTV": "2026-11-24T22:29:20.344+0900"}  # fmt: skip
    [a] = AmiCallTracker("p").feed(msg, tv + arrival)
    assert isinstance(a, AuthAttempt)
    assert a.at == (tv if expected == "tv" else tv + arrival)
    # a Timestamp header that cannot be read leaves EventTV under the same check
    [b] = AmiCallTracker("p").feed({**msg, "Timestamp": "soon"}, tv + arrival)
    assert isinstance(b, AuthAttempt) and b.at == a.at


def test_unanswered_dial_ends_once_and_local_dest_is_not_a_call() -> None:
    tracker = AmiCallTracker("p")
    begin = {"Event": "DialBegin", "Channel": "PJSIP/201-00000001", "Uniqueid": "1.1",
             "CallerIDNum": "201", "AccountCode": "a", "Context": "from-internal",
             "Exten": "0044", "DestChannel": "PJSIP/carrier-00000002",
             "DialString": "0044@carrier"}  # fmt: skip
    assert [type(e) for e in tracker.feed(begin, AT)] == [CallStarted]
    end = {"Event": "DialEnd", "DestChannel": "PJSIP/carrier-00000002", "DialStatus": "BUSY"}
    assert tracker.feed(end, AT) == [CallEnded("p", "1.1", AT, "BUSY")]
    assert tracker.feed({"Event": "Hangup", "Channel": "PJSIP/201-00000001"}, AT) == []
    assert tracker.feed({**begin, "DestChannel": "Local/0044@out-00000003;1"}, AT) == []
    assert tracker.feed({**begin, "DestChannel": "PJSIP/202-00000004"}, AT) == []  # a phone
    assert tracker.feed({k: v for k, v in begin.items() if k != "Uniqueid"}, AT) == []
    assert tracker.stats.malformed == 1  # trunk dial without Uniqueid


# -- Local channels (ami-actions.txt) -----------------------------------------------------


def test_actions_transcript_local_hops_alone_are_not_calls() -> None:
    # In this recording the pstn-trunk context answers itself: no trunk channel is ever
    # dialed, so (as batch would for its CDR rows) there is no outbound call.
    events = run(AmiCallTracker("p"), transcript("ami-actions.txt"))
    assert of(CallStarted, events) == [] and of(CallEnded, events) == []


def with_trunk_leg(msgs: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[str]]:
    """Add what a real pstn-trunk context (Dial(PJSIP/N@carrier)) sends: the Local ;2 channel
    dials the carrier, which answers, and hangs up before that Local channel does."""
    uid = {m["Channel"]: m["Uniqueid"] for m in msgs if m.get("Event") == "Newchannel"}
    out: list[dict[str, str]] = []
    ids: list[str] = []
    for m in msgs:
        chan = m.get("Channel", "")
        if m.get("Event") == "Hangup" and "@pstn-trunk" in chan and chan.endswith(";2"):
            out.append(
                {"Event": "Hangup", "Channel": _carrier(chan), "Cause-txt": "Normal Clearing"}
            )
        out.append(m)
        dest = m.get("DestChannel", "")
        if m.get("Event") == "DialBegin" and "@pstn-trunk" in dest and chan:
            local2 = dest[:-2] + ";2"
            number = dest.split("/", 1)[1].split("@", 1)[0]
            ids.append(uid[local2])
            leg = {"Channel": local2, "Uniqueid": uid[local2], "CallerIDNum": m["CallerIDNum"],
                   "AccountCode": m["AccountCode"], "Context": "pstn-trunk", "Exten": number,
                   "DestChannel": _carrier(local2), "DestUniqueid": uid[local2] + "9"}  # fmt: skip
            out.append({"Event": "DialBegin", **leg, "DialString": f"{number}@carrier"})
            out.append({"Event": "DialEnd", **leg, "DialStatus": "ANSWER"})
    return out, ids


def _carrier(local: str) -> str:
    return "PJSIP/carrier-" + local.split("-")[-1].split(";")[0]


def test_local_channel_chain_is_one_call_named_by_the_trunk_leg() -> None:
    msgs, ids = with_trunk_leg(transcript("ami-actions.txt"))
    assert len(ids) == 6
    events = run(AmiCallTracker("p"), msgs)
    started = of(CallStarted, events)
    assert [e.call_id for e in started] == ids  # the Local/N@pstn-trunk-…;2 Uniqueid
    assert ids[0] == "1795526552.3"  # the uniqueid of the CDR row batch counts
    assert [e.dialed for e in started][:2] == ["0312345678", "01014412345678"]
    assert [e.source for e in started][:2] == ["201", "202"]  # caller id, as batch's src
    assert all(e.channel.startswith("Local/") and e.channel.endswith(";2") for e in started)
    assert sorted(e.call_id for e in of(CallEnded, events)) == sorted(ids)
    assert len(of(CallAnswered, events)) == 6


@pytest.mark.parametrize(
    ("channel", "dest"),
    [
        ("PJSIP/209-0000000a", "PJSIP/carrier-0000000b"),
        ("PJSIP/209-0000000a", "PJSIP/202-0000000b"),
        ("Local/0102@pstn-trunk-00000001;2", "PJSIP/carrier-00000002"),
        ("Local/0102@from-internal-00000000;2", "Local/0102@pstn-trunk-00000001;1"),
        ("SIP/alice-00000001", "DAHDI/1-1"),
        ("PJSIP/1234567-00000001", "IAX2/9999-00000002"),
        ("PJSIP/sales-00000001", "PJSIP/voipms-00000002"),
    ],
)
@pytest.mark.parametrize(
    "options", [CdrOptions(), CdrOptions(trunks=("voip*",), phones=("PJSIP/sales",))]
)
@pytest.mark.parametrize(
    "lastdata",
    ["", "PJSIP/0102@carrier,60", "PJSIP/202&PJSIP/203,20", "DAHDI/g0/0102", "IAX2/9999/0102"],
)
def test_leg_rules_agree_with_batch(
    channel: str, dest: str, options: CdrOptions, lastdata: str
) -> None:
    row = {"channel": channel, "dstchannel": dest, "lastapp": "Dial", "lastdata": lastdata,
           "dcontext": "from-internal", "src": "cid", "dst": "s"}  # fmt: skip
    batch = classify(pl.LazyFrame([row]), options).collect().row(0, named=True)
    rules = LegRules(options)
    assert rules.is_trunk(dest, "from-internal", lastdata) == batch["outbound"]
    if batch["outbound"]:  # live attributes trunk legs only
        got = rules.source_of(channel, "cid", "from-internal", "s", batch["dialed"])
        assert got == batch["source"]


# -- resync ---------------------------------------------------------------------------------


def snapshot(msgs: list[dict[str, str]]) -> list[dict[str, str]]:
    """CoreShowChannel events for the channels up after `msgs` (the fake server's view)."""
    ami = FakeAmi()
    for m in msgs:
        ami._track(m)
    return ami.channels_up()


def test_resync_after_reconnect() -> None:
    msgs = transcript("ami-attack.txt")
    rows = master("Master-attack.csv")
    # A fresh tracker (daemon restarted) learns the 7 calls up at message 600.
    fresh = AmiCallTracker("p")
    events = fresh.resync(snapshot(msgs[:600]), AT)
    started = of(CallStarted, events)
    by_id = {r[16]: r for r in rows}
    assert len(started) == 7 and len(of(CallAnswered, events)) >= 6
    for e in started:
        assert (e.dialed, e.source, e.trunk, e.channel) == (
            by_id[e.call_id][2],
            "209",
            "carrier",
            by_id[e.call_id][5],
        )
    # Resync again: nothing new. Then the rest of the stream ends every one of them.
    assert fresh.resync(snapshot(msgs[:600]), AT) == []
    ended = of(CallEnded, run(fresh, msgs[600:]))
    assert {e.call_id for e in started} <= {e.call_id for e in ended}

    # A tracker that missed messages 600..1000: ends the gone calls, starts the new ones.
    tracker = AmiCallTracker("p")
    before = run(tracker, msgs[:600])
    events = tracker.resync(snapshot(msgs[:1000]), AT)
    gone = of(CallEnded, events)
    new = of(CallStarted, events)
    assert {e.cause for e in gone} == {"gone at resync"}
    gone_ids = ("13.16", "13.18", "14.20", "14.22", "15.24")
    assert sorted(e.call_id for e in gone) == [f"17955270{n}" for n in gone_ids]
    new_ids = ("16.30", "17.32", "17.34", "18.36")
    assert sorted(e.call_id for e in new) == [f"17955270{n}" for n in new_ids]
    after = run(tracker, msgs[1000:])
    all_events = before + events + after
    starts = Counter(e.call_id for e in of(CallStarted, all_events))
    ends = Counter(e.call_id for e in of(CallEnded, all_events))
    assert set(starts) == {r[16] for r in rows} and set(starts.values()) == {1}
    assert starts == ends and tracker.in_progress() == []


# -- fake server + AmiSource over TCP -----------------------------------------------------


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def drain(source: AmiSource) -> list[LiveEvent]:
    out = []
    while not source.events.empty():
        out.append(source.events.get_nowait())
    return out


def no_ids(actions: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in a.items() if k != "ActionID"} for a in actions]


async def test_end_to_end_attack() -> None:
    async with FakeAmi("tollwatch", "pa55") as ami:
        source = AmiSource("acme", "127.0.0.1", ami.port, "tollwatch", "pa55")
        task = asyncio.create_task(source.run())
        sent = await ami.replay(FIXTURES / "ami-attack.txt")
        assert sent == 2021
        await until(lambda: source.status.events >= 97)
        events = drain(source)
        rows = master("Master-attack.csv")
        assert [e.call_id for e in of(CallStarted, events)] == [r[16] for r in rows]
        assert len(of(CallEnded, events)) == 24 and len(of(CallAnswered, events)) == 24
        # our own login's SuccessfulAuth is dropped; the recorded session's is kept
        assert len(of(AuthAttempt, events)) == 25
        assert source.status.connected and source.status.calls_in_progress == 0
        assert source.status.last_event_at is not None
        assert no_ids(ami.actions[:4]) == [
            {"Action": "Login", "Events": "system,call,security,user", "Secret": "pa55",
             "Username": "tollwatch"},
            {"Action": "CoreStatus"},
            {"Action": "ListCommands"},
            {"Action": "CoreShowChannels"},
        ]  # fmt: skip
        await source.close()
        await asyncio.wait_for(task, 5)
        assert no_ids(ami.actions)[-1] == {"Action": "Logoff"}
        assert not source.status.connected


async def test_wrong_secret_and_refused_connection() -> None:
    async with FakeAmi("tollwatch", "right-secret") as ami:
        source = AmiSource("acme", "127.0.0.1", ami.port, "tollwatch", "WRONG-s3cret")
        with pytest.raises(AmiAuthError) as err:
            await asyncio.wait_for(source.run(), 30)  # generous: CI may be loaded
        assert "Authentication failed" in str(err.value)
        for text in (str(err.value), repr(err.value), repr(source), source.status.state):
            assert "WRONG-s3cret" not in text
        assert source.status.errors == 1 and not source.status.connected
        await ami.refuse(True)
        with pytest.raises(AmiConnectError, match="cannot connect"):
            await asyncio.wait_for(source.run(), 30)  # generous: CI may be loaded
        await ami.refuse(False)
        ok = AmiSource("acme", "127.0.0.1", ami.port, "tollwatch", "right-secret")
        task = asyncio.create_task(ok.run())
        await until(lambda: ok.status.connected, 30)
        await ok.close()
        await task


async def test_drop_mid_replay_then_reconnect_resyncs() -> None:
    async with FakeAmi() as ami:
        source = AmiSource("acme", "127.0.0.1", ami.port, "tollwatch", "secret")
        task = asyncio.create_task(source.run())
        replay = asyncio.create_task(
            ami.replay(FIXTURES / "ami-attack.txt", pause_after=(600, 1000))
        )
        await until(ami.paused.is_set)
        ami.drop_clients()
        with pytest.raises(AmiDisconnected, match="connection lost"):
            await asyncio.wait_for(task, 5)
        assert not source.status.connected
        ami.resume()  # messages 600..1000 go to nobody
        await until(lambda: ami.sent == 1000 and ami.paused.is_set())
        task = asyncio.create_task(source.run())  # the supervisor's retry, same source
        await until(lambda: no_ids(ami.actions).count({"Action": "CoreShowChannels"}) == 2)
        await until(lambda: source.status.calls_in_progress == 6)
        ami.resume()
        assert await replay == 2021
        await until(lambda: source.status.calls_in_progress == 0 and source.events.qsize() > 0)
        await asyncio.sleep(0.05)
        events = drain(source)
        starts = Counter(e.call_id for e in of(CallStarted, events))
        ends = Counter(e.call_id for e in of(CallEnded, events))
        assert set(starts) == {r[16] for r in master("Master-attack.csv")}
        assert set(starts.values()) == {1} and starts == ends
        assert sum(e.cause == "gone at resync" for e in of(CallEnded, events)) == 5
        await source.close()
        await task


async def test_garbage_frame_is_counted_and_stream_continues() -> None:
    async with FakeAmi() as ami:
        source = AmiSource("acme", "127.0.0.1", ami.port, "tollwatch", "secret")
        task = asyncio.create_task(source.run())
        replay = asyncio.create_task(ami.replay(FIXTURES / "ami-calls.txt", pause_after=100))
        await until(ami.paused.is_set)
        ami.inject(b"\x00\xffthis is not AMI\r\nnor this\r\n\r\n")
        # a well-formed frame with a relevant event missing its Uniqueid
        ami.inject(
            b"Event: DialBegin\r\nChannel: PJSIP/9-1\r\nDestChannel: PJSIP/carrier-1\r\n\r\n"
        )
        ami.resume()
        await replay
        await until(lambda: source.status.events >= 21)
        events = drain(source)
        assert source.bad_frames == 1 and source.status.errors == 1
        assert source.tracker.stats.malformed == 1
        assert len(of(CallEnded, events)) == 5 and source.status.connected
        await source.close()
        await task


async def test_db_and_hangup_actions_recorded_exactly() -> None:
    async with FakeAmi() as ami:
        source = AmiSource("acme", "127.0.0.1", ami.port, "tollwatch", "secret")
        task = asyncio.create_task(source.run())
        replay = asyncio.create_task(ami.replay(FIXTURES / "ami-calls.txt", pause_after=50))
        await until(ami.paused.is_set)
        await until(lambda: source.status.calls_in_progress == 1)
        put = {"Action": "DBPut", "Family": "tollwatch/block", "Key": "232", "Val": "fraud"}
        get = {"Action": "DBGet", "Family": "tollwatch/block", "Key": "232"}
        delete = {"Action": "DBDel", "Family": "tollwatch/block", "Key": "232"}
        hangup = {"Action": "Hangup", "Channel": "/^PJSIP/201-/"}
        resp = await source.send_action(put)
        assert not isinstance(resp, list) and resp["Message"] == "Updated database successfully"
        got = await source.send_action(get)
        assert isinstance(got, list) and [m.get("Event", "") for m in got] == [
            "", "DBGetResponse", "DBGetComplete"
        ]  # fmt: skip
        assert got[1]["Val"] == "fraud"
        resp = await source.send_action(delete)
        assert not isinstance(resp, list) and resp["Message"] == "Key deleted successfully"
        missing = await source.send_action(get)
        assert not isinstance(missing, list) and missing["Response"] == "Error"
        hung = await source.send_action(hangup)
        assert isinstance(hung, list) and hung[-1]["ListItems"] == "1"
        assert ami.hung_up == ["PJSIP/201-0000003a"]
        assert no_ids(ami.actions)[4:] == [put, get, delete, get, hangup]  # after login checks
        await until(lambda: source.status.calls_in_progress == 0)
        ended = of(CallEnded, drain(source))
        assert [(e.call_id, e.cause) for e in ended] == [("1795527074.58", "Normal Clearing")]
        ami.resume()
        await replay
        await source.close()
        await task


async def test_a_peer_that_stops_answering_counts_as_disconnected() -> None:
    async with FakeAmi() as ami:
        source = AmiSource("acme", "127.0.0.1", ami.port, "tollwatch", "secret",
                           keepalive=0.1, timeout=0.3)
        task = asyncio.create_task(source.run())
        await until(lambda: source.status.connected)
        await asyncio.sleep(0.3)  # answered pings keep it up
        assert not task.done()
        ami.muted = True  # TCP stays open, nothing answers any more
        with pytest.raises(AmiDisconnected, match="no answer to Ping"):
            await asyncio.wait_for(task, 5)
        assert not source.status.connected
        assert any(a.get("Action") == "Ping" for a in ami.actions)

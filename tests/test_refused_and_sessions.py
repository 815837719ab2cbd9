"""Refused attempts (AMI UserEvent and CDR userfield, live and batch), AMI login checks, and
how a reconnect is told from an Asterisk restart (fast path: fake AMI, recorded CDRs)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import settings
from tollwatch.cdr_ingest import CdrOptions
from tollwatch.cdr_ingest.live import CallRefused, PbxConnected
from tollwatch.cdr_ingest.live.ami import AmiSource
from tollwatch.cdr_ingest.live.ami_calls import AmiCallTracker
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi
from tollwatch.cdr_ingest.live.follow import CsvFollower, MemoryPositions
from tollwatch.live import LivePipeline
from tollwatch.recovery import Sessions
from tollwatch.report_format import incident_dict
from tollwatch.rules.destinations import Classifier
from tollwatch.scan import run_scan
from tollwatch.settings import rule_specs

AT = datetime(2026, 11, 24, 13, 30, 20, tzinfo=UTC)


def refused_row(n: int, second: int) -> str:
    when = f"2026-11-24 13:30:{second:02d}"
    return (f'"acme","209","01023276543{n:02d}","from-internal","""Desk 209"" <209>",'
            f'"PJSIP/209-000001{n:02d}","","Hangup","21","{when}",,"{when}",0,0,"NO ANSWER",'
            f'"DOCUMENTATION","1795527100.{n}","tollwatch-blocked:23276543"\n')  # fmt: skip


@pytest.fixture
def cdr(fixtures: Path, tmp_path: Path) -> Path:
    """The recorded attack's first 10 calls, then 5 attempts the dialplan refused."""
    rows = (fixtures / "Master-attack.csv").read_text(encoding="utf-8").splitlines(True)[:10]
    path = tmp_path / "Master.csv"
    path.write_text("".join(rows) + "".join(refused_row(n, 20 + n) for n in range(10, 15)),
                    encoding="utf-8")  # fmt: skip
    return path


def test_tracker_reads_the_snippets_user_event() -> None:
    tracker = AmiCallTracker("pbx")
    msg = {"Event": "UserEvent", "UserEvent": "TollwatchRefused", "Channel": "PJSIP/209-0000002a",
           "Uniqueid": "1795527100.42", "CallerIDNum": "209", "Exten": "0102327654399",
           "Hit": "23276543", "Dialed": "0102327654399"}  # fmt: skip
    assert tracker.feed(msg, AT) == [
        CallRefused("pbx", "1795527100.42", AT, "209", "0102327654399", "23276543")]
    assert tracker.feed({**msg, "UserEvent": "SomethingElse"}, AT) == []


def test_refused_attempts_counted_once_on_the_sources_incident(cdr: Path) -> None:
    s = settings("JP", "UTC")
    follower = CsvFollower("pbx", cdr, CdrOptions(), MemoryPositions())
    events = follower.poll_once()
    refused = [e for e in events if isinstance(e, CallRefused)]
    assert [(e.source, e.hit) for e in refused] == [("209", "23276543")] * 5
    pipeline = LivePipeline("pbx", s, Classifier(s), rule_specs(s))
    for e in [*events, *refused]:  # the same attempts again (AMI and CDR): counted once
        pipeline.feed(e)
    [inc] = pipeline.engine.tracker.open.values()
    view = incident_dict(inc, ZoneInfo("UTC"))
    assert (view["calls"], view["attempts_refused"]) == (10, 5)
    # an attempt from a source without an open incident opens nothing
    assert pipeline.feed(CallRefused("pbx", "x.1", AT, "201", "0102327654399", "23276543")) == []


def test_batch_scan_counts_refused_attempts(cdr: Path) -> None:
    [inc] = run_scan([cdr], settings("JP", "UTC")).incidents
    assert (len(inc.calls), inc.refused) == (10, 5)


async def test_login_checks_say_once_what_the_account_lacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with FakeAmi("tollwatch", "pa55") as ami:
        ami.commands = [c for c in ami.commands if c not in ("DBPut", "DBDel", "Hangup")]
        source = AmiSource("acme", "127.0.0.1", ami.port, "tollwatch", "pa55")
        for _ in range(2):  # two sessions: said once
            task = asyncio.create_task(source.run())
            async with asyncio.timeout(5):
                while not source.status.connected:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            await source.close()
            await asyncio.wait_for(task, 5)
    said = [r.getMessage() for r in caplog.records if "may not send" in r.getMessage()]
    assert len(said) == 1
    assert "DBPut (write = system: needed to apply blocks)" in said[0]
    assert "Hangup (write = call: needed to hang up blocked calls still up)" in said[0]
    got = []
    while not source.events.empty():
        got.append(source.events.get_nowait())
    connected = [e for e in got if isinstance(e, PbxConnected)]
    assert [e.started_at for e in connected] == [datetime(2026, 11, 24, 9, 0)] * 2
    assert connected[0].down_since is None


def test_reconnect_and_restart_are_told_apart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sessions = Sessions(ZoneInfo("UTC"))
    boot = datetime(2026, 11, 24, 9, 0)
    sessions.say(PbxConnected("pbx", AT, boot))
    sessions.say(PbxConnected("pbx", AT + timedelta(seconds=12), boot, AT + timedelta(seconds=2)))
    sessions.say(PbxConnected("pbx", AT + timedelta(seconds=30), datetime(2026, 11, 24, 13, 30, 25),
                              AT + timedelta(seconds=20)))  # fmt: skip
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == ("pbx pbx: AMI connected; Asterisk up since 2026-11-24T09:00:00+00:00 "
                        "(uptime 4 h 30 min)")  # fmt: skip
    assert lines[1] == ("pbx pbx: AMI reconnected after 10 s; Asterisk did not restart "
                        "(Asterisk up since 2026-11-24T09:00:00+00:00 (uptime 4 h 30 min))")
    assert lines[2].startswith("pbx pbx: Asterisk restarted; AMI reconnected after 10 s; ")
    assert "(uptime 25 s)" in lines[2]

"""SlackAlerter against a local Slack stub: the exact requests, retries, outages, restarts."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.slack_stub import CHANNEL_ID, WEBHOOK_PATH, SlackStub
from tollwatch.alerting import blockkit
from tollwatch.alerting.outbox import Outbox, alert_key
from tollwatch.alerting.slack import SlackAlerter
from tollwatch.config.schema import Slack

TOKEN = "xoxb-1234-SECRET-token-do-not-log"
T0 = 1_750_000_000.0


class FakeTime:
    """A clock and a sleep that only advances it (and records how long it was asked for)."""

    def __init__(self) -> None:
        self.now = T0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def stub() -> Iterator[SlackStub]:
    server = SlackStub().start()
    yield server
    server.down()


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch, stub: SlackStub) -> None:
    monkeypatch.setenv("TW_SLACK_TOKEN", TOKEN)
    monkeypatch.setenv("TW_SLACK_WEBHOOK", stub.webhook_url)


def bot_settings(stub: SlackStub, **kw: Any) -> Slack:
    return Slack(
        enabled=True, channel="#fraud", token_env="TW_SLACK_TOKEN", base_url=stub.base_url, **kw
    )


def hook_settings(**kw: Any) -> Slack:
    return Slack(enabled=True, webhook_env="TW_SLACK_WEBHOOK", **kw)


def make(settings: Slack, data: Path, fake: FakeTime) -> SlackAlerter:
    return SlackAlerter(
        settings, data, clock=fake.clock, sleep=fake.sleep, rng=random.Random(7), close_timeout=2.0
    )


def view(iid: str = "inc-1", **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": iid,
        "site": "acme",
        "pbx": "pbx1",
        "severity": "warning",
        "score": 60,
        "source": "2001",
        "sources": ["2001"],
        "account": "sales",
        "rules": ["high_risk_destination", "after_hours"],
        "regions": ["SL"],
        "destinations": ["Sierra Leone (+232)"],
        "calls": 3,
        "minutes": 7.5,
        "spend": 4.2,
        "currency": "EUR",
        "first_call_at": "2025-06-15T02:13:05+02:00",
        "last_call_at": "2025-06-15T02:20:00+02:00",
        "detected_at": "2025-06-15T02:14:00+02:00",
        "call_ids": ["a", "b", "c"],
        "reasons": ["3 calls to high-risk Sierra Leone (+232)", "calls at 02:13, outside hours"],
    }
    base.update(kw)
    return base


def block(value: str = "232", **kw: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "kind": "prefix",
        "value": value,
        "expires_at": "2025-06-16T02:20:00+02:00",
        "lift": f"tollwatch unblock {value}",
        "dry_run": False,
    }
    b.update(kw)
    return b


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    """The mrkdwn/plain texts of a message's blocks."""
    out = []
    for b in blocks:
        if "text" in b:
            out.append(b["text"]["text"])
        out += [e["text"] for e in b.get("elements", []) + b.get("fields", [])]
    return out


async def drain(alerter: SlackAlerter, fake: FakeTime, limit: int = 50) -> None:
    """Step, advancing the fake clock by whatever is asked, until nothing is pending."""
    for _ in range(limit):
        wait = await alerter.step()
        if wait is None:
            return
        fake.advance(wait)
    raise AssertionError("outbox never drained")


# ---- the messages -----------------------------------------------------------------------------
async def test_opened_posts_the_parent_message(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    v = view(severity="critical", score=140)
    await alerter.send("opened", v)
    assert stub.calls() == []  # send() only queues
    assert await alerter.step() is None
    [req] = stub.calls()
    assert (req.method, req.path) == ("POST", "/api/chat.postMessage")
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    expected = blockkit.parent_message(v)
    assert req.body == {
        "channel": "#fraud",
        "text": expected["text"],
        "blocks": expected["blocks"],
        "unfurl_links": False,
        "unfurl_media": False,
    }
    assert req.body["text"] == (  # short: what a phone notification shows
        "[CRITICAL] 2001 (account sales) → Sierra Leone (+232) at acme / pbx1, 3 call(s), "
        "≈ 4.20 EUR [inc-1]"
    )
    blocks = req.body["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "emoji": True,
            "text": ":rotating_light: CRITICAL toll fraud at acme / pbx1: 2001 (account sales) → "
            "Sierra Leone (+232)",
        },
    }
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields == [
        "*Severity*\n:rotating_light: CRITICAL (score 140)",
        "*Site / PBX*\nacme / pbx1",
        "*Source*\n2001 (account sales)",
        "*Destinations*\nSierra Leone (+232)",
        "*Calls*\n3",
        "*Minutes*\n7:30",
        "*Estimated spend*\n≈ 4.20 EUR",
        "*First call*\n<!date^1749946385^{date_short_pretty} {time_secs}|"
        "2025-06-15 02:13:05 +02:00>",  # each reader sees it in their own zone
    ]
    assert blocks[2]["text"]["text"] == (
        "*Why*\n• *high_risk_destination*: 3 calls to high-risk Sierra Leone (+232)\n"
        "• *after_hours*: calls at 02:13, outside hours"
    )
    assert blocks[3]["elements"][0]["text"] == "No block applied."
    thread = alerter.outbox.thread("inc-1")
    assert thread is not None and (thread.channel, thread.ts) == (CHANNEL_ID, "1700000001.000001")
    await alerter.close()


async def test_replies_go_to_the_thread_and_escalation_updates_the_parent(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    await alerter.send("opened", view())
    await alerter.step()
    parent_ts = stub.posts()[0].body and "1700000001.000001"
    await alerter.send("updated", view(calls=5, minutes=12.0))
    await alerter.step()
    crit = view(severity="critical", score=150, calls=6, minutes=14.0)
    await alerter.send("escalated", crit)
    await alerter.step()
    assert [r.api for r in stub.calls()] == [
        "chat.postMessage",
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",
    ]
    _, update_reply, update, escalate_reply = stub.calls()
    upd = blockkit.reply_message("updated", view(calls=5, minutes=12.0))
    assert update_reply.body == {
        "channel": CHANNEL_ID,
        "thread_ts": parent_ts,
        "text": upd["text"],
        "blocks": upd["blocks"],
        "unfurl_links": False,
        "unfurl_media": False,
    }
    assert update_reply.body["text"] == "[inc-1] now 5 call(s), 12:00 min, spend ≈ 4.20 EUR"
    parent = blockkit.parent_message(crit)
    assert update.body == {
        "channel": CHANNEL_ID,
        "ts": parent_ts,
        "text": parent["text"],
        "blocks": parent["blocks"],
    }
    assert escalate_reply.body["thread_ts"] == parent_ts
    assert escalate_reply.body["text"] == (
        "[inc-1] severity raised to CRITICAL (score 150): 6 call(s), 14:00 min, spend ≈ 4.20 EUR"
    )
    assert "reply_broadcast" not in escalate_reply.body
    await alerter.close()


async def test_block_applied_and_lifted(stub: SlackStub, fake: FakeTime, tmp_path: Path) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    await alerter.send("opened", view())
    await alerter.send("blocked", view(blocks=[block()]))
    await alerter.send("unblocked", view(blocks=[block()]))
    await drain(alerter, fake)
    apis = [r.api for r in stub.calls()]
    assert apis == [
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",
    ]
    _, upd_blocked, reply_blocked, upd_lifted, reply_lifted = stub.calls()
    assert (
        "*Blocked*\n• calls to +232: blocked until <!date^1750033200^{date_short_pretty} "
        "{time_secs}|2025-06-16 02:20:00 +02:00>; lift with `tollwatch unblock 232`"
        in texts(upd_blocked.body["blocks"])
    )
    assert reply_blocked.body["text"] == (
        "[inc-1] blocked: calls to +232: blocked until 2025-06-16 02:20:00 +02:00; "
        "lift with `tollwatch unblock 232`"
    )
    assert "No block applied." in texts(upd_lifted.body["blocks"])
    # the fake clock is in 2025-06-15 ... before expires_at: lifted by hand
    assert reply_lifted.body["text"] == "[inc-1] calls to +232: block lifted"
    assert {r.body.get("thread_ts") for r in (reply_blocked, reply_lifted)} == {"1700000001.000001"}
    await alerter.close()


def test_block_expired_and_dry_run_wording() -> None:
    from datetime import UTC, datetime

    late = datetime(2025, 6, 17, tzinfo=UTC)
    msg = blockkit.reply_message("unblocked", view(blocks=[block()]), now=late)
    assert msg["text"] == "[inc-1] calls to +232: block expired"
    dry = blockkit.reply_message("blocked", view(blocks=[block(dry_run=True)]))
    assert (
        dry["text"] == "[inc-1] WOULD BLOCK (dry run): calls to +232: WOULD BLOCK (dry run) "
        "until 2025-06-16 02:20:00 +02:00; to block now: `tollwatch block 232`"
    )
    on_pbx = blockkit.block_line(block(dry_run=True) | {"pbx": "tokyo"})
    assert on_pbx.endswith("to block now: `tollwatch block 232 --pbx tokyo`")
    assert blockkit.block_line(block("209", kind="source", dry_run=True)).endswith(
        "`tollwatch block --source 209`"
    )
    src = blockkit.block_line(block("2001", kind="source", lift="tollwatch unblock 2001"))
    assert src.startswith("calls from 2001: blocked until")


async def test_pending_updates_are_coalesced_into_one_reply(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    await alerter.send("opened", view())
    await alerter.step()
    for calls in (4, 5, 6):
        await alerter.send("updated", view(calls=calls))
    await alerter.step()
    posts = stub.posts()
    assert len(posts) == 2
    assert posts[1].body["text"] == "[inc-1] now 6 call(s), 7:30 min, spend ≈ 4.20 EUR"
    assert alerter.pending() == 0
    await alerter.close()


async def test_updates_off(stub: SlackStub, fake: FakeTime, tmp_path: Path) -> None:
    alerter = make(bot_settings(stub, updates=False), tmp_path, fake)
    await alerter.send("opened", view())
    await alerter.send("updated", view(calls=9))
    await alerter.send("escalated", view(severity="critical"))
    await drain(alerter, fake)
    assert [r.api for r in stub.calls()] == ["chat.postMessage", "chat.update", "chat.postMessage"]
    await alerter.close()


async def test_same_change_twice_is_posted_once(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    await alerter.send("opened", view())
    await alerter.send("opened", view())
    await alerter.step()
    await alerter.send("opened", view(calls=4))  # an incident opens once
    await alerter.send("updated", view(calls=4))
    await alerter.send("updated", view(calls=4, minutes=9.0))  # more minutes alone: no news
    await alerter.step()
    await alerter.send("updated", view(calls=4))
    await alerter.step()
    assert len(stub.posts()) == 2
    assert (
        alert_key("updated", view(calls=4))
        == "inc-1:updated:warning:4:after_hours+high_risk_destination"
    )
    assert (
        alert_key("blocked", view(blocks=[block()]))
        == "inc-1:blocked:prefix=232@2025-06-16T02:20:00+02:00"
    )
    await alerter.close()


# ---- failures ---------------------------------------------------------------------------------
async def test_429_retry_after_is_honoured_exactly(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    stub.fail(429, retry_after=7)
    await alerter.send("opened", view())
    assert await alerter.step() == 7.0
    await alerter.send("opened", view("inc-2"))  # waits for the same pause
    fake.advance(6.5)
    assert await alerter.step() == pytest.approx(0.5)
    assert len(stub.calls()) == 1
    fake.advance(0.5)
    assert await alerter.step() is None
    posts = stub.posts()
    assert len(posts) == 3
    assert posts[0].body == posts[1].body  # the same message again
    assert "inc-2" in posts[2].body["text"]
    await alerter.close()


async def test_run_loop_sleeps_what_slack_asked(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    stub.fail(429, times=2, retry_after=30)
    task = asyncio.create_task(alerter.run())
    await alerter.send("opened", view())
    for _ in range(200):
        if alerter.pending() == 0:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert fake.sleeps == [30.0, 30.0]
    assert len(stub.posts()) == 3 and alerter.pending() == 0
    await alerter.close()


async def test_500_is_retried_with_backoff(stub: SlackStub, fake: FakeTime, tmp_path: Path) -> None:
    alerter = make(bot_settings(stub, max_retry_delay=timedelta(seconds=3)), tmp_path, fake)
    stub.fail(500, times=4)
    await alerter.send("opened", view())
    waits = []
    for _ in range(4):
        wait = await alerter.step()
        assert wait is not None
        waits.append(wait)
        fake.advance(wait)
    assert await alerter.step() is None
    assert 0.5 <= waits[0] <= 1.0 and 1.0 <= waits[1] <= 2.0  # doubling, with jitter
    assert 1.5 <= waits[2] <= 3.0 and 1.5 <= waits[3] <= 3.0  # capped by max_retry_delay
    assert len(stub.posts()) == 5
    assert len({str(p.body) for p in stub.posts()}) == 1
    await alerter.close()


async def test_html_500_is_retried_too(stub: SlackStub, fake: FakeTime, tmp_path: Path) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    stub.fail(502, body="<html>bad gateway</html>")
    await alerter.send("opened", view())
    await drain(alerter, fake)
    assert len(stub.posts()) == 2 and alerter.pending() == 0
    await alerter.close()


async def test_slack_down_then_back_nothing_lost_order_kept(
    stub: SlackStub, fake: FakeTime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alerter = make(bot_settings(stub), tmp_path, fake)
    stub.down()
    await alerter.send("opened", view("inc-1"))
    await alerter.send("updated", view("inc-1", calls=5))
    await alerter.send("opened", view("inc-2", source="2002"))
    for _ in range(6):  # a while: several failed attempts
        wait = await alerter.step()
        assert wait is not None and wait > 0
        fake.advance(wait)
    await alerter.send("escalated", view("inc-1", severity="critical", calls=7))
    await alerter.send("updated", view("inc-2", source="2002", calls=4))
    assert alerter.pending() == 5
    stub.up()
    await drain(alerter, fake)
    calls = [(r.api, r.body.get("thread_ts"), r.body["text"][:12]) for r in stub.calls()]
    assert calls == [
        ("chat.postMessage", None, "[WARNING] 20"),  # inc-1 opened
        ("chat.postMessage", None, "[WARNING] 20"),  # inc-2 opened
        ("chat.postMessage", "1700000001.000001", "[inc-1] now "),
        ("chat.postMessage", "1700000002.000002", "[inc-2] now "),
        ("chat.update", None, "[CRITICAL] 2"),
        ("chat.postMessage", "1700000001.000001", "[inc-1] seve"),
    ]
    assert "inc-1" in stub.posts()[0].body["text"] and "inc-2" in stub.posts()[1].body["text"]
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "tollwatch.alert.slack" and r.levelno >= logging.WARNING
    ]
    assert len(warnings) == 2, warnings  # once when it broke, once when it came back
    assert warnings[0].startswith("slack: unreachable")
    assert warnings[1].startswith("slack: delivering again")
    await alerter.close()


async def test_restart_sends_the_outbox_once(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    first = make(bot_settings(stub), tmp_path, fake)
    await first.send("opened", view("inc-1"))
    await first.step()
    stub.down()
    await first.send("updated", view("inc-1", calls=8))
    await first.send("opened", view("inc-2"))
    assert await first.step() is not None
    await first.close()  # the daemon stops while Slack is down
    stub.up()

    second = make(bot_settings(stub), tmp_path, fake)
    assert second.pending() == 2
    await second.send("opened", view("inc-2"))  # the same change again after the restart
    task = asyncio.create_task(second.run())  # run() retries at once what waited
    for _ in range(200):
        if second.pending() == 0:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await second.close()

    third = make(bot_settings(stub), tmp_path, fake)
    await third.send("opened", view("inc-1"))
    assert await third.step() is None
    await third.close()
    bodies = [(r.body.get("thread_ts"), r.body["text"][:16]) for r in stub.posts()]
    assert bodies == [
        (None, "[WARNING] 2001 ("),
        ("1700000001.000001", "[inc-1] now 8 ca"),  # the thread survived the restart
        (None, "[WARNING] 2001 ("),
    ]


async def test_reply_waits_for_its_parent(stub: SlackStub, fake: FakeTime, tmp_path: Path) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    stub.fail(500)
    await alerter.send("opened", view("inc-1"))
    await alerter.send("updated", view("inc-1", calls=5))
    box = alerter.outbox
    assert [i.kind for i in box.due(fake.now)] == ["opened"]
    wait = await alerter.step()
    assert wait is not None
    assert [i.kind for i in box.due(fake.now + wait)] == ["opened"]
    fake.advance(wait)
    await alerter.step()
    assert [r.body.get("thread_ts") for r in stub.posts()] == [None, None, "1700000001.000001"]
    await alerter.close()


async def test_change_without_known_parent_posts_a_parent(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    """An incident that opened before Slack was configured: its first change starts a thread."""
    alerter = make(bot_settings(stub), tmp_path, fake)
    await alerter.send("updated", view("inc-9", calls=12))
    await alerter.send("updated", view("inc-9", calls=13))
    await drain(alerter, fake)
    posts = stub.posts()
    assert posts[0].body["text"].startswith("[WARNING]")
    assert "thread_ts" not in posts[0].body
    assert posts[1].body["thread_ts"] == "1700000001.000001"
    await alerter.close()


# ---- flood ------------------------------------------------------------------------------------
async def test_flood_of_openings_is_one_summary(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    for n in range(50):
        await alerter.send("opened", view(f"inc-{n:02d}", source=str(3000 + n)))
    wait = await alerter.step()
    assert wait == 5.0 and stub.calls() == []  # gathering the flood
    fake.advance(wait)
    assert await alerter.step() is None
    [summary] = stub.calls()
    assert summary.api == "chat.postMessage" and summary.body["channel"] == "#fraud"
    assert summary.body["text"].startswith(
        "50 new toll-fraud incidents within 1s (0 critical): inc-00, inc-01,"
    )
    blocks = summary.body["blocks"]
    assert len(blocks) <= 50
    assert blocks[0]["text"]["text"] == ":rotating_light: 50 new toll-fraud incidents within 1s"
    listed = "\n".join(b["text"]["text"] for b in blocks[2:] if b["type"] == "section")
    assert listed.count("\n• ") == 39 and "… and 10 more" in listed
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")

    # their later changes go to the summary's thread; an escalation is also broadcast
    await alerter.send("updated", view("inc-07", source="3007", calls=9))
    await alerter.send("escalated", view("inc-08", source="3008", severity="critical"))
    # the flood goes on: a new batch is one reply in the same thread
    fake.advance(10)
    for n in range(50, 53):
        await alerter.send("opened", view(f"inc-{n:02d}"))
    await drain(alerter, fake)
    _, upd, esc, batch = stub.calls()
    assert [r.api for r in (upd, esc, batch)] == ["chat.postMessage"] * 3
    assert {upd.body["thread_ts"], esc.body["thread_ts"], batch.body["thread_ts"]} == {
        "1700000001.000001"
    }
    assert upd.body["text"] == "[inc-07] now 9 call(s), 7:30 min, spend ≈ 4.20 EUR"
    assert "`inc-07` 3007 (account sales)" in upd.body["blocks"][0]["text"]["text"]
    assert esc.body["reply_broadcast"] is True
    assert batch.body["text"].startswith("3 new toll-fraud incidents")
    await alerter.close()


async def test_openings_up_to_the_threshold_are_posted_one_by_one(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    for n in range(10):
        await alerter.send("opened", view(f"inc-{n}"))
    assert await alerter.step() is None
    assert len(stub.posts()) == 10
    fake.advance(61)  # the window has passed: no flood
    for n in range(10, 13):
        await alerter.send("opened", view(f"inc-{n}"))
    await alerter.step()
    assert len(stub.posts()) == 13
    await alerter.close()


async def test_backlog_after_an_outage_is_one_summary(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    alerter = make(bot_settings(stub), tmp_path, fake)
    stub.down()
    for n in range(12):
        await alerter.send("opened", view(f"inc-{n}"))
        fake.advance(30)  # one every 30 s: no flood by the window
        await alerter.step()
    stub.up()
    await drain(alerter, fake)
    [summary] = stub.posts()
    assert summary.body["text"].startswith("12 new toll-fraud incidents within 5m30s")
    await alerter.close()


# ---- webhook mode -----------------------------------------------------------------------------
async def test_webhook_mode(stub: SlackStub, fake: FakeTime, tmp_path: Path) -> None:
    alerter = make(hook_settings(), tmp_path, fake)
    await alerter.send("opened", view())
    await alerter.send("updated", view(calls=9))  # cannot be threaded: not sent
    await alerter.send("escalated", view(severity="critical", score=130))
    await alerter.send("blocked", view(severity="critical", blocks=[block()]))
    stub.fail(429, retry_after=3)
    assert await alerter.step() == 3.0
    fake.advance(3)
    assert await alerter.step() is None
    reqs = stub.calls()
    assert [r.path for r in reqs] == [WEBHOOK_PATH] * 4
    assert all("Authorization" not in r.headers for r in reqs)
    parent = blockkit.parent_message(view())
    assert reqs[0].body == {"text": parent["text"], "blocks": parent["blocks"]}
    assert reqs[1].body == reqs[0].body  # after the 429
    assert reqs[2].body["text"].startswith("[CRITICAL] 2001 (account sales) → Sierra Leone")
    assert reqs[3].body["text"].startswith("[inc-1] blocked: calls to +232")
    assert "`inc-1` 2001 (account sales)" in reqs[3].body["blocks"][0]["text"]["text"]
    await alerter.close()


async def test_webhook_flood(stub: SlackStub, fake: FakeTime, tmp_path: Path) -> None:
    alerter = make(hook_settings(flood_threshold=3), tmp_path, fake)
    for n in range(5):
        await alerter.send("opened", view(f"inc-{n}"))
    await drain(alerter, fake)
    [req] = stub.calls()
    assert req.body["text"].startswith("5 new toll-fraud incidents")
    await alerter.close()


# ---- secrets ----------------------------------------------------------------------------------
async def test_no_secret_in_logs_or_errors(
    stub: SlackStub, fake: FakeTime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for settings, sub in ((bot_settings(stub), "bot"), (hook_settings(), "hook")):
        alerter = make(settings, tmp_path / sub, fake)
        stub.fail(429, retry_after=1)
        stub.fail(500)
        stub.fail(403, body='{"ok": false, "error": "invalid_auth"}')
        await alerter.send("opened", view())
        for _ in range(3):
            wait = await alerter.step()
            fake.advance(wait or 0)
        stub.down()
        fake.advance(await alerter.step() or 0)
        await alerter.step()
        stub.up()
        await drain(alerter, fake)
        await alerter.close()
        db = sqlite3.connect(tmp_path / sub / "slack-outbox.sqlite3")
        errors = " ".join(str(r[0]) for r in db.execute("SELECT error FROM outbox"))
        db.close()
        assert TOKEN not in errors and "webhooksecret" not in errors
    text = caplog.text + " ".join(str(r.exc_info) for r in caplog.records)
    assert "slack: unreachable" in text and "rate limited" in text  # the failures were logged
    assert TOKEN not in text
    assert "webhooksecret" not in text and stub.webhook_url not in text
    assert len(stub.calls("webhook")) == 4  # 3 refused, 1 delivered (none while down)


def test_missing_secret_names_no_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tollwatch.config.secrets import SecretError

    monkeypatch.delenv("TW_SLACK_TOKEN")
    with pytest.raises(SecretError, match="named by token_env is not set") as err:
        SlackAlerter(Slack(enabled=True, channel="#x", token_env="TW_SLACK_TOKEN"), tmp_path)
    assert "TW_SLACK_TOKEN" not in str(err.value)


# ---- run / close with real time ----------------------------------------------------------------
async def test_run_and_close_with_the_real_clock(stub: SlackStub, tmp_path: Path) -> None:
    alerter = SlackAlerter(bot_settings(stub), tmp_path)
    task = asyncio.create_task(alerter.run())
    await alerter.send("opened", view())
    for _ in range(300):
        if stub.posts():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await alerter.send("updated", view(calls=5))  # queued after the loop stopped ...
    await alerter.close()  # ... close() still tries once
    assert len(stub.posts()) == 2 and stub.posts()[1].body["thread_ts"] == "1700000001.000001"


# ---- outbox and messages ----------------------------------------------------------------------
def test_outbox_due_order_and_backoff(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    assert box.add("opened", view("a"), 1.0)
    assert not box.add("opened", view("a"), 2.0)
    assert box.add("opened", view("b"), 2.0)
    assert box.add("updated", view("a", calls=4), 3.0)
    due = box.due(10.0)
    assert [(i.incident_id, i.kind) for i in due] == [("a", "opened"), ("b", "opened")]
    box.mark_failed(due[0].id, "boom", 20.0)
    assert [i.incident_id for i in box.due(10.0)] == ["b"]
    box.mark_sent([due[1].id], 10.0, "1.1")
    assert box.due(10.0) == [] and box.next_due_at() == 20.0
    [a] = box.due(20.0)
    assert (a.attempts, a.error) == (1, "boom")
    box.mark_sent([a.id], 20.0, "1.2")
    assert [i.kind for i in box.due(20.0)] == ["updated"]
    box.close()


def test_outbox_keeps_keys_not_views_of_sent_alerts(tmp_path: Path) -> None:
    """A sent alert's key stays (never posted twice), its view goes: the file stays small."""
    box = Outbox(tmp_path / "o.sqlite3")
    big = view("a", calls=200) | {"call_ids": [f"1700000000.{n}" for n in range(200)]}
    assert box.add("opened", big, 1.0) and box.add("updated", view("a", calls=5), 2.0)
    [first] = box.due(10.0)
    box.mark_sent([first.id], 10.0, "1.1")
    assert not box.add("opened", big, 11.0)  # the key still answers
    [pending] = box.due(10.0)
    assert pending.kind == "updated" and pending.payload["calls"] == 5  # pending: kept whole
    rows = dict(box._db.execute("SELECT kind, length(payload) FROM outbox").fetchall())
    assert rows["opened"] == 2 and rows["updated"] > 100
    box.close()


def test_summary_and_parent_limits() -> None:
    many = [
        view(
            f"inc-{n}",
            destinations=[f"Country {k} (+{k})" for k in range(30)],
            reasons=["x" * 500] * 8,
            rules=[f"r{k}" for k in range(8)],
        )
        for n in range(200)
    ]
    summary = blockkit.summary_message(many)
    assert len(summary["blocks"]) <= 50
    msg = blockkit.parent_message(many[0], [block(str(k)) for k in range(20)])
    for b in msg["blocks"] + summary["blocks"]:
        if b["type"] == "header":
            assert len(b["text"]["text"]) <= 150
        if b["type"] == "section" and "text" in b:
            assert len(b["text"]["text"]) <= 3000
        if b["type"] == "section" and "fields" in b:
            assert len(b["fields"]) <= 10
    assert "and 20 more" in msg["text"] or "Country 0 (+0)" in msg["text"]
    escaped = blockkit.parent_message(view(source="<!channel>", spend=None, currency=None))
    assert "<!channel>" not in escaped["text"] + " ".join(texts(escaped["blocks"][1:]))
    assert "unknown (no rate)" in " ".join(texts(escaped["blocks"]))
    pbx_wide = blockkit.parent_message(view(source="*", account=""))
    assert "all sources (PBX-wide)" in pbx_wide["text"]


async def test_a_slow_outbox_write_holds_no_event_and_is_posted_after(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    import time

    alerter = make(bot_settings(stub), tmp_path, fake)
    add = alerter.outbox.add

    def slow_add(*args: Any, **kwargs: Any) -> bool:
        time.sleep(0.3)  # a commit behind another process's gigabytes
        return add(*args, **kwargs)

    alerter.outbox.add = slow_add  # type: ignore[method-assign]
    started = time.perf_counter()
    await alerter.send("opened", view())
    await alerter.send("updated", view(calls=9))
    assert time.perf_counter() - started < 0.2  # the loop was not held
    assert alerter.pending() == 2 and alerter.outbox.pending() == []  # being written
    await alerter.written()
    assert [i.kind for i in alerter.outbox.pending()] == ["opened", "updated"]  # in order
    assert await alerter.step() is None and len(stub.posts()) == 2
    await alerter.close()


@pytest.mark.slow
async def test_the_sender_reads_and_marks_the_outbox_off_the_loop(
    stub: SlackStub, fake: FakeTime, tmp_path: Path
) -> None:
    """The sender's own outbox work (what is due, marking a post sent: a commit) runs on the
    outbox's writer thread: a slow disk holds no AMI event while alerts go out."""
    import time

    alerter = make(bot_settings(stub), tmp_path, fake)
    await alerter.send("opened", view())
    await alerter.send("updated", view(calls=9))
    await alerter.written()
    outbox = alerter.outbox
    due, mark_sent = outbox.due, outbox.mark_sent

    def slow(work: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.4)  # a read or a commit behind another process's gigabytes
            return work(*args, **kwargs)

        return call

    outbox.due = slow(due)  # type: ignore[method-assign]
    outbox.mark_sent = slow(mark_sent)  # type: ignore[method-assign]
    gaps: list[float] = []

    async def events() -> None:  # what the loop does meanwhile: handle AMI events
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            gaps.append(time.perf_counter() - t)

    beat = asyncio.create_task(events())
    assert await alerter.step() is None
    beat.cancel()
    assert len(stub.posts()) == 2 and outbox.pending() == []  # posted, in order, marked sent
    assert len(gaps) > 50 and max(gaps) < 0.3  # ~2 s of slow outbox work; the loop went on
    await alerter.close()

"""Issue 4's proof: the recorded attack through a fake Asterisk, Slack at a local stand-in,
blocking enabled: one Slack message with thread updates, a DBPut for +232 before the 12th call,
the incident's live calls hung up; in dry run, no DBPut at all."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import settings
from tests.slack_stub import SlackStub
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi, parse_frames
from tollwatch.runner import build

SECRET = "ami-secret-e2e"
TOKEN = "xoxb-e2e-token-SECRET"


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    server = SlackStub().start()
    yield server
    server.down()


def twelfth_dial(transcript: Path) -> int:
    """How many messages the fake sends before the 12th DialBegin of the attack."""
    msgs = parse_frames(transcript.read_bytes())[1:]  # the transcript's Login response skipped
    dials = [i for i, m in enumerate(msgs) if m.get("Event") == "DialBegin"]
    return dials[11]


async def run_attack(
    tmp_path: Path, fixtures: Path, slack: SlackStub, monkeypatch: pytest.MonkeyPatch,
    enabled: bool,
) -> tuple[FakeAmi, dict[str, Any]]:
    monkeypatch.setenv("E2E_AMI_SECRET", SECRET)
    monkeypatch.setenv("E2E_SLACK_TOKEN", TOKEN)
    seen: dict[str, Any] = {}
    async with FakeAmi(username="tollwatch", secret=SECRET) as fake:
        s = settings(
            "JP", "UTC",
            daemon={"data_dir": str(tmp_path)},
            ami=[{"name": "pbx", "port": fake.port, "username": "tollwatch",
                  "secret_env": "E2E_AMI_SECRET"}],
            slack={"enabled": True, "channel": "#fraud", "token_env": "E2E_SLACK_TOKEN",
                   "base_url": slack.base_url},
            remediation={"enabled": enabled},
        )
        daemon = build(s)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))

        async def watch() -> None:
            while True:
                if "dbput_at" not in seen and any(
                        a.get("Action") == "DBPut" for a in fake.actions):
                    seen["dbput_at"] = fake.sent
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch())
        await fake.replay(fixtures / "ami-attack.txt", pace=0.002)
        await asyncio.sleep(1.0)
        stop.set()
        await task
        watcher.cancel()
        seen["incidents"] = daemon.store.incidents()
    return fake, seen


@pytest.mark.slow
async def test_attack_is_alerted_once_in_slack_blocked_and_hung_up(
    tmp_path: Path, fixtures: Path, slack: SlackStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, seen = await run_attack(tmp_path, fixtures, slack, monkeypatch, enabled=True)
    [incident] = seen["incidents"]
    assert incident["severity"] == "critical"
    # the narrowest range covering the attack's numbers (+232 7654300 ... 7654323)
    assert [(b["kind"], b["value"]) for b in incident["blocks"]] == [("prefix", "23276543")]
    # Slack: one parent message for the incident, everything else in its thread
    posts = slack.calls("chat.postMessage")
    parents = [p for p in posts if not p.body.get("thread_ts")]
    assert len(parents) == 1
    replies = [p for p in posts if p.body.get("thread_ts")]
    assert replies and len({p.body["thread_ts"] for p in replies}) == 1
    assert slack.calls("chat.update")  # the escalation updated the parent
    assert TOKEN not in str([r.headers for r in slack.calls()]).replace(
        f"Bearer {TOKEN}", "")
    # AstDB: the range blocked before the 12th call of the attack was dialed
    dbputs = [a for a in fake.actions if a.get("Action") == "DBPut"]
    assert dbputs[0]["Family"] == "tollwatch/block" and dbputs[0]["Key"] == "23276543"
    assert seen["dbput_at"] < twelfth_dial(fixtures / "ami-attack.txt")
    # the incident's calls still up were hung up
    hangups = [a for a in fake.actions if a.get("Action") == "Hangup"]
    assert hangups
    assert any("blocked" in (p.body.get("text") or "").lower() for p in replies)


@pytest.mark.slow
async def test_dry_run_sends_no_dbput(
    tmp_path: Path, fixtures: Path, slack: SlackStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, seen = await run_attack(tmp_path, fixtures, slack, monkeypatch, enabled=False)
    assert [i["severity"] for i in seen["incidents"]] == ["critical"]
    assert not [a for a in fake.actions if a.get("Action") in ("DBPut", "Hangup", "DBDel")]
    posts = slack.calls("chat.postMessage")
    assert any("dry run" in (p.body.get("text") or "").lower() for p in posts)

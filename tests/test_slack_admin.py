"""Slack for the administrator: a permanent error stops retries (kept alerts, shown in status)
until reload; a mention for critical incidents; `tollwatch slack-test` against the stub."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.slack_stub import SlackStub
from tests.test_slack import TOKEN, FakeTime, view
from tollwatch.alerting import blockkit
from tollwatch.alerting.outbox import read_health
from tollwatch.alerting.slack import SlackAlerter
from tollwatch.cli import app
from tollwatch.config.schema import Slack


@pytest.fixture
def stub() -> Iterator[SlackStub]:
    server = SlackStub().start()
    yield server
    server.down()


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_SLACK_TOKEN", TOKEN)


def settings(stub: SlackStub, **kw: object) -> Slack:
    return Slack.model_validate({"enabled": True, "channel": "#fraud",
                                 "token_env": "TW_SLACK_TOKEN", "base_url": stub.base_url, **kw})


def refuse(stub: SlackStub, code: str, times: int = 1) -> None:
    stub.fail(200, times=times, body=json.dumps({"ok": False, "error": code}))


async def test_permanent_error_logged_once_kept_and_sent_after_resume(
        stub: SlackStub, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime()
    alerter = SlackAlerter(settings(stub), tmp_path, clock=fake.clock, sleep=fake.sleep,
                           rng=random.Random(1))
    refuse(stub, "invalid_auth")  # one refusal: a retry would go through
    caplog.set_level(logging.WARNING, logger="tollwatch.alert.slack")
    await alerter.send("opened", view("inc-1"))
    wait = await alerter.step()
    assert wait == float("inf")  # no retry until the settings are fixed
    await alerter.send("opened", view("inc-2"))
    for _ in range(3):
        fake.advance(3600)
        assert await alerter.step() == float("inf")
    assert len(stub.calls()) == 1  # one attempt, no hammering
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "invalid_auth" in errors[0] and TOKEN not in errors[0]
    health = read_health(tmp_path)
    assert health is not None and health["state"] == "stopped"
    assert "invalid_auth" in health["detail"] and health["pending"] == 2
    alerter.resume()  # reload after fixing the token
    assert await alerter.step() is None
    assert [r.api for r in stub.calls()][1:] == ["chat.postMessage", "chat.postMessage"]
    assert alerter.pending() == 0
    health = read_health(tmp_path)
    assert health is not None and health["state"] == "ok"
    await alerter.close()


async def test_missing_scope_and_channel_not_found_are_permanent(
        stub: SlackStub, tmp_path: Path) -> None:
    for code in ("missing_scope", "channel_not_found"):
        fake = FakeTime()
        alerter = SlackAlerter(settings(stub), tmp_path / code, clock=fake.clock,
                               sleep=fake.sleep)
        refuse(stub, code)
        await alerter.send("opened", view())
        assert await alerter.step() == float("inf")
        assert alerter.stopped == code
        await alerter.close()


async def test_status_shows_the_stopped_slack(stub: SlackStub, tmp_path: Path) -> None:
    from tollwatch.state import StateStore

    fake = FakeTime()
    alerter = SlackAlerter(settings(stub), tmp_path, clock=fake.clock, sleep=fake.sleep)
    refuse(stub, "channel_not_found")
    await alerter.send("opened", view())
    await alerter.step()
    await alerter.close()
    store = StateStore.in_dir(tmp_path)
    store.write_status([], {"site": "acme", "events": 0, "errors": 0, "open_incidents": 0})
    store.close()
    res = CliRunner().invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "slack: STOPPED" in res.output and "channel_not_found" in res.output
    assert "1 alert(s) queued and kept" in res.output


def test_mention_only_for_critical() -> None:
    crit = blockkit.parent_message(view(severity="critical"), mention="@here")
    assert crit["text"].startswith("<!here> [CRITICAL]")
    assert crit["blocks"][1]["text"]["text"].startswith("<!here>")
    warn = blockkit.parent_message(view(), mention="@here")
    assert "<!here>" not in json.dumps(warn)
    group = blockkit.reply_message("escalated", view(severity="critical"),
                                   mention="<!subteam^S0PBX>")
    assert group["text"].startswith("<!subteam^S0PBX> ")
    with pytest.raises(ValueError):
        Slack(mention="here")


def _config(tmp_path: Path, stub: SlackStub) -> Path:
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'[site]\ncountry = "JP"\ntimezone = "Asia/Tokyo"\n[slack]\nenabled = true\n'
                   f'channel = "#fraud"\ntoken_env = "TW_SLACK_TOKEN"\n'
                   f'base_url = "{stub.base_url}"\n[daemon]\ndata_dir = "{tmp_path}"\n')
    return cfg


def test_slack_test_posts_and_reports_missing_scopes(stub: SlackStub, tmp_path: Path) -> None:
    cfg = _config(tmp_path, stub)
    stub.scopes = "chat:write,channels:read"
    res = CliRunner().invoke(app, ["slack-test", "-c", str(cfg)])
    assert res.exit_code == 1, res.output
    assert "missing scope files:write" in res.output
    assert "ok: scope chat:write" in res.output
    assert "test message posted to #fraud" in res.output
    assert TOKEN not in res.output
    [post] = stub.posts()
    assert post.body["text"].startswith("tollwatch test message")
    stub.scopes = "chat:write,files:write"
    res = CliRunner().invoke(app, ["slack-test", "-c", str(cfg)])
    assert res.exit_code == 0, res.output


def test_slack_test_says_what_is_wrong(stub: SlackStub, tmp_path: Path) -> None:
    cfg = _config(tmp_path, stub)
    refuse(stub, "invalid_auth")
    res = CliRunner().invoke(app, ["slack-test", "-c", str(cfg)])
    assert res.exit_code == 1
    assert "FAIL: token check: Slack answered invalid_auth: the token is not valid" in res.output
    stub.fail(200, body=json.dumps({"ok": True, "user_id": "U1", "team_id": "T1"}))
    stub.fail(200, body=json.dumps({"ok": False, "error": "missing_scope",
                                    "needed": "chat:write"}))
    res = CliRunner().invoke(app, ["slack-test", "-c", str(cfg)])
    assert res.exit_code == 1
    assert "lacks the scope chat:write" in res.output


@pytest.mark.parametrize("url", ["hooks.slack.com/services/T/B/X", "http://example.com/hook",
                                 "file:///etc/passwd"])  # fmt: skip
def test_a_webhook_url_that_is_not_https_is_refused_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """It was taken: every alert then failed ('unknown url type'), or went out in clear text
    to another host. The message must not show the URL (the secret)."""
    from tollwatch.alerting.slack_api import require_https
    from tollwatch.config.secrets import SecretError

    with pytest.raises(SecretError, match="is not an https:// URL") as exc:
        require_https(url)
    assert url not in str(exc.value)
    require_https("https://hooks.slack.com/services/T/B/X")
    require_https("http://127.0.0.1:8080/hook")
    cfg = tmp_path / "site.toml"
    cfg.write_text('[site]\ncountry = "JP"\ntimezone = "UTC"\n'
                   '[slack]\nenabled = true\nwebhook_env = "TW_HOOK"\n')
    monkeypatch.setenv("TW_HOOK", url)
    res = CliRunner().invoke(app, ["slack-test", "-c", str(cfg)])
    assert res.exit_code != 0 and "is not an https:// URL" in res.output
    assert url not in res.output

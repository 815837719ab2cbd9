"""`tollwatch slack-test`: post a test message with the [slack] settings and say in plain words
what is wrong: a bad token, a missing scope (chat:write to post, files:write for the report's
chart), an unknown channel or a dead webhook. The token and webhook URL are never shown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError

from tollwatch.alerting.slack_api import (
    _SDK_LOG,
    DEFAULT_BASE_URL,
    PERMANENT,
    PERMANENT_WEBHOOK,
    api_error,
    require_https,
)
from tollwatch.config.schema import Slack
from tollwatch.config.secrets import read_secret

SCOPES = {"chat:write": "post alerts", "files:write": "upload the nightly report's chart"}


@dataclass
class CheckResult:
    ok: bool = True
    lines: list[str] = field(default_factory=list)

    def bad(self, line: str) -> None:
        self.ok = False
        self.lines.append("FAIL: " + line)

    def good(self, line: str) -> None:
        self.lines.append("ok: " + line)


def _scopes(headers: Any) -> set[str] | None:
    try:
        for key, value in dict(headers or {}).items():
            if str(key).lower() == "x-oauth-scopes":
                text = value[0] if isinstance(value, list) else value
                return {s.strip() for s in str(text).split(",") if s.strip()}
    except (TypeError, ValueError):
        return None
    return None


def _explain(exc: SlackApiError) -> str:
    code = api_error(exc)
    hint = PERMANENT.get(code, "")
    needed = ""
    try:
        needed = str(exc.response.get("needed") or "")
    except Exception:
        needed = ""
    if code == "missing_scope" and needed:
        hint = (f"the token lacks the scope {needed}: add it under OAuth & Permissions in the "
                "Slack app, reinstall the app and use the new token")
    return f"Slack answered {code or 'an error'}" + (f": {hint}" if hint else "")


def _bot(settings: Slack, token: str, message: str) -> CheckResult:
    from slack_sdk import WebClient

    result = CheckResult()
    base = settings.base_url or DEFAULT_BASE_URL
    client = WebClient(token=token, base_url=base if base.endswith("/") else base + "/",
                       timeout=15, logger=_SDK_LOG, retry_handlers=[])
    try:
        auth = client.auth_test()
    except SlackApiError as exc:
        result.bad(f"token check: {_explain(exc)}")
        return result
    result.good(f"token accepted (team {auth.get('team') or auth.get('team_id')}, "
                f"bot user {auth.get('user') or auth.get('user_id')})")
    scopes = _scopes(auth.headers)
    if scopes is None:
        result.lines.append("note: Slack did not list the token's scopes; checking by posting")
    else:
        for scope, why in SCOPES.items():
            if scope in scopes:
                result.good(f"scope {scope} ({why})")
            else:
                result.bad(f"missing scope {scope}: needed to {why}; add it under OAuth & "
                           "Permissions in the Slack app, reinstall it and use the new token")
    try:
        resp = client.chat_postMessage(channel=settings.channel or "", text=message)
    except SlackApiError as exc:
        result.bad(f"posting to {settings.channel}: {_explain(exc)}")
        return result
    result.good(f"test message posted to {settings.channel} (channel {resp.get('channel')})")
    return result


def _webhook(url: str, message: str) -> CheckResult:
    from slack_sdk.webhook import WebhookClient

    result = CheckResult()
    resp = WebhookClient(url=url, timeout=15, logger=_SDK_LOG, retry_handlers=[]).send(
        text=message)
    if resp.status_code == 200:
        result.good("test message posted through the incoming webhook")
        return result
    code = str(resp.body).strip()
    hint = PERMANENT_WEBHOOK.get(code, "")
    result.bad(f"the webhook answered HTTP {resp.status_code} {code[:80]}"
               + (f": {hint}" if hint else ""))
    return result


async def check_slack(settings: Slack, message: str) -> CheckResult:
    """Raises config.secrets.SecretError when the token/webhook cannot be read."""
    if settings.webhook_env is not None or settings.webhook_file is not None:
        url = read_secret(settings.webhook_env, settings.webhook_file, "slack", "webhook_env",
                          "webhook_file")
        require_https(url)
        return await asyncio.to_thread(_webhook, url, message)
    token = read_secret(settings.token_env, settings.token_file, "slack", "token_env",
                        "token_file")
    return await asyncio.to_thread(_bot, settings, token, message)

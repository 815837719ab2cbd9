"""Slack's Web API and incoming webhooks for the alerter: the default clients (slack-sdk's
urllib clients in a worker thread), and what an error means (retry, wait, or stop until the
settings are fixed)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from tollwatch.config.secrets import SecretError
from tollwatch.config.types import https_or_local

# slack-sdk logs request URLs (a webhook URL is a secret) at debug level and every failed
# attempt at error level: keep it quiet
_SDK_LOG = logging.getLogger("tollwatch.alert.slack.sdk")
_SDK_LOG.setLevel(logging.CRITICAL)  # we log failures ourselves, once per state

DEFAULT_BASE_URL = "https://slack.com/api/"

# Errors no retry can fix: the settings (token, scopes, channel) must change first.
PERMANENT = {
    "invalid_auth": "the token is not valid (check token_env / token_file)",
    "not_authed": "no token was sent (check token_env / token_file)",
    "account_inactive": "the token's app or user was deactivated",
    "token_revoked": "the token was revoked: install the app again and use the new token",
    "token_expired": "the token expired",
    "missing_scope": "the token lacks a scope it needs (chat:write; files:write for reports)",
    "channel_not_found": "the channel does not exist or the app cannot see it",
    "not_in_channel": "the app is not in the channel: /invite it there",
    "is_archived": "the channel is archived",
    "restricted_action": "the workspace does not allow the app to post there",
}
# incoming webhooks answer these (HTTP 403/404/410) for settings that cannot work
PERMANENT_WEBHOOK = {
    "invalid_token": "the webhook URL is not valid (revoked?)",
    "no_service": "the webhook was removed or disabled",
    "no_team": "the webhook's workspace is gone",
    "team_disabled": "the webhook's workspace is disabled",
    "channel_not_found": "the webhook's channel was deleted",
    "channel_is_archived": "the webhook's channel is archived",
    "action_prohibited": "an admin restricted posting to the channel",
}


class WebhookError(Exception):
    """An incoming webhook answered something other than 200 ok."""

    def __init__(self, status: int, body: str, retry_after: float | None = None) -> None:
        super().__init__(f"webhook answered HTTP {status}: {body[:200]}")
        self.status = status
        self.body = body
        self.retry_after = retry_after


# ---- default clients: slack-sdk's urllib clients in a worker thread ---------------------------
class ThreadedWebClient:
    """`slack_sdk.WebClient` behind the coroutine methods of `AsyncWebClient` we use."""

    def __init__(self, token: str, base_url: str, timeout: int = 15) -> None:
        from slack_sdk import WebClient

        self._client = WebClient(token=token, base_url=base_url, timeout=timeout,
                                 logger=_SDK_LOG, retry_handlers=[])

    async def chat_postMessage(self, **kwargs: Any) -> Any:
        return await asyncio.to_thread(lambda: self._client.chat_postMessage(**kwargs))

    async def chat_update(self, **kwargs: Any) -> Any:
        return await asyncio.to_thread(lambda: self._client.chat_update(**kwargs))

    async def files_upload_v2(self, **kwargs: Any) -> Any:
        return await asyncio.to_thread(lambda: self._client.files_upload_v2(**kwargs))


class ThreadedWebhook:
    """`slack_sdk.webhook.WebhookClient` behind `AsyncWebhookClient.send_dict`."""

    def __init__(self, url: str, timeout: int = 15) -> None:
        from slack_sdk.webhook import WebhookClient

        self._client = WebhookClient(url=url, timeout=timeout, logger=_SDK_LOG,
                                     retry_handlers=[])

    async def send_dict(self, body: dict[str, Any]) -> Any:
        return await asyncio.to_thread(lambda: self._client.send_dict(body))


def permanent(exc: BaseException) -> tuple[str, str] | None:
    """(code, what to fix) when `exc` is an error only a change of the settings fixes."""
    if isinstance(exc, SlackApiError):
        code = api_error(exc)
        if code in PERMANENT:
            needed = ""
            try:
                needed = str(exc.response.get("needed") or "")
            except Exception:
                needed = ""
            hint = PERMANENT[code] + (f" (needs {needed})" if needed else "")
            return code, hint
        return None
    if isinstance(exc, WebhookError) and exc.status in (400, 403, 404, 410):
        code = exc.body.strip()
        if code in PERMANENT_WEBHOOK:
            return code, PERMANENT_WEBHOOK[code]
    return None


def status_of(exc: SlackApiError) -> int | None:
    resp = exc.response
    status = getattr(resp, "status_code", None)
    if status is None and isinstance(resp, dict):
        status = resp.get("status")
    return None if status is None else int(status)


def api_error(exc: SlackApiError) -> str:
    resp = exc.response
    try:
        return str(resp.get("error") or "")
    except Exception:
        return ""


def header(headers: Any, name: str) -> float | None:
    value = None
    try:
        for key, val in dict(headers).items():
            if str(key).lower() == name.lower():
                value = val[0] if isinstance(val, list) else val
    except (TypeError, ValueError):
        return None
    try:
        return None if value is None else max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def short(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return f"HTTP {status_of(exc)} {api_error(exc)}".strip()
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def require_https(url: str) -> None:
    """SecretError unless the webhook URL is https:// (http:// only to this host, a test
    stand-in), said without the URL: it is the secret."""
    if not https_or_local(url):
        raise SecretError("slack: the webhook URL (webhook_env/webhook_file) is not an "
                          "https:// URL")


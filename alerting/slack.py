"""Slack alerts: a durable outbox and a sender loop that posts incidents and their threads.

`send()` only writes the change to the outbox (SQLite, in the data directory) and returns: it
is fast and never fails for network problems. `run()`, which the daemon starts as a background
task, posts what is due:

- bot mode (a token and a channel, Web API):
  "opened" -> chat.postMessage, whose ts becomes the incident's thread;
  "escalated" -> chat.update of that parent (severity, numbers) + a reply in its thread;
  "updated" -> a reply in the thread (several pending ones of an incident: one reply; none at
  all when `updates = false`); "blocked"/"unblocked" -> a reply + the parent redrawn with the
  blocks in force.
- webhook mode (an incoming webhook): messages cannot be edited or threaded, so openings,
  escalations and block changes are each posted as a new message and "updated" is not sent.

Delivery: an incident's changes go out in order (a reply waits for its parent). A 429 is
honoured exactly (Retry-After); 5xx answers, connection errors and other failures are retried
with exponential backoff and jitter up to `max_retry_delay`, forever: an alert is never dropped.
The state (ok, rate limited, unreachable, ...) is logged once per change, not per attempt.

Flood control: when more than `flood_threshold` incidents opened within `flood_window`, the
pending openings are gathered for a few seconds and posted as ONE summary message; those
incidents' later changes are replies in the summary's thread (escalations are also broadcast to
the channel). Later batches of the same flood go to that thread as well.

Secrets (the token, the webhook URL) are read with `read_secret` and never logged: every error
text is redacted and slack-sdk's own debug logging (which prints webhook URLs) is silenced.

The default clients are slack-sdk's synchronous `WebClient`/`WebhookClient` run in a worker
thread (they need no aiohttp). An `AsyncWebClient` (or any object with the same coroutine
methods) can be passed as `client=`; an `AsyncWebhookClient` as `webhook=`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.errors import SlackApiError

from tollwatch.alerting import blockkit
from tollwatch.alerting.base import IncidentView
from tollwatch.alerting.outbox import COALESCED, SKIPPED, Item, Outbox, Thread
from tollwatch.alerting.slack_api import (
    DEFAULT_BASE_URL,
    ThreadedWebClient,
    ThreadedWebhook,
    WebhookError,
    api_error,
    header,
    permanent,
    short,
    status_of,
)
from tollwatch.config.schema import Slack
from tollwatch.config.secrets import read_secret
from tollwatch.config.types import format_duration

log = logging.getLogger("tollwatch.alert.slack")

KINDS = ("opened", "escalated", "updated", "blocked", "unblocked")
BASE_DELAY = 1.0  # first retry after ~1 s, then doubling up to max_retry_delay
FLOOD_GATHER = 5.0  # in a flood, openings wait this long to be posted together
PRUNE_AFTER = 30 * 86400.0  # sent rows (and their keys) are kept this long
_BAD_BLOCKS = {"invalid_blocks", "invalid_blocks_format"}
_CANT_UPDATE = {"message_not_found", "cant_update_message", "edit_window_closed",
                "msg_too_long", "invalid_blocks", "invalid_blocks_format"}

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


# ---- the alerter -----------------------------------------------------------------------------
class SlackAlerter:
    name = "slack"

    def __init__(
        self,
        settings: Slack,
        data_dir: Path,
        *,
        client: Any = None,
        webhook: Any = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        close_timeout: float = 5.0,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._close_timeout = close_timeout
        self._secrets: list[str] = []
        self.webhook_mode = settings.webhook_env is not None or settings.webhook_file is not None
        self.channel = settings.channel or ""
        self._own_clients = client is None and webhook is None  # re-read secrets on resume()
        self._webhook: Any = webhook
        self._client: Any = client
        self._connect()
        self.outbox = Outbox.in_dir(data_dir)
        self._window = settings.flood_window.total_seconds()
        self._max_delay = max(BASE_DELAY, settings.max_retry_delay.total_seconds())
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._paused_until = 0.0
        self._failures = 0
        self._state = "ok"
        self._warned: set[str] = set()
        self._inflight: asyncio.Future[bool] | None = None
        self._current: Item | None = None
        self._summary: tuple[str, str, float] | None = None  # the flood's (channel, ts, when)
        self._last_prune = 0.0
        self._closed = False
        self.stopped: str | None = None  # a permanent error: no retries until resume()
        self.outbox.set_health("ok", "", self.clock())

    def _connect(self) -> None:
        """Make the default clients from the secrets (unless clients were passed in)."""
        settings = self.settings
        if self.webhook_mode:
            if self._webhook is None or self._own_clients:
                url = read_secret(settings.webhook_env, settings.webhook_file, "slack",
                                  "webhook_env", "webhook_file")
                self._add_secret(url)
                self._webhook = ThreadedWebhook(url)
        elif self._client is None or self._own_clients:
            token = read_secret(settings.token_env, settings.token_file, "slack",
                                "token_env", "token_file")
            self._add_secret(token)
            base = settings.base_url or DEFAULT_BASE_URL
            self._client = ThreadedWebClient(token, base if base.endswith("/") else base + "/")

    def resume(self) -> None:
        """After a permanent error (bad token, missing scope, unknown channel): read the
        secrets again and retry every queued alert now (the daemon calls this on SIGHUP)."""
        if self._own_clients:
            try:
                self._connect()
            except Exception as exc:  # the secret is still missing: stay stopped, say so
                log.error("slack: cannot resume: %s", self._redact(str(exc)))
                return
        was = self.stopped
        self.stopped = None
        self._paused_until = 0.0
        self._failures = 0
        self.outbox.retry_now(self.clock())
        self.outbox.set_health("ok" if was is None else "retrying", "resumed", self.clock())
        if was is not None:
            log.warning("slack: resuming after %s; %d alert(s) queued", was, self.pending())
        self._wake.set()

    # ---- the Alerter protocol ------------------------------------------------------------
    async def send(self, kind: str, view: IncidentView) -> None:
        """Queue one change (durably); the sender loop posts it. Never waits on Slack."""
        if kind not in KINDS:
            log.warning("slack: unknown change kind %r for %s; ignored", kind, view.get("id"))
            return
        if kind == "updated" and (not self.settings.updates or self.webhook_mode):
            return
        if self.outbox.add(kind, view, self.clock()):
            self._wake.set()

    # ---- the sender ----------------------------------------------------------------------
    async def post_report(self, key: str, text: str, chart: Path | None = None) -> None:
        """Queue a report summary (and its chart) through the same outbox as alerts; `key`
        (e.g. the report's day) makes it post once even if the report is made again."""
        view = {"id": f"report:{key}", "text": text, "chart": str(chart) if chart else None}
        if self.outbox.add("report", view, self.clock(), key=f"report:{key}"):
            self._wake.set()

    async def run(self) -> None:
        """Post what is due, wait, repeat; runs until cancelled."""
        self.outbox.retry_now(self.clock())
        while True:
            self._wake.clear()
            wait = await self.step()
            if wait is None or math.isinf(wait):  # nothing due, or stopped until resume()
                await self._wake.wait()
            elif wait > 0:
                await self._sleep(wait)

    async def step(self) -> float | None:
        """Post everything due now. Returns the seconds until something is due again (0: at
        once), or None when nothing is pending."""
        async with self._lock:
            return await self._step()

    async def close(self) -> None:
        """Let a post under way finish (and be recorded), try once more to send what is due,
        then close the outbox. What is still pending is sent after the next start."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._inflight is not None and not self._inflight.done():
                await asyncio.wait_for(asyncio.shield(self._inflight), self._close_timeout)
            if self.clock() >= self._paused_until:
                await asyncio.wait_for(self.step(), self._close_timeout)
        except Exception as exc:  # shutting down: the outbox keeps them for the next start
            log.info("slack: %d alert(s) left in the outbox at shutdown (%s)",
                     self.pending(), self._redact(type(exc).__name__))
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()  # gave up waiting: it is retried after the next start
            await asyncio.gather(self._inflight, return_exceptions=True)
        self.outbox.close()

    def pending(self) -> int:
        return len(self.outbox.pending())

    # ---- internals -----------------------------------------------------------------------
    async def _step(self) -> float | None:
        while True:
            now = self.clock()
            if now < self._paused_until:
                return self._paused_until - now
            if now - self._last_prune > 86400:
                self.outbox.prune(now - PRUNE_AFTER)
                self._last_prune = now
            items = self.outbox.due(now)
            if not items:
                nxt = self.outbox.next_due_at()
                return None if nxt is None else max(0.0, nxt - now)
            wait_flood: float | None = None
            opens = [i for i in items if i.kind == "opened"]
            if opens and self._flooding(now, len(opens)):
                ready_at = min(i.created_at for i in opens) + min(FLOOD_GATHER, self._window)
                if now >= ready_at:
                    if not await self._guarded(self._post_flood(opens)):
                        return max(0.0, self._paused_until - self.clock())
                    continue
                wait_flood = ready_at - now
                items = [i for i in items if i.kind != "opened"]
            for item in items:
                if not await self._guarded(self._deliver(item)):
                    return max(0.0, self._paused_until - self.clock())
            if not items:
                return wait_flood

    def _flooding(self, now: float, due_openings: int) -> bool:
        """More openings than the threshold arrived within the window, or are waiting now
        (a backlog after an outage or a restart)."""
        limit = self.settings.flood_threshold
        return due_openings > limit or self.outbox.count_opened_since(now - self._window) > limit

    async def _guarded(self, work: Awaitable[None]) -> bool:
        """Run one delivery to its end even if the sender is cancelled meanwhile (so a post
        that went out is recorded); on failure, schedule the retry. True when it went out."""
        task: asyncio.Future[bool] = asyncio.ensure_future(self._attempt(work))
        self._inflight = task
        return await asyncio.shield(task)

    async def _attempt(self, work: Awaitable[None]) -> bool:
        self._current = None
        try:
            await work
        except Exception as exc:
            self._failed(exc)
            return False
        self._succeeded()
        return True

    # ---- one item ------------------------------------------------------------------------
    async def _deliver(self, item: Item) -> None:
        self._current = item
        view = item.payload
        if item.kind == "report":
            await self._deliver_report(item)
            return
        thread = self.outbox.thread(item.incident_id)
        if self.webhook_mode:
            await self._deliver_webhook(item)
            return
        if item.kind == "updated" and not self.settings.updates:
            self.outbox.mark_sent([item.id], self.clock(), None, state=SKIPPED)
            return
        if item.kind in ("blocked", "unblocked"):
            active = _merge_blocks(thread.blocks if thread else [], item.kind,
                                   view.get("blocks") or [])
        else:
            active = thread.blocks if thread else []
        if thread is None:  # opened, or a change of an incident whose parent we never posted
            ts = await self._post_parent(view, active)
            self.outbox.set_blocks(item.incident_id, active)
            self.outbox.mark_sent([item.id], self.clock(), ts)
            return
        if item.kind == "opened":  # already has a thread (a flood summary): nothing new
            self.outbox.mark_sent([item.id], self.clock(), thread.ts)
            return
        ids = [item.id]
        if item.kind == "updated":  # several pending updates of one incident: one reply
            for later in self.outbox.pending(item.incident_id)[1:]:
                if later.kind != "updated":
                    break
                ids.append(later.id)
                view = later.payload
        if not thread.summary and item.kind in ("escalated", "blocked", "unblocked"):
            await self._update_parent(thread, view, active)
        reply_ts = await self._reply(thread, item.kind, view)
        if item.kind in ("blocked", "unblocked"):
            self.outbox.set_blocks(item.incident_id, active)
        now = self.clock()
        self.outbox.mark_sent([ids[-1]], now, reply_ts)
        if len(ids) > 1:
            self.outbox.mark_sent(ids[:-1], now, reply_ts, state=COALESCED)

    async def _deliver_report(self, item: Item) -> None:
        """A nightly report: its summary as a message, the chart uploaded in its thread."""
        text = str(item.payload["text"])
        message = {"text": text,
                   "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
        if self.webhook_mode:
            await self._webhook_post(message)
            self.outbox.mark_sent([item.id], self.clock(), None)
            return
        thread = self.outbox.thread(item.incident_id)
        if thread is None:  # the summary first (kept, so a failed upload does not repeat it)
            resp = await self._api("chat_postMessage", channel=self.channel, text=text,
                                   blocks=message["blocks"], unfurl_links=False)
            self.outbox.set_thread(item.incident_id, str(resp["channel"]), str(resp["ts"]),
                                   self.clock())
            thread = self.outbox.thread(item.incident_id)
            assert thread is not None
        chart = item.payload.get("chart")
        if chart and Path(chart).is_file():
            await self._api("files_upload_v2", channel=thread.channel, thread_ts=thread.ts,
                            file=chart, filename=Path(chart).name, title="Calls per hour")
        self.outbox.mark_sent([item.id], self.clock(), thread.ts)

    async def _deliver_webhook(self, item: Item) -> None:
        view = item.payload
        if item.kind == "updated":
            self.outbox.mark_sent([item.id], self.clock(), None, state=SKIPPED)
            return
        if item.kind in ("opened", "escalated"):
            message = blockkit.parent_message(view, view.get("blocks") or [],
                                              mention=self.settings.mention)
        else:  # a block change: say which incident, since there is no thread
            message = blockkit.flood_reply(item.kind, view, now=self._now_dt())
        await self._webhook_post(message)
        self.outbox.mark_sent([item.id], self.clock(), None)

    async def _post_flood(self, opens: Sequence[Item]) -> None:
        views = [i.payload for i in opens]
        span = max(i.created_at for i in opens) - min(i.created_at for i in opens)
        window = format_duration(timedelta(seconds=max(1, math.ceil(span))))
        if self.webhook_mode:
            await self._webhook_post(blockkit.summary_message(views, window))
            self.outbox.mark_sent([i.id for i in opens], self.clock(), None)
            return
        recent = self._recent_summary()
        if recent is not None:  # the same flood goes on: one reply in its thread
            msg = blockkit.summary_message(views, window)
            await self._api("chat_postMessage", channel=recent.channel, thread_ts=recent.ts,
                            text=msg["text"], blocks=msg["blocks"], unfurl_links=False,
                            unfurl_media=False)
            channel, parent = recent.channel, recent.ts
        else:
            msg = blockkit.summary_message(views, window)
            resp = await self._api("chat_postMessage", channel=self.channel, text=msg["text"],
                                   blocks=msg["blocks"], unfurl_links=False, unfurl_media=False)
            channel, parent = str(resp["channel"]), str(resp["ts"])
        now = self.clock()
        for item in opens:
            self.outbox.set_thread(item.incident_id, channel, parent, now, summary=True)
        self.outbox.mark_sent([i.id for i in opens], now, parent)
        self._summary = (channel, parent, now)
        log.warning("slack: flood of %d new incidents posted as one summary", len(opens))

    def _recent_summary(self) -> Thread | None:
        summary = self._summary
        if summary is None or self.clock() - summary[2] > self._window:
            return None
        channel, ts, _ = summary
        return Thread("", channel, ts, True, [])

    # ---- Slack calls ---------------------------------------------------------------------
    async def _post_parent(self, view: IncidentView, active: list[dict[str, Any]]) -> str:
        msg = blockkit.parent_message(view, active, mention=self.settings.mention)
        resp = await self._api("chat_postMessage", channel=self.channel, text=msg["text"],
                               blocks=msg["blocks"], unfurl_links=False, unfurl_media=False)
        channel, ts = str(resp["channel"]), str(resp["ts"])
        self.outbox.set_thread(str(view["id"]), channel, ts, self.clock())
        return ts

    async def _update_parent(self, thread: Thread, view: IncidentView,
                             active: list[dict[str, Any]]) -> None:
        msg = blockkit.parent_message(view, active)
        try:
            await self._api("chat_update", channel=thread.channel, ts=thread.ts,
                            text=msg["text"], blocks=msg["blocks"])
        except SlackApiError as exc:
            code = api_error(exc)
            if status_of(exc) in (200, 400, 404) and code in _CANT_UPDATE:
                self._warn_once(f"update:{code}", "slack: cannot update the message of %s (%s);"
                                " replying in its thread only", thread.incident_id, code)
                return
            raise

    async def _reply(self, thread: Thread, kind: str, view: IncidentView) -> str | None:
        if thread.summary:
            msg = blockkit.flood_reply(kind, view, now=self._now_dt(),
                                       mention=self.settings.mention)
        else:
            msg = blockkit.reply_message(kind, view, now=self._now_dt(),
                                         mention=self.settings.mention)
        extra: dict[str, Any] = {}
        if thread.summary and kind == "escalated":
            extra["reply_broadcast"] = True  # a flood member became critical: say so aloud
        resp = await self._api("chat_postMessage", channel=thread.channel, thread_ts=thread.ts,
                               text=msg["text"], blocks=msg["blocks"], unfurl_links=False,
                               unfurl_media=False, **extra)
        ts = resp.get("ts") if hasattr(resp, "get") else None
        return None if ts is None else str(ts)

    async def _api(self, method: str, **kwargs: Any) -> Any:
        """One Web API call; blocks Slack refuses are retried once as plain text."""
        call = getattr(self._client, method)
        try:
            return await call(**kwargs)
        except SlackApiError as exc:
            code = api_error(exc)
            if code not in _BAD_BLOCKS or "blocks" not in kwargs:
                raise
            self._warn_once(f"blocks:{code}", "slack: Slack refused the message layout (%s); "
                            "sending plain text", code)
            kwargs.pop("blocks")
            return await call(**kwargs)

    async def _webhook_post(self, message: dict[str, Any]) -> None:
        resp = await self._webhook.send_dict(message)
        status = int(getattr(resp, "status_code", 200))
        if status != 200:
            body = str(getattr(resp, "body", ""))
            headers = getattr(resp, "headers", None) or {}
            retry = header(headers, "Retry-After")
            raise WebhookError(status, body, retry)

    # ---- failures ------------------------------------------------------------------------
    def _failed(self, exc: BaseException) -> None:
        now = self.clock()
        fatal = permanent(exc)
        if fatal is not None:
            self._stop(fatal[0], fatal[1], exc)
            return
        state, retry_after = self._classify(exc)
        if retry_after is not None:
            delay = retry_after
        else:
            self._failures += 1
            cap = min(self._max_delay, BASE_DELAY * 2 ** min(self._failures - 1, 30))
            delay = cap * (0.5 + 0.5 * self._rng.random())
        until = now + delay
        item = self._current
        error = self._redact(f"{state}: {exc}")[:500]
        if item is not None:
            self.outbox.mark_failed(item.id, error, until)
        self.outbox.postpone_all(until)
        self._paused_until = until
        if state != self._state:
            log.warning("slack: %s (%s); %d alert(s) kept, retrying in %.0fs", state,
                        self._redact(short(exc)), self.pending(), delay)
            self._state = state
            self.outbox.set_health("retrying", self._redact(f"{state} ({short(exc)})"), now)
        else:
            log.debug("slack: still %s; retrying in %.1fs", state, delay)

    def _stop(self, code: str, hint: str, exc: BaseException) -> None:
        """A permanent error: keep every alert, stop retrying until resume() (reload/restart)."""
        now = self.clock()
        item = self._current
        if item is not None:
            self.outbox.mark_failed(item.id, self._redact(f"{code}: {exc}")[:500], now)
        self._paused_until = math.inf
        detail = f"Slack refused: {code}: {hint}; fix the [slack] settings, then reload or " \
                 "restart tollwatch"
        if self.stopped != code:
            log.error("slack: %s; %d alert(s) kept, not retried until then", detail,
                      self.pending())
        self.stopped = code
        self._state = f"stopped ({code})"
        self.outbox.set_health("stopped", detail, now)

    def _succeeded(self) -> None:
        self._failures = 0
        if self._state != "ok":
            log.warning("slack: delivering again (was %s); %d alert(s) still queued",
                        self._state, self.pending())
            self._state = "ok"
            self.outbox.set_health("ok", "", self.clock())

    def _classify(self, exc: BaseException) -> tuple[str, float | None]:
        """A state name for the log, and the exact wait Slack asked for (429) if any."""
        if isinstance(exc, SlackApiError | WebhookError):
            status = exc.status if isinstance(exc, WebhookError) else status_of(exc)
            if status == 429:
                if isinstance(exc, WebhookError):
                    retry = exc.retry_after
                else:
                    retry = header(getattr(exc.response, "headers", None) or {}, "Retry-After")
                return "rate limited", retry if retry is not None else 1.0
            if status is not None and status >= 500:
                return f"server error {status}", None
            if isinstance(exc, SlackApiError):
                return f"Slack refused: {api_error(exc) or status}", None
            return f"webhook refused: HTTP {status}", None
        if isinstance(exc, OSError | TimeoutError) or type(exc).__module__.startswith("aiohttp"):
            return "unreachable", None
        return f"failing ({type(exc).__name__})", None

    def _add_secret(self, value: str) -> None:
        self._secrets.append(value)
        parts = urlsplit(value)
        if parts.scheme and parts.path and len(parts.path) > 8:
            self._secrets.append(parts.path)
            self._secrets.append(parts.path.lstrip("/"))

    def _redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)

    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)


# ---- helpers ---------------------------------------------------------------------------------
def _merge_blocks(active: list[dict[str, Any]], kind: str,
                  changed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks in force after a block change: "blocked" adds/replaces, "unblocked" removes."""
    keyed = {(b.get("kind"), b.get("value")): b for b in active}
    for block in changed:
        key = (block.get("kind"), block.get("value"))
        if kind == "blocked":
            keyed[key] = block
        else:
            keyed.pop(key, None)
    return list(keyed.values())

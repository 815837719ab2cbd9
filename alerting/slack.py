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

How one item is posted (parent, reply, flood summary, report, webhook) is in `slack_post.py`;
the messages themselves in `blockkit.py`; Slack errors and the default clients in `slack_api.py`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.errors import SlackApiError

from tollwatch.alerting.base import IncidentView
from tollwatch.alerting.outbox import Item, Outbox
from tollwatch.alerting.slack_api import (
    DEFAULT_BASE_URL,
    ThreadedWebClient,
    ThreadedWebhook,
    WebhookError,
    api_error,
    header,
    permanent,
    require_https,
    short,
    status_of,
)
from tollwatch.alerting.slack_post import Posting
from tollwatch.config.schema import Slack
from tollwatch.config.secrets import read_secret

log = logging.getLogger("tollwatch.alert.slack")

KINDS = ("opened", "escalated", "updated", "blocked", "unblocked")
BASE_DELAY = 1.0  # first retry after ~1 s, then doubling up to max_retry_delay
FLOOD_GATHER = 5.0  # in a flood, openings wait this long to be posted together
PRUNE_AFTER = 30 * 86400.0  # sent rows (and their keys) are kept this long

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


# ---- the alerter -----------------------------------------------------------------------------
class SlackAlerter(Posting):
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
        self._writer: ThreadPoolExecutor | None = None  # writes outbox rows, in order
        self._last_add: Future[bool] | None = None
        self._adding = 0  # rows handed to the writer, not written yet
        self.stopped: str | None = None  # a permanent error: no retries until resume()
        self.outbox.set_health("ok", "", self.clock())

    def _connect(self) -> None:
        """Make the default clients from the secrets (unless clients were passed in)."""
        settings = self.settings
        if self.webhook_mode:
            if self._webhook is None or self._own_clients:
                url = read_secret(
                    settings.webhook_env,
                    settings.webhook_file,
                    "slack",
                    "webhook_env",
                    "webhook_file",
                )
                self._add_secret(url)
                require_https(url)
                self._webhook = ThreadedWebhook(url)
        elif self._client is None or self._own_clients:
            token = read_secret(
                settings.token_env, settings.token_file, "slack", "token_env", "token_file"
            )
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
        """Queue one change (durably); the sender loop posts it. Never waits on Slack, nor
        on the disk: the outbox row is written by a writer thread, in order (a commit stuck
        behind another process's writes holds no AMI event); `written()` waits for it."""
        if kind not in KINDS:
            log.warning("slack: unknown change kind %r for %s; ignored", kind, view.get("id"))
            return
        if kind == "updated" and (not self.settings.updates or self.webhook_mode):
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="tollwatch-outbox")
        loop = asyncio.get_running_loop()
        self._adding += 1
        fut = self._writer.submit(self.outbox.add, kind, dict(view), self.clock())
        self._last_add = fut
        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(self._added, f))

    def _added(self, fut: Future[bool]) -> None:
        """An outbox row written (on the writer thread): wake the sender."""
        self._adding -= 1
        exc = fut.exception()
        if exc is not None:  # the outbox keeps itself in memory on a disk failure: a bug
            log.error("slack: cannot queue an alert: %s", self._redact(repr(exc)))
        elif fut.result():
            self._wake.set()

    async def written(self) -> None:
        """Wait until every alert handed to `send()` so far is in the outbox."""
        last = self._last_add
        if last is not None and not last.done():
            await asyncio.wait({asyncio.wrap_future(last)})

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
            await self.written()  # what send() queued is in the outbox
            return await self._step()

    async def close(self) -> None:
        """Let a post under way finish (and be recorded), try once more to send what is due,
        then close the outbox. What is still pending is sent after the next start."""
        if self._closed:
            return
        self._closed = True
        await self.written()
        try:
            if self._inflight is not None and not self._inflight.done():
                await asyncio.wait_for(asyncio.shield(self._inflight), self._close_timeout)
            if self.clock() >= self._paused_until:
                await asyncio.wait_for(self.step(), self._close_timeout)
        except Exception as exc:  # shutting down: the outbox keeps them for the next start
            log.info(
                "slack: %d alert(s) left in the outbox at shutdown (%s)",
                self.pending(),
                self._redact(type(exc).__name__),
            )
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()  # gave up waiting: it is retried after the next start
            await asyncio.gather(self._inflight, return_exceptions=True)
        self.outbox.close()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def pending(self) -> int:
        return len(self.outbox.pending()) + self._adding

    # ---- internals -----------------------------------------------------------------------
    async def _step(self) -> float | None:
        while True:
            now = self.clock()
            if now < self._paused_until:
                return self._paused_until - now
            if now - self._last_prune > 86400:
                await self._db(self.outbox.prune, now - PRUNE_AFTER)
                self._last_prune = now
            items = await self._db(self.outbox.due, now)
            if not items:
                nxt = await self._db(self.outbox.next_due_at)
                return None if nxt is None else max(0.0, nxt - now)
            wait_flood: float | None = None
            opens = [i for i in items if i.kind == "opened"]
            if opens and await self._flooding(now, len(opens)):
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

    async def _flooding(self, now: float, due_openings: int) -> bool:
        """More openings than the threshold arrived within the window, or are waiting now
        (a backlog after an outage or a restart)."""
        limit = self.settings.flood_threshold
        if due_openings > limit:
            return True
        return await self._db(self.outbox.count_opened_since, now - self._window) > limit

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
            await self._failed(exc)
            return False
        await self._succeeded()
        return True

    # ---- failures ------------------------------------------------------------------------
    async def _failed(self, exc: BaseException) -> None:
        now = self.clock()
        fatal = permanent(exc)
        if fatal is not None:
            await self._stop(fatal[0], fatal[1], exc)
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
            await self._db(self.outbox.mark_failed, item.id, error, until)
        await self._db(self.outbox.postpone_all, until)
        self._paused_until = until
        if state != self._state:
            log.warning(
                "slack: %s (%s); %d alert(s) kept, retrying in %.0fs",
                state,
                self._redact(short(exc)),
                self.pending(),
                delay,
            )
            self._state = state
            detail = self._redact(f"{state} ({short(exc)})")
            await self._db(self.outbox.set_health, "retrying", detail, now)
        else:
            log.debug("slack: still %s; retrying in %.1fs", state, delay)

    async def _stop(self, code: str, hint: str, exc: BaseException) -> None:
        """A permanent error: keep every alert, stop retrying until resume() (reload/restart)."""
        now = self.clock()
        item = self._current
        if item is not None:
            error = self._redact(f"{code}: {exc}")[:500]
            await self._db(self.outbox.mark_failed, item.id, error, now)
        self._paused_until = math.inf
        detail = (
            f"Slack refused: {code}: {hint}; fix the [slack] settings, then reload or "
            "restart tollwatch"
        )
        if self.stopped != code:
            log.error("slack: %s; %d alert(s) kept, not retried until then", detail, self.pending())
        self.stopped = code
        self._state = f"stopped ({code})"
        await self._db(self.outbox.set_health, "stopped", detail, now)

    async def _succeeded(self) -> None:
        self._failures = 0
        if self._state != "ok":
            log.warning(
                "slack: delivering again (was %s); %d alert(s) still queued",
                self._state,
                self.pending(),
            )
            self._state = "ok"
            await self._db(self.outbox.set_health, "ok", "", self.clock())

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

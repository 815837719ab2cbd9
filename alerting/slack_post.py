"""How SlackAlerter posts one outbox item: parents, thread replies, flood summaries, reports,
webhook messages (the `Posting` half of `tollwatch.alerting.slack.SlackAlerter`; the retry
loop and failure handling stay there)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from slack_sdk.errors import SlackApiError

from tollwatch.alerting import blockkit
from tollwatch.alerting.base import IncidentView
from tollwatch.alerting.outbox import COALESCED, SKIPPED, Item, Outbox, Thread
from tollwatch.alerting.slack_api import WebhookError, api_error, header, status_of
from tollwatch.config.schema import Slack
from tollwatch.config.types import format_duration

log = logging.getLogger("tollwatch.alert.slack")

_P = ParamSpec("_P")
_T = TypeVar("_T")
_BAD_BLOCKS = {"invalid_blocks", "invalid_blocks_format"}
_CANT_UPDATE = {"message_not_found", "cant_update_message", "edit_window_closed",
                "msg_too_long", "invalid_blocks", "invalid_blocks_format"}


class Posting:
    """Delivery of single items; SlackAlerter sets these attributes."""

    settings: Slack
    outbox: Outbox
    webhook_mode: bool
    channel: str
    _client: Any
    _webhook: Any
    _window: float
    _current: Item | None
    _summary: tuple[str, str, float] | None
    _warned: set[str]
    _writer: ThreadPoolExecutor | None
    clock: Callable[[], float]

    async def _db(self, work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """An outbox call (a read, a mark, a commit) on the outbox's writer thread, after the
        rows `send()` queued before it: a commit that waits for the disk, or for the lock a
        slow add holds, holds no AMI event on the loop."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="tollwatch-outbox")
        return await asyncio.wrap_future(self._writer.submit(work, *args, **kwargs))

    # ---- one item ------------------------------------------------------------------------
    async def _deliver(self, item: Item) -> None:
        self._current = item
        view = item.payload
        if item.kind == "report":
            await self._deliver_report(item)
            return
        thread = await self._db(self.outbox.thread, item.incident_id)
        if self.webhook_mode:
            await self._deliver_webhook(item)
            return
        if item.kind == "updated" and not self.settings.updates:
            await self._db(self.outbox.mark_sent, [item.id], self.clock(), None, state=SKIPPED)
            return
        if item.kind in ("blocked", "unblocked"):
            active = _merge_blocks(thread.blocks if thread else [], item.kind,
                                   view.get("blocks") or [])
        else:
            active = thread.blocks if thread else []
        if thread is None:  # opened, or a change of an incident whose parent we never posted
            ts = await self._post_parent(view, active)
            await self._db(self.outbox.set_blocks, item.incident_id, active)
            await self._db(self.outbox.mark_sent, [item.id], self.clock(), ts)
            return
        if item.kind == "opened":  # already has a thread (a flood summary): nothing new
            await self._db(self.outbox.mark_sent, [item.id], self.clock(), thread.ts)
            return
        ids = [item.id]
        if item.kind == "updated":  # several pending updates of one incident: one reply
            for later in (await self._db(self.outbox.pending, item.incident_id))[1:]:
                if later.kind != "updated":
                    break
                ids.append(later.id)
                view = later.payload
        if not thread.summary and item.kind in ("escalated", "blocked", "unblocked"):
            await self._update_parent(thread, view, active)
        reply_ts = await self._reply(thread, item.kind, view)
        if item.kind in ("blocked", "unblocked"):
            await self._db(self.outbox.set_blocks, item.incident_id, active)
        now = self.clock()
        await self._db(self.outbox.mark_sent, [ids[-1]], now, reply_ts)
        if len(ids) > 1:
            await self._db(self.outbox.mark_sent, ids[:-1], now, reply_ts, state=COALESCED)

    async def _deliver_report(self, item: Item) -> None:
        """A nightly report: its summary as a message, the chart uploaded in its thread."""
        text = blockkit.escape(item.payload["text"])  # it names CDR sources: no <!channel>
        message = {"text": text,
                   "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
        if self.webhook_mode:
            await self._webhook_post(message)
            await self._db(self.outbox.mark_sent, [item.id], self.clock(), None)
            return
        thread = await self._db(self.outbox.thread, item.incident_id)
        if thread is None:  # the summary first (kept, so a failed upload does not repeat it)
            resp = await self._api("chat_postMessage", channel=self.channel, text=text,
                                   blocks=message["blocks"], unfurl_links=False)
            await self._db(self.outbox.set_thread, item.incident_id, str(resp["channel"]),
                           str(resp["ts"]), self.clock())
            thread = await self._db(self.outbox.thread, item.incident_id)
            assert thread is not None
        chart = item.payload.get("chart")
        if chart and Path(chart).is_file():
            await self._api("files_upload_v2", channel=thread.channel, thread_ts=thread.ts,
                            file=chart, filename=Path(chart).name, title="Calls per hour")
        await self._db(self.outbox.mark_sent, [item.id], self.clock(), thread.ts)

    async def _deliver_webhook(self, item: Item) -> None:
        view = item.payload
        if item.kind == "updated":
            await self._db(self.outbox.mark_sent, [item.id], self.clock(), None, state=SKIPPED)
            return
        if item.kind in ("opened", "escalated"):
            message = blockkit.parent_message(view, view.get("blocks") or [],
                                              mention=self.settings.mention)
        else:  # a block change: say which incident, since there is no thread
            message = blockkit.flood_reply(item.kind, view, now=self._now_dt())
        await self._webhook_post(message)
        await self._db(self.outbox.mark_sent, [item.id], self.clock(), None)

    async def _post_flood(self, opens: Sequence[Item]) -> None:
        views = [i.payload for i in opens]
        span = max(i.created_at for i in opens) - min(i.created_at for i in opens)
        window = format_duration(timedelta(seconds=max(1, math.ceil(span))))
        if self.webhook_mode:
            await self._webhook_post(blockkit.summary_message(views, window))
            await self._db(self.outbox.mark_sent, [i.id for i in opens], self.clock(), None)
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
            await self._db(self.outbox.set_thread, item.incident_id, channel, parent, now,
                           summary=True)
        await self._db(self.outbox.mark_sent, [i.id for i in opens], now, parent)
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
        await self._db(self.outbox.set_thread, str(view["id"]), channel, ts, self.clock())
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

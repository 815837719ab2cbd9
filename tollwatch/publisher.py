"""The daemon's publisher: incident changes -> views, SQLite rows, alerters, after the decision.

The rules decide on the event loop, event by event; publishing a change (building the incident's
view, writing it to SQLite, handing it to every alerter: Slack's outbox, remediation) costs
more than deciding, and used to run before `Daemon.process` returned, so the decision of the
call that opened or escalated an incident (and every event queued behind it) waited for it.
Now `queue()` records the changes in order and `process` returns: the decision is made. The
consumer then publishes them (`publish_now`) before it takes the next event, so a view shows
the incident as the deciding event left it; a tick's coalesced growth is published the same
way, handing the loop back between views. Order is kept (one queue, one publisher at a time:
an opening before its growth, growth before the close). Nothing is lost: the daemon takes a
snapshot only after `publish_queued()` emptied the queue, and writes it after their rows (one
writer thread writes incident rows and snapshots to SQLite, in order), so a restart never
holds an incident whose opening was not published; stopping publishes and writes what is
left first.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from tollwatch.alerting.base import Alerter
from tollwatch.live_views import IncidentViews
from tollwatch.rules.incidents import Incident, IncidentChange
from tollwatch.state import StateStore

log = logging.getLogger("tollwatch.daemon")
PUBLISH_SLICE = 0.002  # seconds of views before the loop is handed back to the events


class Publisher:
    """`queue(pbx, changes, closed, flush)` when deciding; `publish_queued()` right after."""

    def __init__(
        self,
        store: StateStore,
        alerters: Sequence[Alerter],
        views: IncidentViews,
        clock: Callable[[str], datetime],
    ) -> None:
        self.store = store
        self.alerters = alerters  # the daemon's list: alerters added later are included
        self.views = views
        self.clock = clock  # the PBX's present (`Daemon.now`): a view's minutes count to it
        self.updates: dict[str, dict[str, Incident]] = {}  # growth not yet published, per pbx
        # decided, not yet published: (pbx, changes, incidents closed, publish the growth)
        self.outgoing: deque[tuple[str, list[IncidentChange], list[Incident], bool]] = deque()
        self.failed = 0  # publications that raised (logged; the ones after still go out)
        self._lock = asyncio.Lock()  # one publisher at a time, in queue order
        # incident rows (and snapshots) are written by one thread, in order: a commit that
        # waits for the disk (another process writing gigabytes: seconds, measured) holds no
        # event
        self._writer: ThreadPoolExecutor | None = None
        self._last_write: Future[None] | None = None
        # rows for the writer thread, by (pbx, incident id) (`_save`); taken under the lock
        self._rows: dict[tuple[str, str], tuple[str, dict[str, Any], bool]] = {}
        self._rows_lock = threading.Lock()

    def queue(
        self, pbx: str, changes: list[IncidentChange], closed: list[Incident], flush: bool
    ) -> None:
        self.outgoing.append((pbx, changes, closed, flush))

    async def publish_queued(self) -> None:
        """Publish every queued change, in order; returns once none is left."""
        async with self._lock:
            outgoing = self.outgoing
            while outgoing:
                pbx, changes, closed, flush = outgoing[0]
                try:
                    await self.publish(pbx, changes, closed, flush)
                except asyncio.CancelledError:
                    outgoing.popleft()  # `publish` finished it before re-raising
                    raise
                except Exception:  # one failed view or write must not stop the rest
                    outgoing.popleft()
                    self.failed += 1
                    log.exception("pbx %s: cannot publish incident changes", pbx)
                else:
                    outgoing.popleft()

    def _submit(self, fn: Callable[..., None], *args: Any) -> Future[None]:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="tollwatch-writes")
        self._last_write = self._writer.submit(fn, *args)
        return self._last_write

    def _save(self, pbx: str, view: dict[str, Any], is_open: bool) -> None:
        """Hand an incident's row to the writer thread. Rows wait in `_rows` (a later view of an
        incident replaces one not yet written) and the thread writes all that wait in one
        transaction: a busy second's views cost a few commits, not one each (after hours on
        the dense bench stream, 2,363 -> ~990; the event loop's latency did not move).
        Whenever rows wait, a `_write_rows` is queued on the thread that has not taken them
        yet, so a write queued after this (`write`: a snapshot) comes after these rows."""
        with self._rows_lock:
            first = not self._rows
            self._rows[pbx, str(view.get("id"))] = (pbx, dict(view), is_open)
        if first:
            self._submit(self._write_rows)

    def _write_rows(self) -> None:
        with self._rows_lock:
            rows, self._rows = list(self._rows.values()), {}
        try:
            self.store.save_incidents(rows)
        except Exception:  # the store keeps itself in memory on a disk failure: a bug here
            for pbx, view, is_open in rows:  # row by row: the others are written
                self._save_logged(pbx, view, is_open)

    async def write(self, fn: Callable[..., None], *args: Any) -> None:
        """Run a store write on the writer thread after the incident rows handed to it
        before (a snapshot after the changes it holds) and wait for it."""
        await asyncio.wrap_future(self._submit(fn, *args))

    def _save_logged(self, pbx: str, view: dict[str, Any], is_open: bool) -> None:
        try:
            self.store.save_incident(pbx, view, is_open)
        except Exception:
            self.failed += 1
            log.exception("pbx %s: cannot save incident %s", pbx, view.get("id"))

    async def written(self) -> None:
        """Wait until every incident row handed to the writer thread is written."""
        last = self._last_write
        if last is not None and not last.done():
            await asyncio.wrap_future(last)

    async def close(self) -> None:
        """Write what is left and stop the writer thread (a later publication starts it again)."""
        await self.written()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    async def publish_now(self) -> None:
        """After an event: publish what it queued, unless a publication is under way (a
        tick's views, handing the loop back between them): that one takes it in order."""
        if self.outgoing and not self._lock.locked():
            await self.publish_queued()

    async def publish(
        self, pbx: str, changes: list[IncidentChange], closed: list[Incident], flush: bool = False
    ) -> None:
        """Openings and escalations go out at once; growth ("updated") at most once per
        incident per tick (`flush`), so a busy attack costs one view and one write per second.
        Then the incidents that closed, for good."""
        seen: dict[str, tuple[str, Incident]] = {}
        pending = self.updates.setdefault(pbx, {})
        for change in changes:  # several changes of one incident in one event: say it once
            iid = change.incident.id
            if change.kind == "updated" and iid not in seen:
                pending[iid] = change.incident
                continue
            kind = change.kind
            if iid in seen and seen[iid][0] != "updated":
                kind = seen[iid][0]
            seen[iid] = (kind, change.incident)
            pending.pop(iid, None)  # the opening/escalation carries the growth too
        if flush:
            for iid, incident in pending.items():
                seen.setdefault(iid, ("updated", incident))
            pending.clear()
        mark = time.monotonic()
        stopping = False
        for kind, incident in seen.values():
            try:
                view = self.views.view(incident, self.clock(pbx))
                view["pbx"] = pbx
                self._save(pbx, view, is_open=True)
            except Exception:  # one broken view must not hold back the other incidents'
                self.failed += 1
                log.exception("pbx %s: cannot publish incident %s", pbx, incident.id)
                continue
            for alerter in self.alerters:
                try:
                    await alerter.send(kind, view)
                except Exception:
                    log.exception("alerter %s failed for %s", alerter.name, incident.id)
            if not stopping and time.monotonic() - mark > PUBLISH_SLICE:
                try:  # many big views: events go on between them
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    stopping = True  # publish the rest first: nothing taken out is dropped
                mark = time.monotonic()
        for incident in closed:
            view = self.views.view(incident, self.clock(pbx))
            self.views.forget(incident.id)
            view["pbx"] = pbx
            self._save(pbx, view, is_open=False)
        if stopping:
            raise asyncio.CancelledError

"""The daemon's status: figures taken on the event loop, written (SQLite row, status.json) from
wherever suits: the writer task hands them to a thread, so a slow disk holds no event.

`figures()` copies what the loop keeps changing (source statuses) and numbers the take;
`write()` skips a take older than one already written (a thread's write that lands late never
replaces newer figures, e.g. the final ones written at stop).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tollwatch.cdr_ingest.live import SourceStatus
from tollwatch.config.sqlite import HEALTH
from tollwatch.state import StateStore, StatusFile

if TYPE_CHECKING:
    from tollwatch.daemon import Daemon

log = logging.getLogger("tollwatch.daemon")


class StatusReporter:
    def __init__(self, status_file: StatusFile) -> None:
        self.file = status_file
        self._lock = threading.Lock()
        self._taken = self._written = 0  # figures taken / the last take written
        self._rate_mark = time.monotonic()
        self._rate_events: dict[str, int] = {}

    def figures(self, daemon: Daemon) -> tuple[list[SourceStatus], dict[str, Any]]:
        """The daemon's figures now (on the loop): source statuses (copies) and the rest."""
        now = time.monotonic()
        elapsed = max(1e-6, now - self._rate_mark)
        for src in daemon.sources:
            before = self._rate_events.get(src.name, 0)
            src.status.events_per_s = round((src.status.events - before) / elapsed, 1)
            self._rate_events[src.name] = src.status.events
        self._rate_mark = now
        pipelines = daemon.pipelines
        open_incidents = sum(p.engine.tracker.raised() for p in pipelines.values())
        extra = {
            "started_at": daemon.started.isoformat(),
            "events": daemon.events,
            "errors": daemon.errors + daemon.publisher.failed,
            "open_incidents": open_incidents,
            "calls_in_progress": {n: p.in_progress for n, p in pipelines.items()},
            "calls_seen": {n: p.calls_seen for n, p in pipelines.items()},
            "site": daemon.settings.site.name,
            "backlog": daemon.queue.measures(),
            "storage": HEALTH.problems(),
            "storage_failures": HEALTH.failures_total,
            "moved_aside": list(HEALTH.moved_aside),
            "stalled": daemon.stalled(),
        }
        self._taken += 1
        extra["_seq"] = self._taken
        return [copy.deepcopy(s.status) for s in daemon.sources], extra

    def write(self, store: StateStore, statuses: list[SourceStatus], extra: dict[str, Any]) -> None:
        with self._lock:  # a take written late never replaces a newer one
            seq = extra.pop("_seq")
            if seq < self._written:
                return
            self._written = seq
            try:
                store.write_status(statuses, extra)
            except Exception:  # status must never stop the daemon; status.json still says it
                log.exception("cannot store the status")
            self.file.write(
                {
                    "updated_at": _utcnow(),
                    "daemon": extra,
                    "sources": [_source_dict(st) for st in statuses],
                }
            )


def _utcnow() -> str:
    return datetime.now(UTC).isoformat()


def _source_dict(st: SourceStatus) -> dict[str, Any]:
    data = asdict(st)
    data["last_event_at"] = st.last_event_at.isoformat() if st.last_event_at else None
    return data

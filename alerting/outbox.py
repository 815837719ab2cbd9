"""A durable queue of alerts to post, in SQLite (WAL), written before any network call.

An alert survives a Slack outage and a daemon restart: `send()` only adds a row here, the
sender loop posts it later and marks it sent. Each row has an idempotency key (the incident and
the change, see `alert_key`): adding a key already present is ignored, so the same change is
never posted twice, also across restarts.

Tables:

- `outbox`: one row per alert. `state` is "pending" until posted ("sent"), merged into a later
  reply ("coalesced") or dropped on purpose ("skipped", e.g. an update nobody can see).
  `next_attempt_at`/`attempts`/`error` hold the retry state; `slack_ts` the posted message.
- `threads`: per incident, where its Slack thread is (channel and parent ts; `summary` when the
  parent is a flood summary shared by several incidents) and the blocks currently in force, so
  the parent can be redrawn with them.

Times are seconds since the epoch (the sender's clock), so tests can inject a fake clock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tollwatch.config.sqlite import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    sent_at REAL,
    slack_ts TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, incident_id, id);
CREATE INDEX IF NOT EXISTS outbox_kind_created ON outbox(kind, created_at);
CREATE TABLE IF NOT EXISTS health (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS threads (
    incident_id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    ts TEXT NOT NULL,
    summary INTEGER NOT NULL DEFAULT 0,
    blocks TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL
);
"""

PENDING, SENT, COALESCED, SKIPPED = "pending", "sent", "coalesced", "skipped"


@dataclass(frozen=True)
class Item:
    id: int
    incident_id: str
    kind: str
    key: str
    payload: dict[str, Any]
    created_at: float
    attempts: int
    next_attempt_at: float
    error: str | None


@dataclass(frozen=True)
class Thread:
    incident_id: str
    channel: str
    ts: str
    summary: bool
    blocks: list[dict[str, Any]]


def alert_key(kind: str, view: dict[str, Any]) -> str:
    """The idempotency key of one change: the incident id, the kind and what changed.

    - opened: once per incident;
    - escalated: once per severity reached;
    - updated: once per (severity, call count, set of rules) - more minutes alone are no news;
    - blocked/unblocked: once per set of (kind, value, expires_at) blocks.
    """
    iid = str(view["id"])
    if kind == "opened":
        return f"{iid}:opened"
    if kind == "escalated":
        return f"{iid}:escalated:{view.get('severity')}"
    if kind in ("blocked", "unblocked"):
        parts = sorted(
            f"{b.get('kind')}={b.get('value')}@{b.get('expires_at')}"
            for b in view.get("blocks") or []
        )
        return f"{iid}:{kind}:{','.join(parts)}"
    rules = "+".join(sorted(str(r) for r in view.get("rules") or []))
    return f"{iid}:{kind}:{view.get('severity')}:{view.get('calls')}:{rules}"


class Outbox(SqliteFile):
    def __init__(self, path: Path) -> None:
        super().__init__(path, SCHEMA)

    @classmethod
    def in_dir(cls, data_dir: Path) -> Outbox:
        return cls(Path(data_dir) / "slack-outbox.sqlite3")

    # ---- queue -----------------------------------------------------------------------------
    def add(self, kind: str, view: dict[str, Any], now: float, key: str | None = None) -> bool:
        """Queue one alert; False when its key was already queued (sent or not)."""
        key = key if key is not None else alert_key(kind, view)
        payload = json.dumps(view, ensure_ascii=False, default=str)
        cur = self._write(lambda db: db.execute(
            "INSERT OR IGNORE INTO outbox(incident_id, kind, key, payload, created_at, "
            "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
            (str(view["id"]), kind, key, payload, now, now),
        ))
        return cur.rowcount == 1

    def due(self, now: float, limit: int = 500) -> list[Item]:
        """Pending items whose time has come, oldest first, only the oldest of each incident
        (a thread reply waits for its parent; an incident's changes go out in order)."""
        rows = self._read(lambda db: db.execute(
            "SELECT o.* FROM outbox o JOIN ("
            "  SELECT incident_id, MIN(id) AS head FROM outbox WHERE state = ? "
            "  GROUP BY incident_id) h ON o.id = h.head "
            "WHERE o.next_attempt_at <= ? ORDER BY o.id LIMIT ?",
            (PENDING, now, limit),
        ).fetchall())
        return [_item(r) for r in rows]

    def pending(self, incident_id: str | None = None) -> list[Item]:
        """All pending items (of one incident), oldest first."""
        if incident_id is None:
            rows = self._read(lambda db: db.execute(
                "SELECT * FROM outbox WHERE state = ? ORDER BY id", (PENDING,)
            ).fetchall())
        else:
            rows = self._read(lambda db: db.execute(
                "SELECT * FROM outbox WHERE state = ? AND incident_id = ? ORDER BY id",
                (PENDING, incident_id),
            ).fetchall())
        return [_item(r) for r in rows]

    def next_due_at(self) -> float | None:
        """When the next item (an incident's oldest pending one) is due; None: nothing pending."""
        row = self._read(lambda db: db.execute(
            "SELECT MIN(o.next_attempt_at) FROM outbox o JOIN ("
            "  SELECT MIN(id) AS head FROM outbox WHERE state = ? GROUP BY incident_id"
            ") h ON o.id = h.head",
            (PENDING,),
        ).fetchone())
        return None if row is None or row[0] is None else float(row[0])

    def count_opened_since(self, since: float) -> int:
        """How many incidents were queued as opened since then (sent or not): flood detection."""
        row = self._read(lambda db: db.execute(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'opened' AND created_at > ? "
            "AND state != ?",
            (since, SKIPPED),
        ).fetchone())
        return int(row[0])

    def mark_sent(self, ids: Sequence[int], now: float, ts: str | None,
                  state: str = SENT) -> None:
        """Done with these rows: their key stays (no alert goes out twice), their payload goes
        (nothing reads a sent row's view: kept for `PRUNE_AFTER`, whole views made the file
        grow ~22 MiB an hour at a busy alert rate)."""
        def work(db: sqlite3.Connection) -> None:
            db.executemany(
                "UPDATE outbox SET state = ?, sent_at = ?, slack_ts = ?, error = NULL, "
                "payload = '{}' WHERE id = ?",
                [(state, now, ts, i) for i in ids],
            )

        self._write(work)

    def mark_failed(self, item_id: int, error: str, next_attempt_at: float) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, error = ?, next_attempt_at = ? "
                "WHERE id = ?",
                (error, next_attempt_at, item_id),
            )

        self._write(work)

    def postpone_all(self, until: float) -> None:
        """Every pending item waits until then (a rate limit or an outage is global)."""
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbox SET next_attempt_at = MAX(next_attempt_at, ?) WHERE state = ?",
                (until, PENDING),
            )

        self._write(work)

    def retry_now(self, now: float) -> None:
        """On start: whatever waited for a backoff is due again."""
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE state = ? AND next_attempt_at > ?",
                (now, PENDING, now),
            )

        self._write(work)

    def prune(self, before: float) -> int:
        """Forget sent rows older than `before` (their keys too: keep this well past the
        incidents' lifetime)."""
        def work(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "DELETE FROM outbox WHERE state != ? AND sent_at < ?", (PENDING, before)
            )
            db.execute(
                "DELETE FROM threads WHERE created_at < ? AND incident_id NOT IN "
                "(SELECT incident_id FROM outbox)",
                (before,),
            )
            return cur.rowcount

        return self._write(work)

    # ---- the sender's health (for status and metrics) -------------------------------------------
    def set_health(self, state: str, detail: str, now: float) -> None:
        """Record a change of the sender's state; `since` moves only when the state changes."""
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO health(name, state, detail, since) VALUES ('slack', ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET detail = excluded.detail, "
                "since = CASE WHEN health.state = excluded.state THEN health.since "
                "ELSE excluded.since END, state = excluded.state",
                (state, detail, now),
            )

        self._write(work)

    def health(self) -> dict[str, Any]:
        def work(db: sqlite3.Connection) -> tuple[Any, dict[str, int], int]:
            row = db.execute(
                "SELECT state, detail, since FROM health WHERE name = 'slack'").fetchone()
            counts = dict(db.execute(
                "SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
            failed = db.execute("SELECT COALESCE(SUM(attempts), 0) FROM outbox").fetchone()[0]
            return row, counts, int(failed)

        row, counts, failed = self._read(work)
        state, detail, since = row if row else ("ok", "", None)
        return {"state": state, "detail": detail, "since": since,
                "pending": int(counts.get(PENDING, 0)), "sent": int(counts.get(SENT, 0)),
                "coalesced": int(counts.get(COALESCED, 0)),
                "failed_attempts": failed}

    # ---- threads ---------------------------------------------------------------------------
    def thread(self, incident_id: str) -> Thread | None:
        row = self._read(lambda db: db.execute(
            "SELECT incident_id, channel, ts, summary, blocks FROM threads "
            "WHERE incident_id = ?",
            (incident_id,),
        ).fetchone())
        if row is None:
            return None
        return Thread(row[0], row[1], row[2], bool(row[3]), json.loads(row[4]))

    def set_thread(self, incident_id: str, channel: str, ts: str, now: float,
                   summary: bool = False) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO threads(incident_id, channel, ts, summary, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(incident_id) DO UPDATE SET "
                "channel = excluded.channel, ts = excluded.ts, summary = excluded.summary",
                (incident_id, channel, ts, int(summary), now),
            )

        self._write(work)

    def set_blocks(self, incident_id: str, blocks: list[dict[str, Any]]) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE threads SET blocks = ? WHERE incident_id = ?",
                (json.dumps(blocks, ensure_ascii=False), incident_id),
            )

        self._write(work)

def read_health(data_dir: Path) -> dict[str, Any] | None:
    """For `tollwatch status` and metrics: the sender's state ("ok", "retrying", "stopped"),
    what is wrong in words, since when, and how many alerts wait. None: no outbox here."""
    path = Path(data_dir) / "slack-outbox.sqlite3"
    if not path.is_file():
        return None
    box = Outbox(path)
    try:
        return box.health()
    finally:
        box.close()


def _item(row: tuple[Any, ...]) -> Item:
    (iid, incident_id, kind, key, payload, created_at, _state, attempts, next_at,
     _sent_at, _ts, error) = row
    return Item(
        id=int(iid), incident_id=incident_id, kind=kind, key=key, payload=json.loads(payload),
        created_at=float(created_at), attempts=int(attempts), next_attempt_at=float(next_at),
        error=error,
    )

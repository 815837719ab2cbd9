"""The daemon's state in SQLite (WAL): engine snapshots, incidents, file positions, status.

One file in the configured data directory. Writes are small and frequent; WAL keeps readers
(`tollwatch status`) from blocking the daemon.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tollwatch.cdr_ingest.live.events import SourceStatus
from tollwatch.config.sqlite import SqliteFile

log = logging.getLogger("tollwatch.state")

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    pbx TEXT PRIMARY KEY, taken_at TEXT NOT NULL, state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY, pbx TEXT NOT NULL, source TEXT NOT NULL, severity TEXT NOT NULL,
    score INTEGER NOT NULL, first_call_at TEXT NOT NULL, detected_at TEXT,
    updated_at TEXT NOT NULL, open INTEGER NOT NULL, data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_first ON incidents(first_call_at);
CREATE TABLE IF NOT EXISTS positions (
    path TEXT PRIMARY KEY, inode INTEGER NOT NULL, offset INTEGER NOT NULL, line INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS position_prints (
    path TEXT PRIMARY KEY, fp TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS db_positions (
    source TEXT PRIMARY KEY, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS baselines (
    pbx TEXT PRIMARY KEY, updated_at TEXT NOT NULL, data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS status (
    name TEXT PRIMARY KEY, updated_at TEXT NOT NULL, data TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _save_incident(db: sqlite3.Connection, pbx: str, view: dict[str, Any], is_open: bool) -> None:
    if not view.get("blocks"):  # only the stored blocks are read, not the whole view
        row = db.execute(
            "SELECT json_quote(json_extract(data, '$.blocks')) FROM incidents WHERE id=?",
            (view["id"],),
        ).fetchone()
        blocks = json.loads(row[0]) if row else None
        if blocks:
            view = {**view, "blocks": blocks}
    db.execute(
        "INSERT INTO incidents(id, pbx, source, severity, score, first_call_at, "
        "detected_at, updated_at, open, data) VALUES (?,?,?,?,?,?,?,?,?,?) "
        "ON CONFLICT(id) DO UPDATE SET severity=excluded.severity, score=excluded.score,"
        " detected_at=excluded.detected_at, updated_at=excluded.updated_at,"
        " open=excluded.open, data=excluded.data",
        (
            view["id"], pbx, view["source"], view["severity"], view["score"],
            view["first_call_at"], view["detected_at"], _now(), int(is_open),
            json.dumps(view, ensure_ascii=False),
        ),
    )


class StateStore(SqliteFile):
    def __init__(self, path: Path) -> None:
        super().__init__(path, SCHEMA)

    @classmethod
    def in_dir(cls, data_dir: Path) -> StateStore:
        return cls(Path(data_dir) / "tollwatch.sqlite3")

    # ---- engine snapshots ----------------------------------------------------------------
    def save_snapshot(self, pbx: str, state: bytes) -> None:
        self._write(lambda db: db.execute(
            "INSERT INTO snapshots(pbx, taken_at, state) VALUES (?, ?, ?) "
            "ON CONFLICT(pbx) DO UPDATE SET taken_at=excluded.taken_at, state=excluded.state",
            (pbx, _now(), state),
        ))

    def load_snapshot(self, pbx: str) -> bytes | None:
        row = self._read(
            lambda db: db.execute("SELECT state FROM snapshots WHERE pbx=?", (pbx,)).fetchone())
        return bytes(row[0]) if row else None

    # ---- learned baselines (rules.baseline, as rules.baseline_io JSON) ---------------------
    def save_baseline(self, pbx: str, data: str) -> None:
        self._write(lambda db: db.execute(
            "INSERT INTO baselines(pbx, updated_at, data) VALUES (?, ?, ?) "
            "ON CONFLICT(pbx) DO UPDATE SET updated_at=excluded.updated_at, data=excluded.data",
            (pbx, _now(), data),
        ))

    def baselines(self) -> dict[str, str]:
        rows = self._read(lambda db: db.execute("SELECT pbx, data FROM baselines").fetchall())
        return {str(pbx): str(data) for pbx, data in rows}

    # ---- incidents -----------------------------------------------------------------------
    def save_incident(self, pbx: str, view: dict[str, Any], is_open: bool) -> None:
        """Insert or update an incident's view; blocks recorded on it earlier are kept."""
        self._write(lambda db: _save_incident(db, pbx, view, is_open))

    def save_incidents(self, rows: list[tuple[str, dict[str, Any], bool]]) -> None:
        """`save_incident` of each (pbx, view, open), in one transaction (the daemon's writer
        thread hands over everything published since its last write at once)."""

        def work(db: sqlite3.Connection) -> None:
            for pbx, view, is_open in rows:
                _save_incident(db, pbx, view, is_open)

        self._write(work)

    def incidents(
        self, since: str | None = None, until: str | None = None, open_only: bool = False
    ) -> list[dict[str, Any]]:
        sql = "SELECT data FROM incidents WHERE 1=1"
        args: list[Any] = []
        if since:
            sql += " AND first_call_at >= ?"
            args.append(since)
        if until:
            sql += " AND first_call_at < ?"
            args.append(until)
        if open_only:
            sql += " AND open=1"
        rows = self._read(lambda db: db.execute(sql + " ORDER BY first_call_at", args).fetchall())
        return [json.loads(r[0]) for r in rows]

    # ---- Master.csv follower positions (cdr_ingest.live.follow.PositionStore) -------------
    def load_position(self, path: str) -> tuple[int, int, int, str] | None:
        row = self._read(lambda db: db.execute(
            "SELECT p.inode, p.offset, p.line, COALESCE(f.fp, '') FROM positions p "
            "LEFT JOIN position_prints f ON f.path = p.path WHERE p.path=?", (path,)
        ).fetchone())
        return (int(row[0]), int(row[1]), int(row[2]), str(row[3])) if row else None

    def save_position(self, path: str, inode: int, offset: int, line: int, fp: str = "") -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO positions(path, inode, offset, line) VALUES (?,?,?,?) "
                "ON CONFLICT(path) DO UPDATE SET inode=excluded.inode, offset=excluded.offset,"
                " line=excluded.line",
                (path, inode, offset, line),
            )
            db.execute("INSERT INTO position_prints(path, fp) VALUES (?,?) "
                       "ON CONFLICT(path) DO UPDATE SET fp=excluded.fp", (path, fp))

        self._write(work)

    # ---- CDR table follower positions (cdr_ingest.live.db_follow.DbPositionStore) ----------
    def load_db_position(self, source: str) -> str | None:
        row = self._read(lambda db: db.execute(
            "SELECT data FROM db_positions WHERE source=?", (source,)
        ).fetchone())
        return str(row[0]) if row else None

    def save_db_position(self, source: str, data: str) -> None:
        self._write(lambda db: db.execute(
            "INSERT INTO db_positions(source, data) VALUES (?,?) "
            "ON CONFLICT(source) DO UPDATE SET data=excluded.data",
            (source, data),
        ))

    # ---- status for `tollwatch status` -----------------------------------------------------
    def write_status(self, statuses: list[SourceStatus], extra: dict[str, Any]) -> None:
        def work(db: sqlite3.Connection) -> None:
            for st in statuses:
                data = asdict(st)
                data["last_event_at"] = st.last_event_at.isoformat() if st.last_event_at else None
                db.execute(
                    "INSERT INTO status(name, updated_at, data) VALUES (?,?,?) ON CONFLICT(name)"
                    " DO UPDATE SET updated_at=excluded.updated_at, data=excluded.data",
                    (f"source:{st.name}", _now(), json.dumps(data)),
                )
            db.execute(
                "INSERT INTO status(name, updated_at, data) VALUES ('daemon',?,?) ON CONFLICT"
                "(name) DO UPDATE SET updated_at=excluded.updated_at, data=excluded.data",
                (_now(), json.dumps(extra)),
            )

        self._write(work)

    def mark_stopped(self) -> None:
        """Say in the daemon's status row that it stopped cleanly (`status` tells a stopped
        daemon from one that stopped reporting); the next start's report replaces it."""
        def work(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT data FROM status WHERE name='daemon'").fetchone()
            data = json.loads(row[0]) if row else {}
            data["stopped_at"] = _now()
            db.execute(
                "INSERT INTO status(name, updated_at, data) VALUES ('daemon',?,?) ON CONFLICT"
                "(name) DO UPDATE SET updated_at=excluded.updated_at, data=excluded.data",
                (_now(), json.dumps(data)),
            )

        self._write(work)

    def read_status(self) -> dict[str, tuple[str, dict[str, Any]]]:
        rows = self._read(
            lambda db: db.execute("SELECT name, updated_at, data FROM status").fetchall())
        return {name: (updated, json.loads(data)) for name, updated, data in rows}


STATUS_FILE = "status.json"
_STATUS_SIZE = 256 << 10


class StatusFile:
    """`status.json` in the data directory, rewritten in place: its blocks are allocated once,
    so the daemon can still say what is wrong when the disk is full (an in-place overwrite
    needs no new space). The JSON is padded with spaces to the file's size."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / STATUS_FILE
        self._failed = False

    def write(self, doc: dict[str, Any]) -> bool:
        data = json.dumps(doc, ensure_ascii=False, default=str).encode()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                want = max(_STATUS_SIZE, len(data) + 1)
                if size < want:
                    os.ftruncate(fd, want)
                    os.pwrite(fd, b" " * want, 0)  # allocate now, while there is room
                    size = want
                os.pwrite(fd, data + b" " * (size - len(data)), 0)
            finally:
                os.close(fd)
        except OSError as exc:
            if not self._failed:
                log.error("status: cannot write %s (%s)", self.path, exc.strerror or exc)
                self._failed = True
            return False
        self._failed = False
        return True


def read_status_file(data_dir: Path) -> dict[str, Any] | None:
    """The daemon's last status.json, or None (missing, or unreadable after a few tries)."""
    path = Path(data_dir) / STATUS_FILE
    for _ in range(5):
        try:
            text = path.read_bytes().decode("utf-8", "replace").strip()
        except OSError:
            return None
        try:
            doc = json.loads(text)
        except ValueError:  # caught mid-write: read again
            time.sleep(0.02)
            continue
        return doc if isinstance(doc, dict) else None
    return None

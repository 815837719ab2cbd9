"""Every block and unblock, in SQLite (`<data_dir>/blocks.sqlite3`, table `blocks`).

One row per block on one PBX. A row is active until `lifted_at` is set (by the expiry loop,
`tollwatch unblock`, or a refusal to re-apply). Times are UTC epoch seconds. The daemon and the
CLI share the file (WAL, short transactions). Reads and writes go through the storage layer
(`SqliteFile._read`/`_write`): when the file cannot be written (full disk, read-only, I/O
error) blocks are kept in memory, said once in the log and `status`, and written back when it
can be again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tollwatch.config.sqlite import SqliteFile

FILENAME = "blocks.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,            -- "prefix" (E.164 digits) or "source" (extension)
    value TEXT NOT NULL,
    pbx TEXT NOT NULL,
    reason TEXT NOT NULL,
    incident_id TEXT,
    origin TEXT NOT NULL,          -- "auto" or "cli:<user>"
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    lifted_at INTEGER,
    lifted_by TEXT,                -- "expiry", "cli:<user>"
    dry_run INTEGER NOT NULL DEFAULT 0,
    applied_at INTEGER             -- when AstDB was seen to hold it (NULL: not applied yet)
);
CREATE INDEX IF NOT EXISTS blocks_active ON blocks (lifted_at, expires_at);
"""

_COLUMNS = (
    "id", "kind", "value", "pbx", "reason", "incident_id", "origin", "created_at",
    "expires_at", "lifted_at", "lifted_by", "dry_run", "applied_at",
)  # fmt: skip


@dataclass(frozen=True)
class BlockRecord:
    id: int
    kind: str
    value: str
    pbx: str
    reason: str
    incident_id: str | None
    origin: str
    created_at: int
    expires_at: int
    lifted_at: int | None
    lifted_by: str | None
    dry_run: bool
    applied_at: int | None = None  # when AstDB was seen to hold the block; None: not (yet)

    @property
    def active(self) -> bool:
        return self.lifted_at is None

    @property
    def applied(self) -> bool:
        """A real block that Asterisk holds: only then are calls refused."""
        return not self.dry_run and self.applied_at is not None


class BlockStore(SqliteFile):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)
        self._write(_add_applied_column)

    @classmethod
    def in_dir(cls, data_dir: Path) -> BlockStore:
        return cls(Path(data_dir) / FILENAME)

    def _rows(self, where: str, args: tuple[object, ...] = ()) -> list[BlockRecord]:
        rows = self._read(lambda db: db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM blocks {where}", args).fetchall())
        return [_record(row) for row in rows]

    def add(
        self, kind: str, value: str, pbx: str, reason: str, incident_id: str | None,
        origin: str, created_at: int, expires_at: int, dry_run: bool,
        applied_at: int | None = None,
    ) -> BlockRecord:  # fmt: skip
        rowid = self._write(lambda db: db.execute(
            "INSERT INTO blocks (kind, value, pbx, reason, incident_id, origin, created_at,"
            " expires_at, dry_run, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, value, pbx, reason, incident_id, origin, created_at, expires_at,
             int(dry_run), applied_at),
        ).lastrowid)  # fmt: skip
        return self.get(int(rowid or 0))

    def counts(self, pbx: str | None = None) -> tuple[int, int, int]:
        """Active blocks: (held by AstDB, recorded but not held, dry run)."""
        real = self.active(pbx, dry_run=False)
        held = sum(1 for r in real if r.applied)
        return held, len(real) - held, len(self.active(pbx, dry_run=True))

    def mark_applied(self, block_ids: list[int], at: int) -> None:
        """AstDB was seen to hold these blocks (put, or found there by a check)."""
        if block_ids:
            self._write(lambda db: db.executemany(
                "UPDATE blocks SET applied_at = ? WHERE id = ? AND applied_at IS NULL",
                [(at, i) for i in block_ids]))  # fmt: skip

    def get(self, block_id: int) -> BlockRecord:
        rows = self._rows("WHERE id = ?", (block_id,))
        if not rows:
            raise KeyError(block_id)
        return rows[0]

    def active(
        self, pbx: str | None = None, kind: str | None = None, value: str | None = None,
        dry_run: bool | None = None,
    ) -> list[BlockRecord]:  # fmt: skip
        where, args = ["lifted_at IS NULL"], []
        for column, wanted in (("pbx", pbx), ("kind", kind), ("value", value)):
            if wanted is not None:
                where.append(f"{column} = ?")
                args.append(wanted)
        if dry_run is not None:
            where.append("dry_run = ?")
            args.append(str(int(dry_run)))
        return self._rows("WHERE " + " AND ".join(where) + " ORDER BY id", tuple(args))

    def for_incident(self, incident: str, kind: str, value: str, pbx: str) -> list[BlockRecord]:
        """Every block (active or lifted) of this target made for this incident."""
        return self._rows(
            "WHERE incident_id = ? AND kind = ? AND value = ? AND pbx = ? ORDER BY id",
            (incident, kind, value, pbx),
        )

    def of_incident(self, incident: str) -> list[BlockRecord]:
        """Every block (active or lifted, dry run or not) made for this incident."""
        return self._rows("WHERE incident_id = ? ORDER BY id", (incident,))

    def due(self, now: int) -> list[BlockRecord]:
        """Active blocks whose expiry has come."""
        return self._rows("WHERE lifted_at IS NULL AND expires_at <= ? ORDER BY id", (now,))

    def lift(self, block_id: int, at: int, by: str) -> BlockRecord:
        self._write(lambda db: db.execute(
            "UPDATE blocks SET lifted_at = ?, lifted_by = ? WHERE id = ? AND lifted_at IS NULL",
            (at, by, block_id),
        ))
        return self.get(block_id)

    def auto_since(self, since: int) -> int:
        """Automatic blocks created since `since` (dry-run ones included): the rate limit."""
        row = self._read(lambda db: db.execute(
            "SELECT COUNT(*) FROM blocks WHERE origin = 'auto' AND created_at > ?", (since,)
        ).fetchone())
        return int(row[0])

    def history(self, limit: int = 100) -> list[BlockRecord]:
        return self._rows("ORDER BY id DESC LIMIT ?", (limit,))


def _add_applied_column(db: Any) -> None:
    """Files made before applied_at existed get the column; their blocks count as not applied
    until the next AstDB check (at connect) finds them there."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(blocks)")}
    if "applied_at" not in columns:
        db.execute("ALTER TABLE blocks ADD COLUMN applied_at INTEGER")


def _record(row: Any) -> BlockRecord:
    (ident, kind, value, pbx, reason, incident, origin, created, expires, lifted, by, dry,
     applied) = row
    return BlockRecord(
        id=int(ident),
        kind=str(kind),
        value=str(value),
        pbx=str(pbx),
        reason=str(reason),
        incident_id=None if incident is None else str(incident),
        origin=str(origin),
        created_at=int(created),
        expires_at=int(expires),
        lifted_at=None if lifted is None else int(lifted),
        lifted_by=None if by is None else str(by),
        dry_run=bool(dry),
        applied_at=None if applied is None else int(applied),
    )

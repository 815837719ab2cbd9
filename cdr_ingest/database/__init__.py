"""CDRs in a database table: FreePBX/Issabel `asteriskcdrdb.cdr` (MariaDB/MySQL), cdr_pgsql's
table, and the ODBC layouts with start/answer/end, read through the same normalization as files.

    db = CdrDatabase.open("mysql://tollwatch@pbx:3306/asteriskcdrdb", "cdr", password)
    rows = db.scan(options, since, until)   # a LazyFrame in cdr_ingest.SCHEMA, read in chunks

Read-only: only SELECT statements are ever sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from .._types import CdrOptions
from ._connect import Connection, DbError, DbUrl, parse_url
from ._read import CHUNK_ROWS, Counter, normalized, read_chunks, scan_table, table_options
from ._table import Table, open_table

__all__ = ["CdrDatabase", "Connection", "DbError", "DbUrl", "Table", "parse_url"]


@dataclass
class CdrDatabase:
    """An opened CDR table: its recognized columns, and how its times are read."""

    table: Table
    db_timezone: str | None = None
    counter: Counter = field(default_factory=Counter)

    @classmethod
    def open(
        cls,
        url: str,
        table: str = "cdr",
        password: str | None = None,
        columns: dict[str, str] | None = None,
        db_timezone: str | None = None,
    ) -> CdrDatabase:
        """Connect and read the table's columns; DbError names the problem in one line."""
        try:
            parsed = parse_url(url)
        except ValueError as exc:
            raise DbError(f"database: {exc}") from None
        conn = Connection(parsed, password)
        conn.check()
        return cls(open_table(conn, table, columns), db_timezone)

    @property
    def shown(self) -> str:
        """`db.table` for messages and row origins."""
        return self.table.shown

    def options(self, options: CdrOptions) -> CdrOptions:
        return table_options(self.table, options, self.db_timezone)

    def scan(
        self,
        options: CdrOptions,
        since: datetime | None = None,
        until: datetime | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ) -> pl.LazyFrame:
        """Rows whose start is in [since, until) (some more near the edges: filter on `start`),
        read window by window on the start column; `rows_read` counts them as they come."""
        return scan_table(self.table, self.options(options), since, until, chunk_rows, self.counter)

    def chunks(
        self,
        options: CdrOptions,
        since: datetime | None = None,
        until: datetime | None = None,
        where: pl.Expr | None = None,
        chunk_rows: int = CHUNK_ROWS,
    ) -> Iterator[tuple[int, pl.LazyFrame]]:
        """`scan`'s rows as `scan_chunks` gives a file's: (rows in it, its normalized
        LazyFrame, only the rows `where` keeps), one query result at a time: the next chunk
        is queried when this one is taken, so nothing piles up however slow the taker."""
        opts = self.options(options)
        zone = "UTC" if opts.usegmtime else opts.timezone
        for df in read_chunks(self.table, zone, since, until, chunk_rows, self.counter):
            yield df.height, normalized(self.table, df.lazy(), opts, where)

    @property
    def rows_read(self) -> int:
        return self.counter.rows

    def describe(self, options: CdrOptions) -> str:
        """One line: the table, its recognized columns, row keys and clock."""
        t = self.table
        mapped = ", ".join(
            f"{name}={col}" if name != col else name for name, col in t.mapping.items()
        )
        opts = self.options(options)
        clock = (
            "UTC (the column stores instants)"
            if t.aware
            else ("UTC" if opts.usegmtime else f"local time ({opts.timezone})")
        )
        return (
            f"{t.conn.url.shown} table {t.name}: {len(t.types)} columns, read {mapped}; "
            f"rows told apart by {'+'.join(t.key_names) if len(t.keys) < 4 else 'all columns'}"
            f"; times in {clock}"
        )

"""A CDR table: its columns (read from information_schema), their CDR meaning, and its SQL.

Column names are recognized by the dialect registry's `canonical_columns` (the names header CSVs
use: FreePBX `calldate` is the start, ODBC layouts have `start`/`answer`/`end`, ...); `columns`
in the settings overrides or adds to that. Rows are told apart by an auto-increment id when the
table has one, else by uniqueid + sequence (FreePBX and cdr_pgsql tables have no key).

Times: a column that stores instants (PostgreSQL `timestamp with time zone`, MySQL `TIMESTAMP`)
is read as UTC; a plain DATETIME / `timestamp` column holds the PBX's local wall clock (what
FreePBX and cdr_adaptive_odbc write) and is read in `CdrOptions.timezone`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..dialects import canonical_columns
from ._connect import Connection, DbError, Dialect, quote_ident, quote_text

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}\Z")
_TEXT = {"char", "varchar", "text", "tinytext", "mediumtext", "longtext", "character varying",
         "character", "bpchar", "name", "enum", "set"}
_INTEGER = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint"}
_TIME = {"datetime", "timestamp", "timestamp without time zone", "timestamp with time zone",
         "date"}
_AWARE = {"timestamp with time zone"}  # PostgreSQL; MySQL TIMESTAMP is handled apart
IDS = ("id", "acctid", "cdr_id", "cdrid")
TIMES = ("start", "answer", "end")
# The canonical fields read from a table (the CDR fields normalize() looks at).
FIELDS = ("accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
          "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "uniqueid",
          "userfield", "linkedid")


@dataclass(frozen=True)
class Table:
    """A CDR table as found in the database."""

    conn: Connection
    name: str  # as in the settings: cdr or schema.cdr
    types: dict[str, str]  # column -> data type (lower case), in table order
    mapping: dict[str, str]  # canonical field -> column
    keys: tuple[str, ...]  # columns that tell rows apart
    key_names: tuple[str, ...] = field(default=())  # how keys are shown in origins
    start_index: str | None = None  # MySQL: the index on the start column (FORCE INDEX)

    @property
    def dialect(self) -> Dialect:
        return self.conn.url.dialect

    @property
    def shown(self) -> str:
        return f"{self.conn.url.database}.{self.name}"

    @property
    def aware(self) -> bool:
        """The start column stores instants: every time is read as UTC."""
        return self._is_aware(self.mapping["start"])

    @property
    def columns(self) -> tuple[str, ...]:
        """The canonical fields read, in the order of the `_f` columns."""
        return tuple(f for f in FIELDS if f in self.mapping)

    def _is_aware(self, column: str) -> bool:
        kind = self.types[column]
        return kind in _AWARE or (self.dialect == "mysql" and kind == "timestamp")

    def q(self, column: str) -> str:
        return quote_ident(self.dialect, column)

    @property
    def sql_name(self) -> str:
        return ".".join(self.q(part) for part in self.name.split("."))

    @property
    def ranged_name(self) -> str:
        """The table for a range query on the start column. MariaDB picks a full table scan for
        a range over more than a few % of the rows: reading a period window by window would
        then scan the whole table once per window, so the index is forced."""
        if self.start_index is None:
            return self.sql_name
        return f"{self.sql_name} FORCE INDEX ({self.q(self.start_index)})"

    def text(self, expr: str, kind: str) -> str:
        """SQL giving expr (of data type kind) as text; instants as UTC wall clock."""
        if self.dialect == "postgresql":
            if kind in _AWARE:
                return f"(({expr}) AT TIME ZONE 'UTC')::text"
            return f"({expr})::text"
        if kind == "timestamp":  # MySQL TIMESTAMP: UNIX_TIMESTAMP() undoes the session zone
            return f"CAST(DATE_ADD('1970-01-01', INTERVAL UNIX_TIMESTAMP({expr}) SECOND) AS CHAR)"
        return f"CAST({expr} AS CHAR)"

    def select_list(self) -> list[str]:
        """`_f0`.. (the canonical fields) and `_k0`.. (the keys), times as text."""
        out = []
        for i, name in enumerate(self.columns):
            out.append(f"{self._value(self.mapping[name])} AS _f{i}")
        for i, column in enumerate(self.keys):
            out.append(f"{self._value(column)} AS _k{i}")
        return out

    def _value(self, column: str) -> str:
        kind = self.types[column]
        if kind in _TEXT or kind in _INTEGER:
            return self.q(column)  # strings and integers come as they are
        return self.text(self.q(column), kind)

    def end_expr(self) -> tuple[str, str]:
        """SQL of a row's end time (the order rows are written in) and its data type."""
        if "end" in self.mapping:
            column = self.mapping["end"]
            return self.q(column), self.types[column]
        start = self.mapping["start"]
        kind = self.types[start]
        if "duration" not in self.mapping:
            return self.q(start), kind
        seconds = f"COALESCE({self.q(self.mapping['duration'])}, 0)"
        if self.dialect == "mysql":
            return f"DATE_ADD({self.q(start)}, INTERVAL {seconds} SECOND)", kind
        return f"({self.q(start)} + {seconds} * INTERVAL '1 second')", kind

    def literal(self, when: datetime, kind: str) -> str:
        """A time literal comparable with a column of data type kind (when: naive in the
        table's zone, or aware for columns holding instants)."""
        aware = kind in _AWARE or (self.dialect == "mysql" and kind == "timestamp")
        if aware:
            utc = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
            if self.dialect == "mysql":
                return f"FROM_UNIXTIME({utc.timestamp():.6f})"
            return f"'{utc.replace(tzinfo=None).isoformat(sep=' ')}+00'"
        naive = when.replace(tzinfo=None)
        return f"'{naive.isoformat(sep=' ')}'"


def open_table(conn: Connection, name: str, overrides: dict[str, str] | None = None) -> Table:
    """Read the table's columns and recognize the CDR fields; DbError when it cannot be used."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(_NAME.match(p) for p in parts):
        raise DbError(f"{conn.url.shown}: {name!r} is not a table name")
    d = conn.url.dialect
    schema = quote_text(d, parts[0]) if len(parts) == 2 else (
        "DATABASE()" if d == "mysql" else "current_schema()")
    sql = (
        "SELECT column_name AS name, data_type AS kind FROM information_schema.columns "
        f"WHERE table_schema = {schema} AND table_name = {quote_text(d, parts[-1])} "
        "ORDER BY ordinal_position"
    )
    rows = conn.read(sql)
    shown = f"{conn.url.database}.{name}"
    if rows.height == 0:
        raise DbError(f"{conn.url.shown}: no table {name!r} (or no SELECT privilege on it)")
    names = [str(v) for v in rows.to_series(0)]
    types = {n: str(k).lower() for n, k in zip(names, rows.to_series(1), strict=True)}
    mapping = {c: n for n, c in zip(names, canonical_columns(names), strict=True) if c in FIELDS}
    lower = {n.lower(): n for n in names}
    for canonical, column in (overrides or {}).items():
        if column.lower() not in lower:
            raise DbError(f"{shown}: db_columns.{canonical} = {column!r}: no such column "
                          f"(the table has {', '.join(names)})")
        mapping[canonical] = lower[column.lower()]
    if "start" not in mapping:
        raise DbError(f"{shown}: no start/calldate column (set [cdr] db_columns.start)")
    if "end" not in mapping and "duration" not in mapping:
        raise DbError(f"{shown}: neither an end nor a duration column")
    for t in TIMES:
        if t in mapping and types[mapping[t]] not in _TIME | _TEXT:
            raise DbError(f"{shown}: column {mapping[t]} ({types[mapping[t]]}) is not a time")
    keys, key_names = _keys(names, lower, mapping, overrides or {})
    index = _start_index(conn, schema, parts[-1], mapping["start"]) if d == "mysql" else None
    return Table(conn, name, types, mapping, keys, key_names, index)


def _start_index(conn: Connection, schema: str, table: str, column: str) -> str | None:
    """The name of an index whose first column is the start column (MySQL), if any."""
    d = conn.url.dialect
    sql = (
        "SELECT index_name AS name FROM information_schema.statistics "
        f"WHERE table_schema = {schema} AND table_name = {quote_text(d, table)} "
        f"AND column_name = {quote_text(d, column)} AND seq_in_index = 1"
    )
    names = [str(v) for v in conn.read(sql).to_series(0)]
    return names[0] if names else None


def _keys(
    names: list[str], lower: dict[str, str], mapping: dict[str, str], overrides: dict[str, str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if "id" in overrides:
        return (lower[overrides["id"].lower()],), ("id",)
    for candidate in IDS:
        if candidate in lower:
            return (lower[candidate],), (lower[candidate],)
    found = []
    if "uniqueid" in mapping:
        found.append(mapping["uniqueid"])
    seq = lower.get(overrides.get("sequence", "sequence").lower())
    if seq is not None:
        found.append(seq)
    if found:
        return tuple(found), tuple(found)
    # no key at all: the row's whole content tells it apart
    return tuple(names), tuple(names)

"""Read a period of a CDR table in chunks into the normalized schema.

The period is read in chunks of at most `chunk_rows` rows in the order of the start column
(`calldate >= a ... ORDER BY calldate LIMIT n`, on its index), each chunk starting where the last
one ended, so memory stays bounded whatever the traffic of a day or an hour. Each chunk goes
through `_typed.typed` and `_outbound.classify`, the very code that reads files, so a row from
the table and the same row from Master.csv give the same call: fields, times, problems,
outbound classification.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import polars as pl
from polars.io.plugins import register_io_source

from .._detect import FileFormat
from .._scan import normalize, pushed_down
from .._types import CdrOptions
from ._table import TIMES, Table

CHUNK_ROWS = 200_000
_MARGIN = timedelta(hours=2)  # naive local bounds: wider than any DST shift
_ZERO = "0000-00-00"  # MySQL's zero date: an empty time, as in Master.csv


def table_options(table: Table, options: CdrOptions, db_timezone: str | None) -> CdrOptions:
    """The options rows of this table are read with: times in UTC when the table stores
    instants, else in db_timezone (default: the options' zone, or UTC with usegmtime)."""
    if table.aware:
        return replace(options, timezone="UTC", usegmtime=True)
    if db_timezone is not None:
        return replace(options, timezone=db_timezone, usegmtime=db_timezone == "UTC")
    return options


def raw_frame(table: Table, df: pl.DataFrame) -> pl.DataFrame:
    """A query result (columns `_f*`, `_k*`, ...) as the columns normalize() reads."""
    columns = table.columns
    out = []
    for i, name in enumerate(columns):
        col = pl.col(f"_f{i}").cast(pl.String).fill_null("")
        if name in TIMES:
            col = pl.when(col.str.starts_with(_ZERO)).then(pl.lit("")).otherwise(col)
        out.append(col.alias(f"_f{i}"))
    keys = [pl.col(f"_k{i}").cast(pl.String).fill_null("") for i in range(len(table.keys))]
    extra = [c for c in df.columns if not c.startswith(("_f", "_k"))]
    return df.select(
        *out,
        *[k.alias(f"_k{i}") for i, k in enumerate(keys)],
        pl.lit(True).alias("_valid"),
        pl.lit(False).alias("_dirty"),
        pl.lit("").alias("line"),
        pl.lit(0, pl.Int64).alias("_ln"),
        *extra,
    )


def origin_expr(table: Table) -> pl.Expr:
    """How a row is named in problems and as call_id without uniqueid: db.table:key=value."""
    parts: list[pl.Expr] = [pl.lit(f"{table.shown}:")]
    for i, name in enumerate(table.key_names[:3]):
        parts += [pl.lit(("," if i else "") + f"{name}="), pl.col(f"_k{i}")]
    return pl.concat_str(parts)


def normalized(
    table: Table, lf: pl.LazyFrame, options: CdrOptions, where: pl.Expr | None = None
) -> pl.LazyFrame:
    """The rows in SCHEMA, through the typing and outbound classification files go through;
    a row is named by its key (there is no line number). `where`: see `normalize`."""
    fmt = FileFormat(table.columns, "database", True, False, table.shown)
    return normalize(lf, fmt, options, origin_expr(table), where)


@dataclass
class Counter:
    rows: int = 0


def _local_bound(when: datetime | None, zone: str, table: Table, margin: timedelta) -> datetime:
    if when is None:
        return datetime(1900, 1, 1) if margin < timedelta(0) else datetime(9999, 1, 1)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if table.aware:
        return when.astimezone(UTC) + margin
    return when.astimezone(zoneinfo.ZoneInfo(zone)).replace(tzinfo=None) + margin


def read_chunks(
    table: Table,
    zone: str,
    since: datetime | None,
    until: datetime | None,
    chunk_rows: int = CHUNK_ROWS,
    counter: Counter | None = None,
) -> Iterator[pl.DataFrame]:
    """Raw frames of all rows whose start is in [since, until) (wider by _MARGIN for naive
    local times: the exact cut is the caller's filter on the normalized UTC start), at most
    about chunk_rows each: `ORDER BY start LIMIT n` on the index, the next chunk starting at the
    last start seen (rows of that last start are left for it, so none is cut in two)."""
    start = table.mapping["start"]
    kind = table.types[start]
    col = table.q(start)
    lo = _local_bound(since, zone, table, -_MARGIN)
    hi = _local_bound(until, zone, table, _MARGIN)
    if since is None:
        lo = datetime(1000, 1, 2, tzinfo=UTC if table.aware else None)
    select = f"SELECT {', '.join(table.select_list())}, {table.text(col, kind)} AS _s"
    source = f"FROM {table.ranged_name}"
    lower = f"{col} >= {table.literal(lo, kind)}"
    upper = f"{col} < {table.literal(hi, kind)}"
    while True:
        df = table.conn.read(
            f"{select} {source} WHERE {lower} AND {upper} ORDER BY {col} LIMIT {chunk_rows}"
        )
        if df.height < chunk_rows:
            yield from _emit(table, df, counter)
            return
        last = str(df["_s"][-1])
        at = table.literal(datetime.fromisoformat(last), kind)
        body = df.filter(pl.col("_s") != last)
        if body.height:
            yield from _emit(table, body, counter)
            lower = f"{col} >= {at}"
        else:  # a whole chunk of one start time: take all rows of it at once
            yield from _emit(
                table, table.conn.read(f"{select} {source} WHERE {col} = {at}"), counter
            )
            lower = f"{col} > {at}"


def _emit(table: Table, df: pl.DataFrame, counter: Counter | None) -> Iterator[pl.DataFrame]:
    if counter is not None:
        counter.rows += df.height
    if df.height:
        yield raw_frame(table, df.drop("_s"))


def raw_schema(table: Table) -> dict[str, pl.DataType]:
    return {
        **{f"_f{i}": pl.String() for i in range(len(table.columns))},
        **{f"_k{i}": pl.String() for i in range(len(table.keys))},
        "_valid": pl.Boolean(),
        "_dirty": pl.Boolean(),
        "line": pl.String(),
        "_ln": pl.Int64(),
    }


def scan_table(
    table: Table,
    options: CdrOptions,
    since: datetime | None = None,
    until: datetime | None = None,
    chunk_rows: int = CHUNK_ROWS,
    counter: Counter | None = None,
) -> pl.LazyFrame:
    """The normalized rows of the table from since to until (a LazyFrame read in chunks)."""

    def rows(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        zone = "UTC" if options.usegmtime else options.timezone
        for df in read_chunks(table, zone, since, until, chunk_rows, counter):
            yield pushed_down(df, predicate, with_columns)

    source = register_io_source(rows, schema=raw_schema(table), explain_name="cdr_database")
    return normalized(table, source, options)

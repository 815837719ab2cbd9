"""Scan one CDR file lazily into the normalized schema.

A polars IO source (``_source``) hands on the file's parsed pieces (``_pieces.frames``: rows
of strings, physical line numbers exact, bytes that are not UTF-8 replaced and counted);
typing, problem checks and outbound classification are lazy expressions on top (``_typed``,
``_outbound``).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from . import _gzip
from ._ahead import ahead
from ._detect import FileFormat, detect
from ._outbound import attribute, outbound
from ._pieces import frames
from ._typed import STRINGS, line_origin, named, typed
from ._types import CdrOptions

__all__ = ["SCHEMA", "FileFormat", "check_timezone", "detect", "file_chunks", "scan_file"]

SCHEMA: dict[str, pl.DataType] = {
    "origin": pl.String(),
    "problem": pl.String(),
    "call_id": pl.String(),
    "account": pl.String(),
    **{name: pl.String() for name in STRINGS},
    "start": pl.Datetime("us", "UTC"),
    "answer": pl.Datetime("us", "UTC"),
    "end": pl.Datetime("us", "UTC"),
    "duration": pl.Int64(),
    "billsec": pl.Int64(),
    "outbound": pl.Boolean(),
    "source": pl.String(),
    "trunk": pl.String(),
    "dialed": pl.String(),
    "trunk_basis": pl.String(),
    "replaced": pl.Int64(),
}


def _source_schema(n: int) -> dict[str, pl.DataType]:
    return {
        "_ln": pl.Int64(),
        "_dirty": pl.Boolean(),
        "line": pl.String(),
        **{f"_f{i}": pl.String() for i in range(n)},
    }


def pushed_down(
    df: pl.DataFrame, predicate: pl.Expr | None, with_columns: list[str] | None
) -> pl.DataFrame:
    """What an IO source hands polars: the filter and the projection it pushed down, applied."""
    if predicate is not None:
        df = df.filter(predicate)
    return df if with_columns is None else df.select(with_columns)


def _source(data_path: Path, n: int, skip_line: int) -> pl.LazyFrame:
    """A LazyFrame over the parsed pieces of data_path (columns of _source_schema)."""
    schema = _source_schema(n)

    def rows(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        fields = with_columns is None or any(c.startswith("_f") for c in with_columns)
        for df in frames(data_path, n, skip_line, fields):  # no field looked at: counting
            yield pushed_down(df, predicate, with_columns)

    return register_io_source(rows, schema=schema, explain_name="cdr_ingest")


def normalize(
    lf: pl.LazyFrame,
    fmt: FileFormat,
    options: CdrOptions,
    origin: pl.Expr,
    where: pl.Expr | None = None,
) -> pl.LazyFrame:
    """The typed, classified SCHEMA columns over source rows (columns _f*, _valid, line, _ln,
    _dirty), each row named by `origin`. `where`: only the rows it keeps; it is applied before
    the columns that cost the most and are read the least (origin, call_id, account, source,
    trunk), so it may look at any other SCHEMA column, and those are made for its rows only."""
    lf = outbound(typed(lf, fmt, options), options)
    if where is not None:
        lf = lf.filter(where)
    lf = attribute(named(lf, origin), options)
    return lf.select([pl.col(name).cast(dtype) for name, dtype in SCHEMA.items()])


def _normalized(
    lf: pl.LazyFrame,
    fmt: FileFormat,
    shown: str,
    options: CdrOptions,
    where: pl.Expr | None = None,
) -> pl.LazyFrame:
    """normalize() over the rows of _source (a file's rows are named path:line)."""
    n = len(fmt.columns)
    lf = lf.with_columns(_valid=pl.col(f"_f{n - 1}").is_not_null())
    return normalize(lf, fmt, options, line_origin(shown), where)


def _data_path(
    path: Path, shown: str, options: CdrOptions, partial: Callable[[str], None] | None
) -> tuple[FileFormat, Path] | None:
    fmt = detect(path, shown, options)
    if fmt is None:
        return None
    data_path = _gzip.decompress(path, shown, partial) if fmt.gzip else path
    if fmt.cr_lines:
        data_path = _gzip.cr_to_lf(data_path, shown)
    return fmt, data_path


def scan_file(
    path: Path, shown: str, options: CdrOptions, partial: Callable[[str], None] | None = None
) -> pl.LazyFrame:
    """Return the normalized LazyFrame of one file. `partial`: see `_gzip.decompress`."""
    found = _data_path(path, shown, options, partial)
    if found is None:
        return pl.LazyFrame(schema=SCHEMA)
    fmt, data_path = found
    lf = _source(data_path, len(fmt.columns), fmt.header_line if fmt.header else 0)
    return _normalized(lf, fmt, shown, options)


# Rows of source frames gathered into one chunk before it is typed and classified.
# Two pieces a chunk on CDR rows (~250 bytes): each chunk's plan (built, optimized, started)
# costs ~36M instructions, ~11 ms, whatever its size: 50k rows (a piece a chunk) paid it 17
# times per million rows, 100k pays it 9 times (callgrind, 255k rows: -0.7%).
CHUNK_ROWS = 100_000


def file_chunks(
    path: Path,
    shown: str,
    options: CdrOptions,
    partial: Callable[[str], None] | None = None,
    where: pl.Expr | None = None,
) -> Iterator[tuple[int, pl.LazyFrame]]:
    """The file as consecutive chunks, each (rows in it, its normalized LazyFrame over rows
    already read): evaluating one at a time holds one chunk in memory, whatever the file's
    size. The file is detected (and a gzip file decompressed) now, its rows read as the
    chunks are taken. The rows are scan_file's, in the same order (with `where`: only those
    it keeps, see `normalize`; the counts are of all rows)."""
    found = _data_path(path, shown, options, partial)
    if found is None:
        return iter(())
    fmt, data_path = found
    return _chunks(fmt, data_path, shown, options, where)


def _chunks(
    fmt: FileFormat, data_path: Path, shown: str, options: CdrOptions, where: pl.Expr | None
) -> Iterator[tuple[int, pl.LazyFrame]]:
    n = len(fmt.columns)

    def chunk(parts: list[pl.DataFrame]) -> tuple[int, pl.LazyFrame]:
        df = pl.concat(parts)
        return df.height, _normalized(df.lazy(), fmt, shown, options, where)

    held: list[pl.DataFrame] = []
    rows = 0
    # the next pieces are parsed in threads while this chunk is typed and taken
    for df in ahead(frames(data_path, n, fmt.header_line if fmt.header else 0)):
        held.append(df)
        rows += df.height
        if rows >= CHUNK_ROWS:
            yield chunk(held)
            held, rows = [], 0
    if held:
        yield chunk(held)


def check_timezone(options: CdrOptions) -> None:
    """Raise ValueError for an unknown IANA zone name."""
    try:
        zoneinfo.ZoneInfo(options.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {options.timezone!r}") from None

"""Scan one CDR file lazily into the normalized schema.

A polars IO source (``_source``) reads the file in pieces of about ``_PIECE_BYTES`` that end
at a line end, so memory stays flat and physical line numbers stay exact. Bytes that are not
UTF-8 (a caller name cut mid-character, Latin-1 from old phones) and NUL bytes are replaced by
U+FFFD first, one per byte, and counted per row (``replaced``): never a reason to drop a row.

* fast path (``_fast``): polars' own CSV parser reads the piece, and the piece is also read
  as one string per line. It is taken only when each physical line is exactly one record
  (no quoted newline, lone CR, quoting error or line with too many fields); each line is then
  checked against ``strict_regex`` (no captures, so a DFA runs it), and the few lines that
  fail it are read again with the lenient field regexes of ``_fields``, in the source: clean
  pieces never pay for the lenient machinery.
* line-by-line path (``_slow``): each physical line is read as ONE string (separator NUL,
  no quoting), so a bad row cannot swallow its neighbours, and its lenient fields are cut out
  with regexes. A piece the fast path refuses is halved down to ``_MIN_PIECE_BYTES`` before it
  is read this way.

Both paths give the columns of ``_source_schema``; typing, problem checks and outbound
classification are lazy expressions on top (``_typed``, ``_outbound``).
"""

from __future__ import annotations

import mmap
import os
import zoneinfo
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from . import _gzip
from ._ahead import ahead
from ._detect import FileFormat, detect
from ._fields import clean, extract_fields, strict_regex, unquote
from ._outbound import attribute, outbound
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
_PIECE_BYTES = 1 << 24
_MIN_PIECE_BYTES = 1 << 16


def _lines(piece: bytes) -> pl.DataFrame:
    """Each physical line as one string (line); piece is clean (no NUL byte)."""
    return pl.read_csv(
        piece,
        has_header=False,
        separator="\x00",
        quote_char=None,
        schema={"line": pl.String()},
        truncate_ragged_lines=True,
        missing_columns="insert",
        extra_columns="ignore",
        empty_string_is_null=False,
        encoding="utf8-lossy",
        raise_if_empty=False,
    )


def _line_count(piece: bytes) -> int:
    """Physical lines in piece (polars' line-count fast path; quotes are not looked at)."""
    lf = pl.scan_csv(
        piece,
        has_header=False,
        separator="\x00",
        quote_char=None,
        schema={"line": pl.String()},
        raise_if_empty=False,
    )
    return int(lf.select(pl.len()).collect().item())


def _slow(lines: pl.DataFrame, n: int, skip_line: int, dirty: bool) -> pl.DataFrame:
    """The line-by-line path over columns _ln, line: lenient fields, null unless n of them."""
    lf = lines.lazy().filter((pl.col("line") != "") & (pl.col("_ln") != skip_line))
    lf = extract_fields(lf, n, "line", "_f")
    return lf.select(
        "_ln",
        pl.lit(dirty).alias("_dirty"),
        "line",
        *[unquote(pl.col(f"_f{i}")).alias(f"_f{i}") for i in range(n)],
    ).collect()


def _line_rows(piece: bytes, first_line: int, skip_line: int, dirty: bool) -> pl.DataFrame:
    """The rows of piece without their fields (_f* columns left out): for counting rows."""
    lines = _numbered(_lines(piece), first_line)
    keep = (pl.col("line") != "") & (pl.col("_ln") != skip_line)
    return lines.filter(keep).select("_ln", pl.lit(dirty).alias("_dirty"), "line")


def _numbered(df: pl.DataFrame, first_line: int) -> pl.DataFrame:
    return df.with_columns(
        pl.int_range(first_line, first_line + pl.len(), dtype=pl.Int64).alias("_ln")
    )


def _fast(
    piece: bytes, first_line: int, n: int, skip_line: int, dirty: bool
) -> pl.DataFrame | None:
    """polars' CSV parser on piece; None when the piece needs the line-by-line path.

    A line that is not n strict CSV fields (a stray or unescaped quote that polars' parser
    took its own way) is read again leniently, as the line-by-line path reads it.
    """
    if b"\r" in piece and piece.count(b"\r") != piece.count(b"\r\n"):
        return None
    names = [f"_f{i}" for i in range(n)]
    try:
        native = pl.scan_csv(
            piece,
            has_header=False,
            quote_char='"',
            schema=dict.fromkeys(names, pl.String()),
            truncate_ragged_lines=False,
            missing_columns="insert",
            empty_string_is_null=False,  # a missing field is null, filled with "" as an empty one
            encoding="utf8-lossy",
            raise_if_empty=False,
        ).collect()
    except pl.exceptions.PolarsError:
        return None
    lines = _lines(piece)
    if native.height != lines.height:
        return None  # a quoted field spans lines
    out = pl.concat(
        [
            lines.select(
                pl.int_range(first_line, first_line + pl.len(), dtype=pl.Int64).alias("_ln"),
                pl.lit(dirty).alias("_dirty"),
                "line",
            ),
            native.select(pl.col(c).fill_null("") for c in names),
        ],
        how="horizontal",
    )
    keep = pl.col("line") != ""
    if first_line <= skip_line < first_line + out.height:
        keep = keep & (pl.col("_ln") != skip_line)
    out = out.filter(keep)
    strict = out.get_column("line").str.contains(strict_regex(n))
    if strict.all():
        return out
    again = _slow(out.filter(~strict).select("_ln", "line"), n, skip_line, dirty)
    return pl.concat([out.filter(strict), again]).sort("_ln")


def _pieces(data: mmap.mmap, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) byte ranges of about _PIECE_BYTES, each ending after a newline or at EOF."""
    pos = 0
    while pos < size:
        end = min(pos + _PIECE_BYTES, size)
        while end < size:
            nl = data.rfind(b"\n", pos, end)
            if nl >= 0:
                end = nl + 1
                break
            end = min(end + _PIECE_BYTES, size)  # a line longer than a piece
        yield pos, end
        pos = end


def _split(piece: bytes) -> tuple[bytes, bytes] | None:
    """piece cut after the newline nearest its middle; None if it is one line."""
    mid = len(piece) // 2
    nl = piece.rfind(b"\n", 0, mid)
    if nl < 0:
        nl = piece.find(b"\n", mid, len(piece) - 1)
    if nl < 0:
        return None
    return piece[: nl + 1], piece[nl + 1 :]


def _rows_of(
    piece: bytes, first_line: int, n: int, skip_line: int, dirty: bool
) -> Iterator[pl.DataFrame]:
    """Rows of piece: fast path, or halves of it, or line by line; line numbers from first_line."""
    fast = _fast(piece, first_line, n, skip_line, dirty)
    if fast is not None:
        yield fast
        return
    halves = _split(piece) if len(piece) >= _MIN_PIECE_BYTES else None
    if halves is not None:
        head, tail = halves
        yield from _rows_of(head, first_line, n, skip_line, dirty)
        yield from _rows_of(tail, first_line + _line_count(head), n, skip_line, dirty)
        return
    yield _slow(_numbered(_lines(piece), first_line), n, skip_line, dirty)


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


def _frames(
    data_path: Path, n: int, skip_line: int, fields: bool = True
) -> Generator[pl.DataFrame, None, None]:
    """The parsed pieces of data_path, in file order (columns of _source_schema; without
    `fields`, the _f* columns are left out: for counting rows).

    `_WORKERS` threads parse pieces at once (polars releases the GIL, and the strict line check
    of one piece runs on one core): the line numbers a piece starts at are counted here first;
    the pieces are handed on in file order, at most `_WORKERS` of them parsed and waiting."""
    fd = os.open(data_path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return
        data = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        try:
            with ThreadPoolExecutor(_WORKERS, thread_name_prefix="tollwatch-parse") as pool:
                yield from _parsed(pool, fd, data, size, n, skip_line, fields)
        finally:
            data.close()
    finally:
        os.close(fd)


_WORKERS = 2


def _parsed(
    pool: ThreadPoolExecutor,
    fd: int,
    data: mmap.mmap,
    size: int,
    n: int,
    skip_line: int,
    fields: bool,
) -> Iterator[pl.DataFrame]:
    waiting: deque[Future[list[pl.DataFrame]]] = deque()
    try:
        first_line = 1
        for start, end in _pieces(data, size):
            piece, dirty = clean(os.pread(fd, end - start, start))
            args = (piece, first_line, n, skip_line, dirty)
            waiting.append(pool.submit(_all_rows if fields else _counted_rows, *args))
            first_line += _line_count(piece)
            if len(waiting) >= _WORKERS:
                yield from waiting.popleft().result()
        while waiting:
            yield from waiting.popleft().result()
    finally:  # closed early or failed: pieces not started are not parsed
        for job in waiting:
            job.cancel()


def _all_rows(
    piece: bytes, first_line: int, n: int, skip_line: int, dirty: bool
) -> list[pl.DataFrame]:
    return list(_rows_of(piece, first_line, n, skip_line, dirty))


def _counted_rows(
    piece: bytes, first_line: int, n: int, skip_line: int, dirty: bool
) -> list[pl.DataFrame]:
    return [_line_rows(piece, first_line, skip_line, dirty)]


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
        for df in _frames(data_path, n, skip_line, fields):  # no field looked at: counting
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

    def chunk(frames: list[pl.DataFrame]) -> tuple[int, pl.LazyFrame]:
        df = pl.concat(frames)
        return df.height, _normalized(df.lazy(), fmt, shown, options, where)

    frames: list[pl.DataFrame] = []
    rows = 0
    # the next pieces are parsed in a thread while this chunk is typed and taken
    for df in ahead(_frames(data_path, n, fmt.header_line if fmt.header else 0)):
        frames.append(df)
        rows += df.height
        if rows >= CHUNK_ROWS:
            yield chunk(frames)
            frames, rows = [], 0
    if frames:
        yield chunk(frames)


def check_timezone(options: CdrOptions) -> None:
    """Raise ValueError for an unknown IANA zone name."""
    try:
        zoneinfo.ZoneInfo(options.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {options.timezone!r}") from None

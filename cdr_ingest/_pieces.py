"""A CDR file read in pieces: rows of strings, one per record, with exact line numbers.

The file is read in pieces of about ``_PIECE_BYTES`` that end at a line end, so memory stays
flat and physical line numbers stay exact. Bytes that are not UTF-8 (a caller name cut
mid-character, Latin-1 from old phones) and NUL bytes are replaced by U+FFFD first, one per
byte, and counted per row (``replaced``): never a reason to drop a row.

* fast path (``_fast``): polars' own CSV parser reads the piece, and the piece is also read
  as one string per line. It is taken only when each physical line is exactly one record
  (no quoted newline, lone CR, quoting error or line with too many fields); each line is then
  checked against ``strict_regex`` (no captures, so a DFA runs it), and the few lines that
  fail it are read again with the lenient field regexes of ``_fields``, here: clean
  pieces never pay for the lenient machinery.
* line-by-line path (``_slow``): each physical line is read as ONE string (separator NUL,
  no quoting), so a bad row cannot swallow its neighbours, and its lenient fields are cut out
  with regexes. A piece the fast path refuses is halved down to ``_MIN_PIECE_BYTES`` before it
  is read this way.

Both paths give the columns _ln (the physical line), _dirty, line and _f0.._f{n-1} (the
fields, strings), which ``_scan`` types lazily. ``frames`` parses up to two pieces at once.
"""

from __future__ import annotations

import mmap
import os
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import polars as pl

from ._fields import clean, extract_fields, strict_regex, unquote

__all__ = ["frames"]

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


def frames(
    data_path: Path, n: int, skip_line: int, fields: bool = True
) -> Generator[pl.DataFrame, None, None]:
    """The parsed pieces of data_path, in file order (columns of _source_schema; without
    `fields`, the _f* columns are left out: for counting rows).

    Up to two threads parse pieces at once (`_workers`: polars releases the GIL; the strict line
    check of one piece runs on one core): the line numbers a piece starts at are counted here
    first; the pieces are handed on in file order, at most two of them parsed and waiting."""
    fd = os.open(data_path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return
        data = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        try:
            workers = _workers()
            pool = ThreadPoolExecutor(workers, thread_name_prefix="tollwatch-parse")
            try:
                yield from _parsed(pool, workers, fd, data, size, n, skip_line, fields)
            finally:  # closed early or failed: pieces not started are not parsed
                pool.shutdown(wait=True, cancel_futures=True)
        finally:
            data.close()
    finally:
        os.close(fd)


_WORKERS = 2  # pieces parsed at once, at most


def _workers() -> int:
    """`_WORKERS`, but one where the process may use only one core (a small appliance: a second
    piece in flight would only cost its memory, ~40-50 MB)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(_WORKERS, cores))


def _parsed(
    pool: ThreadPoolExecutor,
    workers: int,
    fd: int,
    data: mmap.mmap,
    size: int,
    n: int,
    skip_line: int,
    fields: bool,
) -> Iterator[pl.DataFrame]:
    waiting: deque[Future[list[pl.DataFrame]]] = deque()
    first_line = 1
    for start, end in _pieces(data, size):
        piece, dirty = clean(os.pread(fd, end - start, start))
        args = (piece, first_line, n, skip_line, dirty)
        waiting.append(pool.submit(_all_rows if fields else _counted_rows, *args))
        first_line += _line_count(piece)
        if len(waiting) >= workers:
            yield from waiting.popleft().result()
    while waiting:
        yield from waiting.popleft().result()


def _all_rows(
    piece: bytes, first_line: int, n: int, skip_line: int, dirty: bool
) -> list[pl.DataFrame]:
    return list(_rows_of(piece, first_line, n, skip_line, dirty))


def _counted_rows(
    piece: bytes, first_line: int, n: int, skip_line: int, dirty: bool
) -> list[pl.DataFrame]:
    return [_line_rows(piece, first_line, skip_line, dirty)]

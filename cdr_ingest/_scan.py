"""Scan one CDR file lazily into the normalized schema.

A polars IO source (``_source``) reads the file in pieces of about ``_PIECE_BYTES`` that end
at a line end, so memory stays flat and physical line numbers stay exact:

* fast path (``_fast``): polars' own CSV parser reads the piece, and the piece is also read
  as one string per line. It is taken only when each physical line is exactly one record
  (no quoted newline, NUL byte, lone CR, quoting error or line with too many fields); the
  lazy plan then checks each line against ``_valid_regex`` (no captures, so a DFA runs it,
  in parallel) and a line that fails it is a problem row, as in the line-by-line path.
* line-by-line path (``_slow``): each physical line is read as ONE string (separator NUL,
  no quoting), so a bad row cannot swallow its neighbours, and fields are cut out with
  anchored regexes of at most 9 capture groups each, chained through a "rest of line" group
  (with few groups Rust's regex crate can use its fast capture engines). A piece the fast
  path refuses is halved down to ``_MIN_PIECE_BYTES`` before it is read this way.

Both paths give the columns of ``_source_schema``; typing, problem checks and outbound
classification are lazy expressions on top.
"""

from __future__ import annotations

import csv
import gzip
import io
import mmap
import os
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from . import _gzip, _header, _layouts
from ._outbound import classify
from ._types import CdrOptions, IngestError

_STRINGS = (
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "disposition",
    "userfield",
    "linkedid",
)
SCHEMA: dict[str, pl.DataType] = {
    "origin": pl.String(),
    "problem": pl.String(),
    "call_id": pl.String(),
    "account": pl.String(),
    **{name: pl.String() for name in _STRINGS},
    "start": pl.Datetime("us", "UTC"),
    "answer": pl.Datetime("us", "UTC"),
    "end": pl.Datetime("us", "UTC"),
    "duration": pl.Int64(),
    "billsec": pl.Int64(),
    "outbound": pl.Boolean(),
    "source": pl.String(),
    "trunk": pl.String(),
}
_FIELD = r'("[^"]*"(?:"[^"]*")*|[^,"]*)'
_GROUPS_PER_REGEX = 9
_HEAD_LINES = 50
_HEAD_BYTES = 1 << 16
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_PIECE_BYTES = 1 << 24
_MIN_PIECE_BYTES = 1 << 16


@dataclass(frozen=True)
class FileFormat:
    """What a file holds: its columns (by name, in order) and how it was detected."""

    columns: tuple[str, ...]
    layout: str  # a layout name, or "header"
    header: bool
    gzip: bool
    description: str = ""
    header_line: int = 0  # physical line number of the header row, 0 without header


def _head_lines(path: Path, shown: str, compressed: bool) -> list[tuple[int, str]]:
    """The first non-blank lines with their 1-based physical line numbers."""
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            data = f.read(_HEAD_BYTES)
    except (OSError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise IngestError(f"{shown}: cannot read ({reason})") from None
    lines = data.decode("utf-8", errors="replace").split("\n")
    if len(data) == _HEAD_BYTES:
        lines.pop()  # may be cut in the middle
    numbered = [(i + 1, ln.rstrip("\r")) for i, ln in enumerate(lines) if ln.strip()]
    return numbered[:_HEAD_LINES]


def _parse(line: str) -> list[str]:
    try:
        return next(csv.reader(io.StringIO(line)), [])
    except csv.Error:
        return []


def detect(path: Path, shown: str, options: CdrOptions) -> FileFormat | None:
    """Detect format and layout from the first lines; None for an empty file."""
    compressed = _gzip.is_gzip(path)
    lines = _head_lines(path, shown, compressed)
    if not lines:
        return None
    first = _parse(lines[0][1])
    if _header.looks_like_header(first):
        mapping = _header.map_header(first)
        if "start" not in mapping:
            raise IngestError(f"{shown}: header has no start/calldate column")
        if "end" not in mapping and "duration" not in mapping:
            raise IngestError(f"{shown}: header has neither an end nor a duration column")
        cols = [f"_x{i}" for i in range(len(first))]
        for name, pos in mapping.items():
            cols[pos] = name
        desc = f"header with {len(first)} columns ({_header.kind(first)})"
        return FileFormat(tuple(cols), "header", True, compressed, desc, lines[0][0])
    rows = [_parse(ln) for _, ln in lines]
    layout = _layouts.resolve_layout(rows, options.layout)
    if layout is None:
        raise IngestError(
            f"{shown}: not a CDR file (first line has {len(first)} columns, "
            f"expected {_layouts.MIN_COLUMNS}-{_layouts.MAX_COLUMNS} or a header with src,dst)"
        )
    columns = _layouts.LAYOUTS[layout]
    return FileFormat(columns, layout, False, compressed, f"{len(columns)} columns ({layout})")


def _valid_regex(n: int) -> str:
    """Whole line of exactly n CSV fields (no captures, so a DFA can run it)."""
    field = '(?:"(?:[^"]|"")*"|[^,"]*)'
    return f"^{field}(?:,{field}){{{n - 1}}}$"


def _extract_fields(lf: pl.LazyFrame, n: int) -> pl.LazyFrame:
    """Add columns _f0.._f{n-1}, all null unless the line has exactly n CSV fields."""
    rest = "line"
    i = 0
    while i < n:
        m = min(_GROUPS_PER_REGEX, n - i)
        last = i + m == n
        rx = "^" + ",".join([_FIELD] * m) + ("$" if last else ",(.*)$")
        names = [f"_f{j}" for j in range(i, i + m)] + ([] if last else [f"_r{i}"])
        groups = pl.col(rest).str.extract_groups(rx).struct.rename_fields(names)
        lf = lf.with_columns(groups.struct.unnest())
        rest = f"_r{i}"
        i += m
    return lf


def _to_utc(naive: pl.Expr, options: CdrOptions) -> pl.Expr:
    if options.usegmtime or options.timezone == "UTC":
        return naive.dt.replace_time_zone("UTC")
    local = naive.dt.replace_time_zone(options.timezone, ambiguous="earliest", non_existent="null")
    return local.dt.convert_time_zone("UTC")


def _parse_time(raw: pl.Expr, header: bool) -> pl.Expr:
    naive = raw.str.strptime(pl.Datetime("us"), _TIME_FORMAT, strict=False)
    if header:
        for fmt in ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"):
            naive = naive.fill_null(raw.str.strptime(pl.Datetime("us"), fmt, strict=False))
    return naive


def _message(prefix: str, raw: pl.Expr, bad: pl.Expr, suffix: str) -> pl.Expr:
    """prefix + raw + suffix where bad, else null (only bad rows build a string)."""
    return pl.concat_str(pl.lit(prefix), pl.when(bad).then(raw), pl.lit(suffix))


def _time_problem(
    name: str, raw: pl.Expr, naive: pl.Expr, zoned: pl.Expr, tz: str, required: bool
) -> pl.Expr:
    bad = naive.is_null() if required else (raw != "") & naive.is_null()
    missing = naive.is_not_null() & zoned.is_null()
    return pl.coalesce(
        _message(f"bad {name} time '", raw, bad, "'"),
        _message(f"{name} time '", raw, missing, f"' does not exist in {tz}"),
    )


def _int_problem(name: str, raw: pl.Expr, value: pl.Expr) -> pl.Expr:
    return _message(f"bad {name} '", raw, value.is_null(), "'")


def _lines(piece: bytes) -> pl.DataFrame:
    """Each physical line as one string (line), anything after a NUL byte in extra."""
    return pl.read_csv(
        piece,
        has_header=False,
        separator="\x00",
        quote_char=None,
        schema={"line": pl.String(), "extra": pl.String()},
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


def _slow(lines: pl.DataFrame, n: int, skip_line: int) -> pl.DataFrame:
    """The line-by-line path over columns _ln, line, extra: fields null unless valid."""
    lf = lines.lazy().filter(
        ((pl.col("line") != "") | (pl.col("extra") != "")) & (pl.col("_ln") != skip_line)
    )
    lf = _extract_fields(lf, n)
    valid = pl.col(f"_f{n - 1}").is_not_null()
    unquoted = [
        pl.when(valid)
        .then(pl.col(f"_f{i}"))
        .str.strip_prefix('"')
        .str.strip_suffix('"')
        .str.replace_all('""', '"', literal=True)
        .alias(f"_f{i}")
        for i in range(n)
    ]
    return lf.select(
        "_ln",
        (pl.col("extra") != "").alias("_nul"),
        pl.lit(True).alias("_checked"),
        "line",
        *unquoted,
    ).collect()


def _line_rows(piece: bytes, first_line: int, skip_line: int) -> pl.DataFrame:
    """The rows of piece without their fields (_f* columns left out): for counting rows."""
    lines = _numbered(_lines(piece), first_line)
    keep = ((pl.col("line") != "") | (pl.col("extra") != "")) & (pl.col("_ln") != skip_line)
    return lines.filter(keep).select(
        "_ln", (pl.col("extra") != "").alias("_nul"), pl.lit(True).alias("_checked"), "line"
    )


def _numbered(df: pl.DataFrame, first_line: int) -> pl.DataFrame:
    return df.with_columns(
        pl.int_range(first_line, first_line + pl.len(), dtype=pl.Int64).alias("_ln")
    )


def _fast(piece: bytes, first_line: int, n: int, skip_line: int) -> pl.DataFrame | None:
    """polars' CSV parser on piece; None when the piece needs the line-by-line path.

    Rows come out unchecked (_checked false): whether each line really has the n fields of
    _VALID is left to the lazy plan (a regex without captures, run in parallel there).
    """
    if b"\x00" in piece:
        return None
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
            empty_string_is_null=True,
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
                pl.lit(False).alias("_nul"),
                pl.lit(False).alias("_checked"),
                "line",
            ),
            native.select(pl.col(c).fill_null("") for c in names),
        ],
        how="horizontal",
    )
    keep = pl.col("line") != ""
    if first_line <= skip_line < first_line + out.height:
        keep = keep & (pl.col("_ln") != skip_line)
    return out.filter(keep)


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


def _rows_of(piece: bytes, first_line: int, n: int, skip_line: int) -> Iterator[pl.DataFrame]:
    """Rows of piece: fast path, or halves of it, or line by line; line numbers from first_line."""
    fast = _fast(piece, first_line, n, skip_line)
    if fast is not None:
        yield fast
        return
    halves = _split(piece) if len(piece) >= _MIN_PIECE_BYTES else None
    if halves is not None:
        head, tail = halves
        yield from _rows_of(head, first_line, n, skip_line)
        yield from _rows_of(tail, first_line + _line_count(head), n, skip_line)
        return
    yield _slow(_numbered(_lines(piece), first_line), n, skip_line)


def _source_schema(n: int) -> dict[str, pl.DataType]:
    return {
        "_ln": pl.Int64(),
        "_nul": pl.Boolean(),
        "_checked": pl.Boolean(),
        "line": pl.String(),
        **{f"_f{i}": pl.String() for i in range(n)},
    }


def _source(data_path: Path, n: int, skip_line: int) -> pl.LazyFrame:
    """A LazyFrame over the parsed pieces of data_path (columns of _source_schema)."""
    schema = _source_schema(n)

    def rows(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        fd = os.open(data_path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return
            data = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
            try:
                first_line = 1
                fields = with_columns is None or any(c.startswith("_f") for c in with_columns)
                for start, end in _pieces(data, size):
                    piece = os.pread(fd, end - start, start)
                    if fields:
                        frames = _rows_of(piece, first_line, n, skip_line)
                    else:  # e.g. counting rows: no field is looked at
                        frames = iter([_line_rows(piece, first_line, skip_line)])
                    for df in frames:
                        if predicate is not None:
                            df = df.filter(predicate)
                        if with_columns is not None:
                            df = df.select(with_columns)
                        yield df
                    first_line += _line_count(piece)
            finally:
                data.close()
        finally:
            os.close(fd)

    return register_io_source(rows, schema=schema, explain_name="cdr_ingest")


def scan_file(
    path: Path, shown: str, options: CdrOptions, partial: Callable[[str], None] | None = None
) -> pl.LazyFrame:
    """Return the normalized LazyFrame of one file. `partial`: see `_gzip.decompress`."""
    fmt = detect(path, shown, options)
    if fmt is None:
        return pl.LazyFrame(schema=SCHEMA)
    data_path = _gzip.decompress(path, shown, partial) if fmt.gzip else path
    n = len(fmt.columns)
    lf = _source(data_path, n, fmt.header_line if fmt.header else 0)
    checked = pl.col("_checked") | pl.col("line").str.contains(_valid_regex(n))
    lf = lf.with_columns(_valid=checked & pl.col(f"_f{n - 1}").is_not_null())
    valid = pl.col("_valid")

    def raw(name: str) -> pl.Expr:
        if name not in fmt.columns:
            return pl.when(valid).then(pl.lit(""))
        return pl.when(valid).then(pl.col(f"_f{fmt.columns.index(name)}"))

    lf = lf.with_columns(
        *[raw(name).alias(name) for name in (*_STRINGS, "accountcode", "uniqueid")],
        *[raw(name).alias(f"_{name}") for name in ("start", "answer", "end")],
        *[raw(name).alias(f"_{name}") for name in ("duration", "billsec")],
    )
    lf = lf.with_columns(
        *[
            _parse_time(pl.col(f"_{t}"), fmt.header).alias(f"_n{t}")
            for t in ("start", "answer", "end")
        ],
        *[
            pl.col(f"_{i}").str.strip_chars().str.to_integer(strict=False).alias(i)
            for i in ("duration", "billsec")
        ],
    )
    lf = lf.with_columns(
        *[_to_utc(pl.col(f"_n{t}"), options).alias(t) for t in ("start", "answer", "end")]
    )
    if fmt.header and "duration" not in fmt.columns:
        lf = lf.with_columns(duration=(pl.col("end") - pl.col("start")).dt.total_seconds())
    if fmt.header and "billsec" not in fmt.columns:
        billed = (pl.col("end") - pl.col("answer")).dt.total_seconds().fill_null(0)
        lf = lf.with_columns(billsec=pl.when(valid).then(billed))
    if fmt.header and "end" not in fmt.columns:
        lf = lf.with_columns(
            end=pl.col("start") + pl.duration(seconds=pl.col("duration")),
            _end=pl.col("_start"),
            _nend=pl.col("_nstart"),
        )
    if fmt.header and "answer" not in fmt.columns:
        answered = pl.col("end") - pl.duration(seconds=pl.col("billsec"))
        lf = lf.with_columns(
            answer=pl.when(pl.col("billsec") > 0).then(answered),
            _answer=pl.lit(""),
            _nanswer=pl.lit(None, pl.Datetime("us")),
        )

    bad_line = pl.when(~valid).then(pl.col("line"))
    count = bad_line.str.count_matches(r'"[^"]*"|,') - bad_line.str.count_matches(r'"[^"]*"') + 1
    count_problem = (
        pl.when(valid)
        .then(None)
        .when(count == n)
        .then(pl.lit(f"malformed quoting, expected {n} columns"))
        .otherwise(pl.concat_str(count.cast(pl.String), pl.lit(f" columns, expected {n}")))
    )
    tz = "UTC" if options.usegmtime else options.timezone
    problem = pl.coalesce(
        pl.when(pl.col("_nul")).then(pl.lit("NUL byte in line")),
        pl.when(pl.col("line").str.contains("\ufffd", literal=True)).then(
            pl.lit("bytes that are not UTF-8")
        ),
        count_problem,
        *[
            _time_problem(t, pl.col(f"_{t}"), pl.col(f"_n{t}"), pl.col(t), tz, t != "answer")
            for t in ("start", "answer", "end")
        ],
        *[_int_problem(i, pl.col(f"_{i}"), pl.col(i)) for i in ("duration", "billsec")],
    )
    origin = pl.concat_str(pl.lit(f"{shown}:"), pl.col("_ln").cast(pl.String))
    call_id = pl.when(pl.col("uniqueid") != "").then(pl.col("uniqueid")).otherwise(pl.col("origin"))
    lf = lf.with_columns(
        origin.alias("origin"),
        problem.alias("problem"),
        pl.col("accountcode").alias("account"),
    ).with_columns(call_id.alias("call_id"))
    lf = classify(lf, options)
    return lf.select([pl.col(name).cast(dtype) for name, dtype in SCHEMA.items()])


def check_timezone(options: CdrOptions) -> None:
    """Raise ValueError for an unknown IANA zone name."""
    try:
        zoneinfo.ZoneInfo(options.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {options.timezone!r}") from None

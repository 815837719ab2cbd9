"""Scan one CDR file lazily into the normalized schema.

Each physical line is read as ONE string (separator NUL, no quoting), so line numbers are
exact and a bad row cannot swallow its neighbours. Fields are then cut out with anchored
regexes of at most 9 capture groups each, chained through a "rest of line" group: with
few groups Rust's regex crate can use its fast capture engines (measured ~2x faster than
one regex with all groups).
"""

from __future__ import annotations

import csv
import gzip
import io
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from . import _gzip, _header, _layouts
from ._outbound import classify
from ._types import CdrOptions, IngestError

SCHEMA: dict[str, pl.DataType] = {
    "origin": pl.String(),
    "problem": pl.String(),
    "call_id": pl.String(),
    **{
        name: pl.String()
        for name in (
            "account",
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
    },
    "start": pl.Datetime("us", "UTC"),
    "answer": pl.Datetime("us", "UTC"),
    "end": pl.Datetime("us", "UTC"),
    "duration": pl.Int64(),
    "billsec": pl.Int64(),
    "outbound": pl.Boolean(),
    "source": pl.String(),
    "trunk": pl.String(),
}
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
_FIELD = r'("[^"]*"(?:"[^"]*")*|[^,"]*)'
_GROUPS_PER_REGEX = 9
_HEAD_LINES = 50
_HEAD_BYTES = 1 << 16
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


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


def scan_file(path: Path, shown: str, options: CdrOptions) -> pl.LazyFrame:
    """Return the normalized LazyFrame of one file."""
    fmt = detect(path, shown, options)
    if fmt is None:
        return pl.LazyFrame(schema=SCHEMA)
    data_path = _gzip.decompress(path, shown) if fmt.gzip else path
    n = len(fmt.columns)
    lf = pl.scan_csv(
        data_path,
        has_header=False,
        separator="\x00",
        quote_char=None,
        schema={"line": pl.String(), "extra": pl.String()},
        truncate_ragged_lines=True,
        missing_columns="insert",
        empty_string_is_null=False,
        encoding="utf8-lossy",
    )
    lf = lf.with_row_index("_ln", offset=1)
    lf = lf.filter((pl.col("line") != "") | (pl.col("extra") != ""))
    if fmt.header:
        lf = lf.filter(pl.col("_ln") != fmt.header_line)
    lf = _extract_fields(lf, n)
    valid = pl.col(f"_f{n - 1}").is_not_null()

    def raw(name: str) -> pl.Expr:
        if name not in fmt.columns:
            return pl.when(valid).then(pl.lit(""))
        f = pl.col(f"_f{fmt.columns.index(name)}")
        unquoted = f.str.strip_prefix('"').str.strip_suffix('"')
        return pl.when(valid).then(unquoted.str.replace_all('""', '"', literal=True))

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
        pl.when(pl.col("extra") != "").then(pl.lit("NUL byte in line")),
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

"""From parsed fields to typed CDR columns: values, times in UTC, integers, row problems."""

from __future__ import annotations

import polars as pl

from ._detect import FileFormat
from ._types import EARLIEST, LATEST, YEARS, CdrOptions

STRINGS = (
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
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIMES = ("start", "answer", "end")
_INTS = ("duration", "billsec")


def _to_utc(naive: pl.Expr, options: CdrOptions) -> pl.Expr:
    if options.usegmtime or options.timezone == "UTC":
        return naive.dt.replace_time_zone("UTC")
    local = naive.dt.replace_time_zone(options.timezone, ambiguous="earliest", non_existent="null")
    return local.dt.convert_time_zone("UTC")


def _parse_time(raw: pl.Expr, header: bool) -> pl.Expr:
    # cache=False: CDR times are nearly all distinct, a cache of them only costs (~40%)
    naive = raw.str.strptime(pl.Datetime("us"), _TIME_FORMAT, strict=False, cache=False)
    if header:
        for fmt in ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"):
            again = raw.str.strptime(pl.Datetime("us"), fmt, strict=False, cache=False)
            naive = naive.fill_null(again)
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


def _far_problem(name: str, shown: pl.Expr, value: pl.Expr, made_from: str) -> pl.Expr:
    """A time outside [EARLIEST, LATEST), named by its field as written (`shown`), or, for a
    time the file does not hold, by what it was worked out from (`made_from`)."""
    far = value.is_not_null() & ~_in_range(value)
    if made_from:
        return _message(f"{name} time ({made_from} '", shown, far,
                        f"') is out of range ({YEARS})")
    return _message(f"{name} time '", shown, far, f"' is out of range ({YEARS})")


def _in_range(value: pl.Expr) -> pl.Expr:
    return (value >= EARLIEST) & (value < LATEST)


def _int_problem(name: str, raw: pl.Expr, value: pl.Expr) -> pl.Expr:
    return _message(f"bad {name} '", raw, value.is_null(), "'")


def _count_problem(n: int, valid: pl.Expr) -> pl.Expr:
    bad_line = pl.when(~valid).then(pl.col("line"))
    count = bad_line.str.count_matches(r'"[^"]*"|,') - bad_line.str.count_matches(r'"[^"]*"') + 1
    return (
        pl.when(valid)
        .then(None)
        .when(count == n)
        .then(pl.lit(f"malformed quoting, expected {n} columns"))
        .otherwise(pl.concat_str(count.cast(pl.String), pl.lit(f" columns, expected {n}")))
    )


def typed(lf: pl.LazyFrame, fmt: FileFormat, options: CdrOptions) -> pl.LazyFrame:
    """Columns _f0.._f{n-1} (values), _valid, line, _ln, _dirty -> the typed CDR columns
    (without the row's name: see `named`)."""
    n = len(fmt.columns)
    valid = pl.col("_valid")

    def raw(name: str) -> pl.Expr:
        if name not in fmt.columns:
            return pl.when(valid).then(pl.lit(""))
        value = pl.col(f"_f{fmt.columns.index(name)}")
        if fmt.null_values:
            value = pl.when(value.is_in(list(fmt.null_values))).then(pl.lit("")).otherwise(value)
        return pl.when(valid).then(value)

    lf = lf.with_columns(
        *[raw(name).alias(name) for name in (*STRINGS, "accountcode", "uniqueid")],
        *[raw(name).alias(f"_{name}") for name in (*_TIMES, *_INTS)],
    )
    lf = lf.with_columns(
        *[_parse_time(pl.col(f"_{t}"), fmt.header).alias(f"_n{t}") for t in _TIMES],
        *[pl.col(f"_{i}").str.strip_chars().str.to_integer(strict=False).alias(i) for i in _INTS],
    )
    lf = lf.with_columns(*[_to_utc(pl.col(f"_n{t}"), options).alias(t) for t in _TIMES])
    if "duration" not in fmt.columns:
        lf = lf.with_columns(duration=(pl.col("end") - pl.col("start")).dt.total_seconds())
    if "billsec" not in fmt.columns:
        billed = (pl.col("end") - pl.col("answer")).dt.total_seconds().fill_null(0)
        lf = lf.with_columns(billsec=pl.when(valid).then(billed))
    if "end" not in fmt.columns:
        lf = lf.with_columns(
            end=pl.col("start") + pl.duration(seconds=pl.col("duration")),
            _end=pl.col("_start"),
            _nend=pl.col("_nstart"),
        )
    if "answer" not in fmt.columns:
        answered = pl.col("end") - pl.duration(seconds=pl.col("billsec"))
        lf = lf.with_columns(
            answer=pl.when(pl.col("billsec") > 0).then(answered),
            _answer=pl.lit(""),
            _nanswer=pl.lit(None, pl.Datetime("us")),
        )
    tz = "UTC" if options.usegmtime else options.timezone
    problem = pl.coalesce(
        _count_problem(n, valid),
        *[
            _time_problem(t, pl.col(f"_{t}"), pl.col(f"_n{t}"), pl.col(t), tz, t != "answer")
            for t in _TIMES
        ],
        *[_int_problem(i, pl.col(f"_{i}"), pl.col(i)) for i in _INTS],
        *[_far_problem(t, *_written(t, fmt)) for t in _TIMES],
    )
    replaced = pl.when(pl.col("_dirty")).then(
        pl.col("line").str.count_matches("\ufffd", literal=True)
    )
    return lf.with_columns(
        problem.alias("problem"),
        replaced.fill_null(0).cast(pl.Int64).alias("replaced"),
        # a time out of range is never handed on, even where a problem row is looked at
        *[pl.when(_in_range(pl.col(t))).then(pl.col(t)).alias(t) for t in _TIMES],
    )


def _written(name: str, fmt: FileFormat) -> tuple[pl.Expr, pl.Expr, str]:
    """What names a time in a problem: its field, or the fields it is worked out from (no
    formatting of the time itself: polars cannot format one this far out)."""
    if name in fmt.columns or name == "start":
        return pl.col(f"_{name}"), pl.col(name), ""
    if name == "end":
        return pl.col("_duration"), pl.col(name), "start + duration"
    return pl.col("_billsec"), pl.col(name), "end - billsec"


def line_origin(shown: str) -> pl.Expr:
    """How a file's row is named in problems and as call_id without uniqueid: path:line."""
    return pl.concat_str(pl.lit(f"{shown}:"), pl.col("_ln").cast(pl.String))


def named(lf: pl.LazyFrame, origin: pl.Expr) -> pl.LazyFrame:
    """Add origin (the row's name), call_id (uniqueid, else origin) and account."""
    call_id = pl.when(pl.col("uniqueid") != "").then(pl.col("uniqueid")).otherwise(pl.col("origin"))
    return lf.with_columns(
        origin.alias("origin"), pl.col("accountcode").alias("account")
    ).with_columns(call_id.alias("call_id"))

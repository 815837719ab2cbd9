"""From raw string fields to the normalized schema: times, integers, problems, outbound legs.

The one normalization every CDR source goes through (files, and database tables): a source gives
a LazyFrame with `_f0`..`_f{n-1}` (strings, one per column named in `columns`), `_valid` (the row
has all its fields), `_nul` (a NUL byte was in it) and `line` (the raw line, checked for bytes
that are not UTF-8, and used to explain invalid rows), and the expression that names a row.
"""

from __future__ import annotations

import polars as pl

from ._outbound import classify
from ._types import CdrOptions

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
}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def _to_utc(naive: pl.Expr, options: CdrOptions) -> pl.Expr:
    if options.usegmtime or options.timezone == "UTC":
        return naive.dt.replace_time_zone("UTC")
    local = naive.dt.replace_time_zone(options.timezone, ambiguous="earliest", non_existent="null")
    return local.dt.convert_time_zone("UTC")


def _parse_time(raw: pl.Expr, header: bool) -> pl.Expr:
    naive = raw.str.strptime(pl.Datetime("us"), TIME_FORMAT, strict=False)
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


def normalize(
    lf: pl.LazyFrame,
    columns: tuple[str, ...],
    header: bool,
    origin: pl.Expr,
    options: CdrOptions,
) -> pl.LazyFrame:
    """The rows of a source in SCHEMA. `columns` names each `_f{i}`; `header` (a source that
    names its columns: header CSVs, database tables) allows ISO times with fractions and derives
    what is missing (duration, billsec, answer, end) from the columns there are."""
    n = len(columns)
    valid = pl.col("_valid")

    def raw(name: str) -> pl.Expr:
        if name not in columns:
            return pl.when(valid).then(pl.lit(""))
        return pl.when(valid).then(pl.col(f"_f{columns.index(name)}"))

    lf = lf.with_columns(
        *[raw(name).alias(name) for name in (*STRINGS, "accountcode", "uniqueid")],
        *[raw(name).alias(f"_{name}") for name in ("start", "answer", "end")],
        *[raw(name).alias(f"_{name}") for name in ("duration", "billsec")],
    )
    lf = lf.with_columns(
        *[
            _parse_time(pl.col(f"_{t}"), header).alias(f"_n{t}")
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
    if header and "duration" not in columns:
        lf = lf.with_columns(duration=(pl.col("end") - pl.col("start")).dt.total_seconds())
    if header and "billsec" not in columns:
        billed = (pl.col("end") - pl.col("answer")).dt.total_seconds().fill_null(0)
        lf = lf.with_columns(billsec=pl.when(valid).then(billed))
    if header and "end" not in columns:
        lf = lf.with_columns(
            end=pl.col("start") + pl.duration(seconds=pl.col("duration")),
            _end=pl.col("_start"),
            _nend=pl.col("_nstart"),
        )
    if header and "answer" not in columns:
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
    call_id = pl.when(pl.col("uniqueid") != "").then(pl.col("uniqueid")).otherwise(pl.col("origin"))
    lf = lf.with_columns(
        origin.alias("origin"),
        problem.alias("problem"),
        pl.col("accountcode").alias("account"),
    ).with_columns(call_id.alias("call_id"))
    lf = classify(lf, options)
    return lf.select([pl.col(name).cast(dtype) for name, dtype in SCHEMA.items()])

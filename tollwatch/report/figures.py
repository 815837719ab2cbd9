"""One streaming pass over the CDRs: the report's figures, aggregated batch by batch.

The lazy plan is the one `run_scan` streams (read, filter on time, nothing else); every batch
is classified in memory and folded into small per-day / per-hour / per-country / per-source
counters, so memory stays flat whatever the number of rows. Only the calls rules look at
(international or high-risk) in the period plus a warm-up are kept, for the engine replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from tollwatch.cdr_ingest import dials_local, local_dials, resolve_local_chains, scan_cdrs
from tollwatch.cdr_ingest.database import CdrDatabase
from tollwatch.cdr_ingest.live.follow_rows import REFUSED_MARK
from tollwatch.config import Settings
from tollwatch.report.period import Period
from tollwatch.rules.batch import CALL_COLUMNS
from tollwatch.rules.calendar import BusinessCalendar
from tollwatch.rules.destinations import Classifier
from tollwatch.settings import cdr_options

KINDS = ("domestic", "international", "high-risk", "other")
MAX_PROBLEMS = 20
BATCH_ROWS = 200_000
KEEP_COLUMNS = (*CALL_COLUMNS, "billsec")
NUMBERS_SAMPLE = 10_000  # distinct dialed numbers kept for the validity check


@dataclass
class Totals:
    calls: int = 0
    answered: int = 0
    international: int = 0
    high_risk: int = 0
    off_hours_international: int = 0
    minutes: float = 0.0
    spend: float = 0.0
    rated_calls: int = 0  # calls whose destination has a rate (spend is estimated over these)

    def add(self, other: Totals) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["minutes"] = round(self.minutes, 2)
        d["spend"] = round(self.spend, 2) if self.rated_calls else None
        return d


@dataclass
class Country:
    region: str
    name: str
    calling_code: str
    calls: int = 0
    answered: int = 0
    minutes: float = 0.0
    spend: float = 0.0
    high_risk: int = 0


@dataclass
class Source:
    source: str
    calls: int = 0
    international: int = 0
    high_risk: int = 0
    minutes: float = 0.0
    spend: float = 0.0


@dataclass
class Figures:
    """Everything counted in the pass (the incidents come from the engine afterwards)."""

    period: Period
    totals: Totals = field(default_factory=Totals)
    daily: dict[date, Totals] = field(default_factory=dict)  # local date -> totals (window)
    hourly: dict[tuple[int, str], int] = field(default_factory=dict)  # (hour, kind) -> calls
    countries: dict[str, Country] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    earlier_regions: set[str] = field(default_factory=set)  # called in the baseline window
    first_seen: datetime | None = None  # earliest outbound call in the window read
    malformed: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    malformed_by_file: dict[str, int] = field(default_factory=dict)
    replaced: int = 0  # bytes not UTF-8 replaced (rows kept), as `scan` counts them
    replaced_by_file: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # "path: why", files not (all) read
    relevant: pl.DataFrame | None = None  # international/high-risk calls from the warm-up on
    prior_last_seen: dict[str, datetime] = field(default_factory=dict)  # region -> last start
    history_start: datetime | None = None  # first international/high-risk call in the window
    last_seen: datetime | None = None  # latest outbound call in the window read
    numbers: set[str] = field(default_factory=set, repr=False)  # distinct dialed (a sample)
    cdr_days: dict[date, int] = field(default_factory=dict)  # local date -> CDR rows, any kind
    refused: dict[str, int] = field(default_factory=dict)  # source -> attempts a block refused
    refused_by_block: dict[str, int] = field(default_factory=dict)  # "23276543", "src:209"

    def first_time_countries(self) -> list[Country]:
        return sorted(
            (c for r, c in self.countries.items() if r not in self.earlier_regions),
            key=lambda c: (-c.calls, c.region),
        )


def collect(
    paths: Sequence[Path],
    settings: Settings,
    period: Period,
    classifier: Classifier,
    calendar: BusinessCalendar,
    history: timedelta = timedelta(days=30),
    warmup: timedelta = timedelta(days=1),
    batch_rows: int = BATCH_ROWS,
    database: CdrDatabase | None = None,
) -> Figures:
    """Read the CDRs (the files, or `database`'s table) once from `period.start - history` to
    `period.end` and count."""
    tz = period.tz
    window_start = period.utc_start - history
    replay_start = period.utc_start - warmup
    figs = Figures(period)
    if database is not None:
        rows = database.scan(cdr_options(settings), window_start, period.utc_end)
    else:
        rows = scan_cdrs(paths, cdr_options(settings), on_file_error=figs.unreadable.append)
    any_in_window = (pl.col("start") >= window_start) & (pl.col("start") < period.utc_end)
    in_window = pl.col("outbound") & any_in_window
    in_period = (pl.col("start") >= period.utc_start) & (pl.col("start") < period.utc_end)
    refused = pl.col("userfield").fill_null("").str.starts_with(REFUSED_MARK)
    wanted = rows.filter(
        pl.col("problem").is_not_null()
        | any_in_window  # every row counts for "this day has CDRs" (missing days are not 0)
        | (pl.col("replaced") > 0)
        | dials_local()  # to follow Local chains back to who sent a call out
    )
    kept: list[pl.DataFrame] = []
    dials: list[pl.DataFrame] = []
    closed_cache: dict[datetime, bool] = {}
    for batch in wanted.collect_batches(chunk_size=batch_rows):
        if batch.height == 0:
            continue
        good = pl.col("problem").is_null()
        local = local_dials(batch.filter(good))
        if local.height:
            dials.append(local)
        bad = batch.filter(~good)
        dirty = batch.filter(pl.col("replaced") > 0)
        if dirty.height:
            figs.replaced += int(dirty["replaced"].sum())
            _by_file(figs.replaced_by_file, dirty, "replaced")
        if bad.height:
            figs.malformed += bad.height
            _by_file(figs.malformed_by_file, bad)
            room = MAX_PROBLEMS - len(figs.problems)
            if room > 0:
                figs.problems.extend(bad.head(room).select("origin", "problem").iter_rows())
        _fold_cdr_days(figs, batch.filter(good & any_in_window), tz)
        _fold_refused(figs, batch.filter(good & in_period & refused))
        ok = batch.filter(good & in_window)
        if ok.height == 0:
            continue
        if len(figs.numbers) < NUMBERS_SAMPLE:
            figs.numbers.update(ok.get_column("dialed").unique().drop_nulls()
                                .head(NUMBERS_SAMPLE - len(figs.numbers)).to_list())
        latest = ok.get_column("start").max()
        if isinstance(latest, datetime) and (figs.last_seen is None or latest > figs.last_seen):
            figs.last_seen = latest
        ok = classifier.classify_df(ok, "dialed")
        ok = _derive(ok, tz, period, calendar, closed_cache)
        _fold_daily(figs, ok)
        _fold_period(figs, ok.filter(pl.col("_in")))
        rel = ok.filter(pl.col("_relevant"))
        if rel.height:
            early = rel.filter(pl.col("start") < replay_start)
            if early.height:
                _fold_prior(figs, early)
            late = rel.filter(pl.col("start") >= replay_start)
            if late.height:
                kept.append(late.select(*KEEP_COLUMNS, "channel"))
            first = rel["start"].min()
            if isinstance(first, datetime) and (
                figs.history_start is None or first < figs.history_start
            ):
                figs.history_start = first
        first_call = ok["start"].min()
        if isinstance(first_call, datetime) and (
            figs.first_seen is None or first_call < figs.first_seen
        ):
            figs.first_seen = first_call
    relevant = pl.concat(kept) if kept else None
    if relevant is not None and dials:
        relevant = resolve_local_chains(relevant, pl.concat(dials), cdr_options(settings))
    figs.relevant = relevant.select(KEEP_COLUMNS) if relevant is not None else None
    return figs


def _derive(
    ok: pl.DataFrame,
    tz: Any,
    period: Period,
    calendar: BusinessCalendar,
    cache: dict[datetime, bool],
) -> pl.DataFrame:
    local = pl.col("start").dt.convert_time_zone(str(tz))
    intl = pl.col("dest_class") == "international"
    risky = pl.col("high_risk").fill_null(False)
    kind = (
        pl.when(risky)
        .then(pl.lit("high-risk"))
        .when(intl)
        .then(pl.lit("international"))
        .when(pl.col("dest_class") == "domestic")
        .then(pl.lit("domestic"))
        .otherwise(pl.lit("other"))
    )
    billsec = pl.col("billsec").fill_null(0).clip(lower_bound=0)
    ok = ok.with_columns(
        local.dt.date().alias("_date"),
        local.dt.hour().alias("_hour"),
        kind.alias("_kind"),
        intl.alias("_intl"),
        risky.alias("_risky"),
        (intl | risky).alias("_relevant"),
        pl.col("answer").is_not_null().alias("_answered"),
        (billsec / 60.0).alias("_minutes"),
        (pl.col("rate") * billsec / 60.0).alias("_spend"),
        ((pl.col("start") >= period.utc_start) & (pl.col("start") < period.utc_end)).alias("_in"),
        pl.col("start").dt.truncate("1m").alias("_minute"),
    )
    # Off hours: the calendar decides per start minute, only for international calls.
    minutes = ok.filter(pl.col("_intl")).get_column("_minute").unique().to_list()
    for m in minutes:
        if m not in cache:
            cache[m] = calendar.closed_reason(m) is not None
    closed = [m for m in minutes if cache[m]]
    return ok.with_columns(
        (pl.col("_intl") & pl.col("_minute").is_in(closed)).alias("_offhours")
    )


_DAILY = (
    pl.len().alias("calls"),
    pl.col("_answered").sum().alias("answered"),
    pl.col("_intl").sum().alias("international"),
    pl.col("_risky").sum().alias("high_risk"),
    pl.col("_offhours").sum().alias("off_hours_international"),
    pl.col("_minutes").sum().alias("minutes"),
    pl.col("_spend").fill_null(0.0).sum().alias("spend"),
    pl.col("_spend").is_not_null().sum().alias("rated_calls"),
)


def _totals(row: dict[str, Any]) -> Totals:
    return Totals(**{k: row[k] or 0 for k in asdict(Totals())})


def _fold_daily(figs: Figures, ok: pl.DataFrame) -> None:
    for row in ok.group_by("_date").agg(*_DAILY).iter_rows(named=True):
        figs.daily.setdefault(row["_date"], Totals()).add(_totals(row))
    before = ok.filter(pl.col("_relevant") & ~pl.col("_in") & pl.col("region").is_not_null())
    figs.earlier_regions.update(before.get_column("region").unique().to_list())


def _fold_period(figs: Figures, day: pl.DataFrame) -> None:
    if day.height == 0:
        return
    row = day.select(*_DAILY).row(0, named=True)
    figs.totals.add(_totals(row))
    for hour, kind, n in day.group_by("_hour", "_kind").len().iter_rows():
        figs.hourly[(hour, kind)] = figs.hourly.get((hour, kind), 0) + n
    dest = day.filter(pl.col("_relevant") & pl.col("region").is_not_null())
    for r in (
        dest.group_by("region")
        .agg(
            pl.col("region_name").first(),
            pl.col("calling_code").first(),
            pl.len().alias("calls"),
            pl.col("_answered").sum().alias("answered"),
            pl.col("_minutes").sum().alias("minutes"),
            pl.col("_spend").fill_null(0.0).sum().alias("spend"),
            pl.col("_risky").sum().alias("high_risk"),
        )
        .iter_rows(named=True)
    ):
        c = figs.countries.get(r["region"])
        if c is None:
            c = figs.countries[r["region"]] = Country(
                r["region"], r["region_name"] or r["region"], r["calling_code"] or ""
            )
        c.calls += r["calls"]
        c.answered += r["answered"]
        c.minutes += r["minutes"] or 0.0
        c.spend += r["spend"] or 0.0
        c.high_risk += r["high_risk"]
    for r in (
        day.group_by("source")
        .agg(
            pl.len().alias("calls"),
            pl.col("_intl").sum().alias("international"),
            pl.col("_risky").sum().alias("high_risk"),
            pl.col("_minutes").sum().alias("minutes"),
            pl.col("_spend").fill_null(0.0).sum().alias("spend"),
        )
        .iter_rows(named=True)
    ):
        name = r["source"] or "?"
        s = figs.sources.get(name)
        if s is None:
            s = figs.sources[name] = Source(name)
        s.calls += r["calls"]
        s.international += r["international"]
        s.high_risk += r["high_risk"]
        s.minutes += r["minutes"] or 0.0
        s.spend += r["spend"] or 0.0


def _fold_prior(figs: Figures, early: pl.DataFrame) -> None:
    last = early.filter(pl.col("region").is_not_null()).group_by("region").agg(
        pl.col("start").max()
    )
    for region, when in last.iter_rows():
        prev = figs.prior_last_seen.get(region)
        if prev is None or when > prev:
            figs.prior_last_seen[region] = when


def _fold_refused(figs: Figures, rows: pl.DataFrame) -> None:
    """Calls the dialplan snippet refused because of a tollwatch block (CDR userfield
    `tollwatch-blocked:<block>`): attempts the block stopped."""
    if rows.height == 0:
        return
    for source, n in rows.group_by(pl.col("source").fill_null("?")).len().iter_rows():
        figs.refused[source] = figs.refused.get(source, 0) + int(n)
    hit = pl.col("userfield").str.slice(len(REFUSED_MARK)).alias("hit")
    for block, n in rows.group_by(hit).len().iter_rows():
        figs.refused_by_block[block] = figs.refused_by_block.get(block, 0) + int(n)


def _fold_cdr_days(figs: Figures, rows: pl.DataFrame, tz: Any) -> None:
    if rows.height == 0:
        return
    days = rows.group_by(pl.col("start").dt.convert_time_zone(str(tz)).dt.date().alias("d")).len()
    for day, n in days.iter_rows():
        figs.cdr_days[day] = figs.cdr_days.get(day, 0) + int(n)


def _by_file(counts: dict[str, int], frame: pl.DataFrame, column: str | None = None) -> None:
    """Add each file's rows (or sum of `column`) of frame to counts."""
    value = pl.col(column).sum() if column else pl.len()
    files = frame.group_by(pl.col("origin").str.replace(r":[0-9]+$", "").alias("f")).agg(value)
    for name, n in files.iter_rows():
        counts[name] = counts.get(name, 0) + int(n)

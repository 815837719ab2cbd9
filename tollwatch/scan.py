"""`tollwatch scan`: CDR files in, incidents out, in one streaming pass.

The CDR rows stream through polars (read, pick outbound legs, classify destinations); per batch
we count by class, keep malformed-row reports and the few calls rules look at (international or
high-risk), and afterwards the incremental engine replays those calls on event time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from cdr_ingest import scan_cdrs
from config import Settings
from rules.batch import CALL_COLUMNS, run_frame
from rules.destinations import Classifier
from rules.engine import Engine
from rules.incidents import Incident
from rules.validity import SAMPLE, Validity, check_numbers
from tollwatch.settings import cdr_options, rule_specs

MAX_PROBLEMS = 1000

Progress = Callable[[str, int], None]  # (file, rows read so far in it)


@dataclass
class ScanStats:
    rows: int = 0
    skipped: int = 0
    outbound: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file:line, reason)
    seconds: float = 0.0
    calls_scored: int = 0
    numbers: set[str] = field(default_factory=set, repr=False)  # distinct dialed, a sample


@dataclass
class ScanResult:
    incidents: list[Incident]
    stats: ScanStats
    validity: Validity = field(default_factory=Validity)


def _line_of(origin: str) -> tuple[str, int]:
    path, _, line = origin.rpartition(":")
    return path, int(line) if line.isdigit() else 0


def run_scan(
    paths: Sequence[Path],
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> ScanResult:
    started = time.perf_counter()
    classifier = Classifier(settings)
    rows = scan_cdrs(paths, cdr_options(settings))
    good = pl.col("problem").is_null()
    window = pl.lit(True)
    if since is not None:
        window = window & (pl.col("start") >= since)
    if until is not None:
        window = window & (pl.col("start") < until)
    wanted = rows.filter(pl.col("problem").is_not_null() | (pl.col("outbound") & window))
    stats = ScanStats()
    classify = classifier.batches()
    relevant: list[pl.DataFrame] = []
    for batch in wanted.collect_batches(chunk_size=200_000):
        if batch.height == 0:
            continue
        bad = batch.filter(~good)
        if bad.height:
            stats.skipped += bad.height
            room = MAX_PROBLEMS - len(stats.problems)
            if room > 0:
                stats.problems.extend(bad.head(room).select("origin", "problem").iter_rows())
        ok = classify(batch.filter(good))
        stats.outbound += ok.height
        if len(stats.numbers) < SAMPLE:
            room = SAMPLE - len(stats.numbers)
            stats.numbers.update(ok.get_column("dst").unique().drop_nulls().head(room).to_list())
        for cls, n in ok.group_by("dest_class").len().iter_rows():
            stats.by_class[cls] = stats.by_class.get(cls, 0) + n
        keep = ok.filter((pl.col("dest_class") == "international") | pl.col("high_risk"))
        if keep.height:
            relevant.append(keep.select(CALL_COLUMNS))
        if progress is not None:
            progress(*_line_of(batch["origin"][-1]))
    stats.rows = _count_rows(rows)
    frame = pl.concat(relevant) if relevant else pl.DataFrame()
    stats.calls_scored = frame.height
    engine = Engine.from_settings(settings, rule_specs(settings))
    incidents = (
        run_frame(engine, frame, classifier, settings.allowlist.sources) if frame.height else []
    )
    incidents = sort_incidents(incidents)
    validity = check_numbers(settings, sorted(stats.numbers), classifier=classifier)
    stats.seconds = time.perf_counter() - started
    return ScanResult(incidents, stats, validity)


def sort_incidents(incidents: Sequence[Incident]) -> list[Incident]:
    """Most severe first, then by the time of the first call."""
    return sorted(incidents, key=lambda i: (-int(i.severity), i.first_call_at, i.id))


def _count_rows(rows: pl.LazyFrame) -> int:
    """Rows in all files: the streaming pass only returns outbound and bad rows, so count."""
    counted = rows.select(pl.len()).collect(engine="streaming")
    return int(counted.item())

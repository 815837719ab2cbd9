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

from cdr_ingest import dials_local, local_dials, resolve_local_chains, scan_cdrs
from config import Settings
from rules.batch import CALL_COLUMNS, run_frame
from rules.destinations import Classifier
from rules.engine import Engine
from rules.incidents import Incident
from tollwatch.settings import cdr_options, rule_specs

MAX_PROBLEMS = 1000

Progress = Callable[[str, int], None]  # (file, rows read so far in it)
Problems = Callable[[list[tuple[str, str]]], None]  # every bad row: (file:line, reason)


@dataclass
class ScanStats:
    rows: int = 0
    skipped: int = 0
    outbound: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file:line, reason)
    file_problems: list[str] = field(default_factory=list)  # "path: why it was not (all) read"
    seconds: float = 0.0
    calls_scored: int = 0


@dataclass
class ScanResult:
    incidents: list[Incident]
    stats: ScanStats


def _line_of(origin: str) -> tuple[str, int]:
    path, _, line = origin.rpartition(":")
    return path, int(line) if line.isdigit() else 0


def run_scan(
    paths: Sequence[Path],
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
    problems: Problems | None = None,
) -> ScanResult:
    started = time.perf_counter()
    classifier = Classifier(settings)
    stats = ScanStats()
    rows = scan_cdrs(paths, cdr_options(settings), on_file_error=stats.file_problems.append)
    good = pl.col("problem").is_null()
    window = pl.lit(True)
    if since is not None:
        window = window & (pl.col("start") >= since)
    if until is not None:
        window = window & (pl.col("start") < until)
    # Also the rows that dial Local channels: Local chains are followed back to their start.
    wanted = rows.filter(
        pl.col("problem").is_not_null() | (pl.col("outbound") & window) | dials_local()
    )
    classify = classifier.batches()
    relevant: list[pl.DataFrame] = []
    dials: list[pl.DataFrame] = []
    for batch in wanted.collect_batches(chunk_size=200_000):
        if batch.height == 0:
            continue
        last_origin = batch["origin"][-1]
        local = batch.filter(good & dials_local())
        if local.height:
            dials.append(local_dials(local))
            batch = batch.filter(~good | ~dials_local())
        bad = batch.filter(~good)
        if bad.height:
            stats.skipped += bad.height
            if problems is not None:
                problems(list(bad.select("origin", "problem").iter_rows()))
            room = MAX_PROBLEMS - len(stats.problems)
            if room > 0:
                stats.problems.extend(bad.head(room).select("origin", "problem").iter_rows())
        ok = classify(batch.filter(good))
        stats.outbound += ok.height
        for cls, n in ok.group_by("dest_class").len().iter_rows():
            stats.by_class[cls] = stats.by_class.get(cls, 0) + n
        keep = ok.filter((pl.col("dest_class") == "international") | pl.col("high_risk"))
        if keep.height:
            relevant.append(keep.select(*CALL_COLUMNS, "channel", "lastdata"))
        if progress is not None:
            progress(*_line_of(last_origin))
    stats.rows = _count_rows(rows)
    frame = pl.concat(relevant) if relevant else pl.DataFrame()
    if frame.height:
        if dials:
            frame = resolve_local_chains(frame, pl.concat(dials), cdr_options(settings))
        frame = frame.select(CALL_COLUMNS)
    stats.calls_scored = frame.height
    engine = Engine.from_settings(settings, rule_specs(settings))
    incidents = (
        run_frame(engine, frame, classifier, settings.allowlist.sources) if frame.height else []
    )
    stats.seconds = time.perf_counter() - started
    return ScanResult(incidents, stats)


def _count_rows(rows: pl.LazyFrame) -> int:
    """Rows in all files: the streaming pass only returns outbound and bad rows, so count."""
    counted = rows.select(pl.len()).collect(engine="streaming")
    return int(counted.item())

"""`tollwatch scan`: CDR files in, incidents out, in one streaming pass.

The CDR rows stream through polars (read, pick outbound legs, classify destinations); per batch
we count by class, keep malformed-row reports and the few calls rules look at (international or
high-risk), and afterwards the incremental engine replays those calls on event time.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from tollwatch.alerting.textsafe import clip
from tollwatch.background import in_background
from tollwatch.cdr_ingest import dials_local, local_dials, scan_chunks
from tollwatch.cdr_ingest.database import CdrDatabase
from tollwatch.cdr_ingest.live.follow_rows import REFUSED_MARK
from tollwatch.config import Settings
from tollwatch.rules.baseline import Baseline
from tollwatch.rules.batch import CALL_COLUMNS, run_frame
from tollwatch.rules.destinations import BatchClassifier, Classifier
from tollwatch.rules.engine import Engine
from tollwatch.rules.incidents import PBX, Incident
from tollwatch.rules.validity import SAMPLE, EarlyCheck, Validity
from tollwatch.scan_kept import Kept, pack
from tollwatch.settings import cdr_options, rule_specs

MAX_PROBLEMS = 1000
# What the scan loop reads of each row (without a `calls` callback, which gets every column).
_LOOP_COLUMNS = (
    "origin", "problem", "replaced", "trunk_basis", "outbound", "trunk", "dstchannel",
    "lastdata", "userfield", "start", "source", "channel", "dcontext", "dst", "dialed",
    "call_id", "account", "answer", "end", "linkedid",
)  # fmt: skip

Progress = Callable[[str, int], None]  # (file, rows read so far in it)
Problems = Callable[[list[tuple[str, str]]], None]  # every bad row: (file:line, reason)
Calls = Callable[[pl.DataFrame], None]  # every batch of classified outbound calls


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
    skipped_by_file: dict[str, int] = field(default_factory=dict)
    replaced: int = 0  # bytes that were not UTF-8 (or NUL), replaced by U+FFFD; rows kept
    replaced_rows: int = 0
    replaced_by_file: dict[str, int] = field(default_factory=dict)
    # How phones and trunks were told apart where nothing was configured, one line each.
    notes: list[str] = field(default_factory=list)
    numbers: set[str] = field(default_factory=set, repr=False)  # distinct dialed, a sample


@dataclass
class ScanResult:
    incidents: list[Incident]
    stats: ScanStats
    baseline: Baseline | None = None  # what the site's baseline holds after the scan
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
    problems: Problems | None = None,
    calls: Calls | None = None,
    baseline: Baseline | None = None,
    rules: bool = True,
    database: CdrDatabase | None = None,
) -> ScanResult:
    """Score the files. `baseline`: what the site learned before (else it is learned as the
    calls go by, each call scored against the days before it); `rules=False` only learns.
    With `database`, the rows of that table in [since, until) instead of files."""
    with collector_aside():
        return _run_scan(
            paths, settings, since, until, progress, problems, calls, baseline, rules, database
        )


@contextmanager
def collector_aside() -> Iterator[None]:
    """Python's cyclic garbage collector off meanwhile; what was made is then handed to the
    oldest generation without being walked (`gc.freeze()` then `gc.unfreeze()`, O(1)).

    The scan makes next to no cyclic garbage, but millions of objects (the replay's calls,
    the baseline's tables): each automatic collection walked them, and the first young
    collection after the replay (which turns the collector off for itself) walked everything
    it made: 0.23 of 0.34 CPU s of collections on dense 1M (load ~5). In a process that
    froze objects itself (the daemon's `collector`), what the scan made joins its frozen set
    (freed by reference counting as usual) until that process unfreezes it."""
    was_enabled = gc.isenabled()
    was_frozen = gc.get_freeze_count() > 0
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if not was_frozen:
            gc.unfreeze()
        if was_enabled:
            gc.enable()


def _run_scan(
    paths: Sequence[Path],
    settings: Settings,
    since: datetime | None,
    until: datetime | None,
    progress: Progress | None,
    problems: Problems | None,
    calls: Calls | None,
    baseline: Baseline | None,
    rules: bool,
    database: CdrDatabase | None,
) -> ScanResult:
    started = time.perf_counter()
    classifier = Classifier(settings)
    stats = ScanStats()
    window = pl.lit(True)
    if since is not None:
        window = window & (pl.col("start") >= _utc(since))
    if until is not None:
        window = window & (pl.col("start") < _utc(until))
    specs = rule_specs(settings) if rules else {}
    # The engine does not depend on the rows: it is made while polars reads them (the holidays
    # package alone takes ~70 ms to import its countries)
    made = in_background(
        lambda: Engine.from_settings(settings, specs, baseline), "tollwatch-engine"
    )
    loop = _Loop(stats, classifier.batches("dialed"), window, problems, calls)
    early = loop.sampled = EarlyCheck(settings, SAMPLE)
    columns = _LOOP_COLUMNS if calls is None else None  # what the loop reads (calls: all)
    options = cdr_options(settings)
    if database is not None:  # a query at a time, as the loop takes them: no backlog
        chunks = database.chunks(options, since, until, loop.wanted())
    else:
        chunks = scan_chunks(paths, options, stats.file_problems.append, loop.wanted())
    loop.read(chunks, columns, progress)
    stats.notes = loop.legs.notes()
    kept = Kept(loop.relevant, loop.dials, options)  # the loop's parts are handed over
    stats.calls_scored = kept.height
    engine = made.result()
    incidents = (
        run_frame(engine, kept, classifier, settings.allowlist.sources) if kept.height else []
    )
    del kept
    count_refused(incidents, loop.refused, settings.incidents.gap)
    incidents = sort_incidents(incidents)
    validity = early.result(stats.numbers, classifier)
    stats.seconds = time.perf_counter() - started
    return ScanResult(incidents, stats, engine.baseline, validity)


# Wanted rows the loop below takes at a time: with 100k (from 200k) its peak RSS is ~50-60 MB
# lower (dense 1M: 643 -> 591 MB with chunks of 100k rows, 5M: 765 -> 702), CPU the same.
BATCH_ROWS = 100_000


class _Loop:
    """What run_scan does with each batch of wanted rows (counts, problems, the legs rules
    look at), in file order."""

    def __init__(
        self,
        stats: ScanStats,
        classify: BatchClassifier,
        window: pl.Expr,
        problems: Problems | None,
        calls: Calls | None,
    ) -> None:
        self.stats = stats
        self.classify = classify
        self.outbound = pl.col("outbound") & window
        self.refused_row = pl.col("userfield").fill_null("").str.starts_with(REFUSED_MARK) & window
        self.problems = problems
        self.calls = calls
        self.relevant: list[bytes] = []  # pack()ed
        self.refused: list[tuple[str, datetime]] = []  # (source, start) of calls a block refused
        self.dials: list[bytes] = []  # pack()ed
        self.legs = _Legs()
        self.sampled: EarlyCheck | None = None  # told of stats.numbers as it fills

    def wanted(self) -> pl.Expr:
        """The rows the loop looks at (a `scan_chunks` filter)."""
        return (
            pl.col("problem").is_not_null()
            | self.outbound
            | self.refused_row
            | (pl.col("replaced") > 0)
            | (pl.col("trunk_basis") == "device")
            | dials_local()  # to follow Local chains back to who sent a call out
        )

    def read(
        self,
        chunks: Iterator[tuple[int, pl.LazyFrame]],
        columns: Sequence[str] | None,
        progress: Progress | None,
    ) -> None:
        """Take the wanted rows of the chunks (`scan_chunks(..., where=self.wanted())`),
        BATCH_ROWS at a time, one chunk in memory at a time whatever the input's size, and
        of them only `columns` when given; count the rows."""
        held: list[pl.DataFrame] = []  # wanted rows not taken yet
        for count, chunk in chunks:
            self.stats.rows += count
            held.append((chunk if columns is None else chunk.select(columns)).collect())
            if sum(df.height for df in held) >= BATCH_ROWS:
                self.take(pl.concat(held), progress)
                held = []
        if held:
            self.take(pl.concat(held), progress)

    def take(self, batch: pl.DataFrame, progress: Progress | None) -> None:
        if batch.height == 0:
            return
        stats = self.stats
        last = batch["origin"][-1]
        good = pl.col("problem").is_null()
        bad = batch.lazy().filter(~good).select("origin", "problem").collect()
        if bad.height:
            stats.skipped += bad.height
            _by_file(stats.skipped_by_file, bad)
            if self.problems is not None:
                self.problems(list(bad.iter_rows()))
            room = MAX_PROBLEMS - len(stats.problems)
            if room > 0:
                stats.problems.extend(bad.head(room).iter_rows())
        dirty = batch.lazy().filter(pl.col("replaced") > 0).select("origin", "replaced").collect()
        if dirty.height:
            stats.replaced += int(dirty["replaced"].sum())
            stats.replaced_rows += dirty.height
            _by_file(stats.replaced_by_file, dirty, "replaced")
        if bad.height:
            batch = batch.filter(good)  # the rows below are the good ones
        self.legs.add(batch)
        stopped = batch.lazy().filter(self.refused_row & ~pl.col("outbound"))
        self.refused.extend(
            (src or "", at) for src, at in stopped.select("source", "start").collect().iter_rows()
        )
        local = local_dials(batch)
        if local.height:
            self.dials.append(pack(local))
        out = batch.filter(self.outbound)
        stats.outbound += out.height
        if out.height:
            keep = _classified(out, self.classify, stats, self.calls)
            if self.sampled is not None:
                self.sampled.offer(stats.numbers)
            if keep.height:
                self.relevant.append(pack(keep.select(*CALL_COLUMNS, "channel")))
        if progress is not None:
            progress(*_line_of(last))


def _classified(
    out: pl.DataFrame, classify: BatchClassifier, stats: ScanStats, calls: Calls | None
) -> pl.DataFrame:
    """Classify a batch's outbound legs: count them by class, sample their numbers, hand them
    to `calls`; return the ones rules look at (international or high-risk) with their
    destination columns. Each distinct number is classified once; only those legs (and
    `calls`) get the destination columns joined on, the counts join one narrow column."""
    classes = classify.distinct(out)
    if len(stats.numbers) < SAMPLE:
        room = SAMPLE - len(stats.numbers)
        first = out.get_column("dialed").drop_nulls().unique(maintain_order=True).head(room)
        stats.numbers.update(first.to_list())  # the first ones in file order: the same each run
    if calls is not None:
        calls(out.join(classes, on="dialed", how="left", nulls_equal=True))
    counted = out.select("dialed").join(
        classes.select("dialed", "dest_class"), on="dialed", how="left", nulls_equal=True
    )
    for cls, n in counted.group_by("dest_class").len().iter_rows():
        stats.by_class[cls] = stats.by_class.get(cls, 0) + n
    wanted = classes.filter((pl.col("dest_class") == "international") | pl.col("high_risk"))
    return out.join(wanted, on="dialed", how="inner", nulls_equal=True, maintain_order="left")


def sort_incidents(incidents: Sequence[Incident]) -> list[Incident]:
    """Most severe first, then by the time of the first call."""
    return sorted(incidents, key=lambda i: (-int(i.severity), i.first_call_at, i.id))


def count_refused(
    incidents: Sequence[Incident], refused: Sequence[tuple[str, datetime]], gap: timedelta
) -> None:
    """Attempts the dialplan refused (CDR userfield tollwatch-blocked:...) join the incident
    of their source (or the PBX-wide one) whose span, plus the incident gap, holds them."""
    for source, at in refused:
        for inc in incidents:
            if inc.source not in (source, PBX):
                continue
            if inc.first_call_at <= at <= inc.last_activity + gap:
                inc.refused += 1
                break


def _utc(when: datetime) -> datetime:
    """Call times are UTC: a bound in another zone compares as the same instant."""
    return when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _by_file(counts: dict[str, int], frame: pl.DataFrame, column: str | None = None) -> None:
    """Add each file's rows (or sum of `column`) of frame to counts."""
    value = pl.col(column).sum() if column else pl.len()
    where = pl.col("origin").str.replace(r":(?:[0-9]+|[A-Za-z_$][A-Za-z0-9_$]*=.*)$", "")
    files = frame.group_by(where.alias("f")).agg(value)
    for name, n in files.iter_rows():
        counts[name] = counts.get(name, 0) + int(n)


class _Legs:
    """Which channels the scan took for trunks or phones without configuration, and why."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], str] = {}  # (basis, TECH/endpoint) -> example Dial

    def add(self, frame: pl.DataFrame) -> None:
        basis = pl.col("trunk_basis")
        columns = ("trunk_basis", "outbound", "trunk", "dstchannel", "lastdata")
        picked = frame.select(columns).filter(basis.is_in(["number", "name", "device"]))
        if picked.height == 0:
            return
        # one row per (basis, trunk endpoint or dialed channel) first, then names: cheap
        key = pl.when(pl.col("outbound")).then(pl.col("trunk")).otherwise(pl.col("dstchannel"))
        # in file order: which names fill the 200 noted is the same on every run
        firsts = picked.group_by(basis.alias("b"), key.alias("k"), maintain_order=True).agg(
            pl.col("outbound").first(), pl.col("dstchannel").first(), pl.col("lastdata").first()
        )
        has_dest = pl.col("dstchannel") != ""
        dest = pl.when(has_dest).then(pl.col("dstchannel")).otherwise(pl.col("lastdata"))
        trunk = pl.concat_str(dest.str.extract(r"^([^/]+/)", 1), pl.col("k"))
        bare = dest.str.extract(r"^([^/]+/[^-;,@/&]*)", 1)
        named = firsts.select(
            "b", pl.when(pl.col("outbound")).then(trunk).otherwise(bare).alias("n"), "lastdata"
        )
        for b, n, example in named.iter_rows():
            if n and len(self.seen) < 200:
                self.seen.setdefault((b, n), example or "")

    def notes(self) -> list[str]:
        out = []
        for (basis, name), example in sorted(self.seen.items()):
            if basis == "number":
                out.append(f"treated {clip(name)} as a trunk because numbers were dialed through "
                           f"it (Dial {clip(example)}); set [outbound] trunks to be "
                           "sure")  # fmt: skip
            elif basis == "name":
                out.append(f"treated {clip(name)} as a trunk because its name is not an extension "
                           "number (no Dial showed a number sent to it); set [outbound] trunks "
                           "to be sure")  # fmt: skip
            else:
                out.append(f"treated {clip(name)} as a phone, not a trunk, because it was dialed "
                           f"without a number (Dial {clip(example)}); set [outbound] phones to be "
                           "sure")  # fmt: skip
        return out

"""Fleet scans: every PBX's CDR files scanned as one task, on Dask distributed or in-process.

Each task is `scan_pbx`: the single-PBX `run_scan` on that PBX's effective settings, so a
fleet scan finds exactly what scanning each PBX alone finds. Tasks run on a `LocalCluster`
(worker processes) by default, on an existing cluster given its scheduler address, or one after
another in this process (`workers=0`). A PBX whose task fails is reported with its error; the
others complete.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from tollwatch.cdr_ingest import release_temp_files
from tollwatch.config import Settings
from tollwatch.config.fleet import Fleet
from tollwatch.fleet_exec import PbxError, run_tasks, worker_name
from tollwatch.fleet_parquet import ParquetSink
from tollwatch.rules.baseline_io import BaselineError, load_file
from tollwatch.rules.incidents import Incident, Severity
from tollwatch.scan import ScanStats, run_scan


@dataclass
class PbxScan:
    """What one PBX's task returns."""

    pbx: str
    timezone: str
    incidents: list[Incident]
    stats: ScanStats
    worker: str = ""

    @property
    def critical(self) -> bool:
        return any(i.severity == Severity.CRITICAL for i in self.incidents)


@dataclass
class FleetResult:
    scans: dict[str, PbxScan] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # pbx -> one-line error
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(s.stats.rows for s in self.scans.values())

    @property
    def critical(self) -> bool:
        return any(s.critical for s in self.scans.values())

    @property
    def problems(self) -> bool:
        """A PBX failed, or a file of a PBX could not be (all) read."""
        return bool(self.failed) or any(s.stats.file_problems for s in self.scans.values())

    def exit_code(self) -> int:
        return 1 if self.critical else 2 if self.problems else 0


@dataclass
class Progress:
    """One progress event: a PBX finished (scan or error), or a heartbeat (pbx None)."""

    done: int
    total: int
    rows: int  # rows read by the finished PBXes
    elapsed: float
    pbx: str | None = None
    scan: PbxScan | None = None
    error: str | None = None
    running: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0


OnProgress = Callable[[Progress], None]


def expand_files(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Glob patterns (`Master.csv*`) expanded, sorted; a pattern matching nothing is a problem."""
    files: list[Path] = []
    problems: list[str] = []
    for path in paths:
        text = str(path)
        if glob.has_magic(text):
            found = sorted(glob.glob(text))
            if not found:
                problems.append(f"{text}: no file matches")
            files.extend(Path(f) for f in found)
        else:
            files.append(path)
    return files, problems


def _bound(when: datetime | None, zone: str) -> datetime | None:
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=ZoneInfo(zone))


def scan_pbx(
    pbx: str,
    settings: Settings,
    since: datetime | None = None,
    until: datetime | None = None,
    parquet: Path | None = None,
) -> PbxScan:
    """Scan one PBX exactly as `tollwatch scan` would: its `[cdr] files` (globs expanded), or
    its `[cdr] database` table when it has no files; its learned `[baseline] file` if set.

    `since`/`until` without a UTC offset are in this PBX's time zone. `parquet`: write its
    classified outbound calls under DIR/pbx=<pbx>/day=<YYYY-MM-DD>/ (replacing earlier ones).
    Raises PbxError when nothing could be read at all.
    """
    zone = settings.site.timezone
    files, missing = expand_files(list(settings.cdr.files))
    database = None
    if not settings.cdr.files and settings.cdr.database:
        from tollwatch.dbsource import settings_database

        database = settings_database(settings)  # the password: from this worker's env/file
    elif not files and not missing:
        raise PbxError("no CDR files ([cdr] files, or <pbx>/Master.csv* in a fleet directory)")
    sink = ParquetSink(parquet, pbx, zone) if parquet is not None else None
    baseline = None
    if settings.baseline.file is not None:  # this PBX's `tollwatch learn` file
        try:
            baseline = load_file(settings.baseline.file, settings)
        except BaselineError as exc:
            raise PbxError(str(exc)) from None
    try:
        result = run_scan(files, settings, _bound(since, zone), _bound(until, zone),
                          calls=sink.write if sink is not None else None, baseline=baseline,
                          database=database)
    finally:
        release_temp_files()  # decompressed .gz copies: a worker lives on after this task
    stats = result.stats
    stats.file_problems[:0] = missing
    if (database is None and stats.file_problems and not stats.rows
            and len(stats.file_problems) >= len(files)):
        raise PbxError("; ".join(stats.file_problems))
    return PbxScan(pbx, zone, result.incidents, stats, worker_name())


class _Tracker:
    """Collects task outcomes into the result and reports progress."""

    def __init__(self, total: int, progress: OnProgress | None) -> None:
        self.result = FleetResult()
        self.total = total
        self.rows = 0
        self.started = time.perf_counter()
        self.progress = progress

    def _report(self, pbx: str | None, scan: PbxScan | None, error: str | None,
                running: int) -> None:
        if self.progress is not None:
            done = len(self.result.scans) + len(self.result.failed)
            self.progress(Progress(done, self.total, self.rows,
                                   time.perf_counter() - self.started, pbx, scan, error, running))

    def finished(self, name: str, scan: PbxScan | None, error: str | None,
                 running: int = 0) -> None:
        """A PBX is done: its scan, or its error."""
        if scan is not None:
            self.result.scans[name] = scan
            self.rows += scan.stats.rows
        else:
            self.result.failed[name] = error or "failed"
        self._report(name, scan, error, running)

    def heartbeat(self, running: int) -> None:
        self._report(None, None, None, running)


def run_fleet(
    fleet: Fleet,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    parquet: Path | None = None,
    progress: OnProgress | None = None,
) -> FleetResult:
    """Scan every PBX of the fleet with valid settings; the others are reported as failed.

    `scheduler`: address of an existing Dask scheduler; else a LocalCluster of `workers`
    processes; `workers=0`: one PBX after another in this process, without Dask.
    """
    tracker = _Tracker(len(fleet.order), progress)
    for name, errors in fleet.errors.items():
        tracker.finished(name, None, "; ".join(errors))
    tasks = [(name, scan_pbx, (name, fleet.settings[name], since, until, parquet))
             for name in fleet.order if name in fleet.settings]
    run_tasks(tasks, tracker.finished, workers=workers, scheduler=scheduler,
              on_idle=tracker.heartbeat, label="tollwatch-scan")
    result = tracker.result
    result.seconds = time.perf_counter() - tracker.started
    return result

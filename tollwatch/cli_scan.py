"""`tollwatch scan`: score CDR files (or the [cdr] database table) for toll fraud. A plain
function, registered first by `tollwatch.cli` (`app.command()(scan)`)."""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from tollwatch import report_format
from tollwatch.alerting.textsafe import clip, markup
from tollwatch.cdr_ingest import IngestError, describe_layout
from tollwatch.cli_common import (
    AccessOpt,
    ConfigOpt,
    CountryOpt,
    FleetOpt,
    ParquetOpt,
    SchedulerOpt,
    TzOpt,
    WorkersOpt,
    err,
    fail,
    out,
    parse_time,
    settings_for,
    warn,
)
from tollwatch.config import Settings
from tollwatch.config.secrets import SecretError
from tollwatch.rules.baseline import Baseline
from tollwatch.rules.baseline_io import BaselineError, load_file
from tollwatch.rules.incidents import Severity
from tollwatch.scan import Problems, ScanResult, ScanStats, run_scan
from tollwatch.scan_problems import ProblemFile
from tollwatch.settings import cdr_options, overrides


class Format(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


def scan(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="CDR files: Master.csv, rotated, .gz.", readable=False),
    ] = None,
    db: Annotated[
        bool, typer.Option("--db", help="Read the [cdr] database table instead of files.")
    ] = False,
    config: ConfigOpt = None,
    country: CountryOpt = None,
    tz: TzOpt = None,
    access_code: AccessOpt = None,
    since: Annotated[str | None, typer.Option(help="Only calls from this time.")] = None,
    until: Annotated[str | None, typer.Option(help="Only calls before this time.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary on stderr.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say how each file was read (its layout).")
    ] = False,
    max_skipped: Annotated[
        str,
        typer.Option(
            "--max-skipped",
            help="Rows that cannot be read tolerated before exit 2: a count (5) or a share of "
            "the rows read (0.1%).",
        ),
    ] = "0",
    problems: Annotated[
        Path | None,
        typer.Option(
            "--problems",
            help="Write every skipped row (file:line, reason) to this "
            "CSV file; the summary lists only the first 20.",
            dir_okay=False,
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline",
            help="The site's baseline from `tollwatch learn` (default: "
            "[baseline] file; without one it is learned as the scan goes).",
            dir_okay=False,
        ),
    ] = None,
    fleet: FleetOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    parquet: ParquetOpt = None,
) -> None:
    """Score CDR files for toll fraud. Exit 0: nothing critical; 1: critical; 2: bad input
    (including rows that cannot be read, beyond --max-skipped)."""
    tolerance = _tolerance(max_skipped)
    if fleet is not None:
        from tollwatch import cli_fleet

        if files or problems or verbose:
            raise fail(
                [
                    "--fleet takes each PBX's files from its settings; --problems and "
                    "--verbose work on a single-PBX scan"
                ]
            )
        raise typer.Exit(
            cli_fleet.scan_command(
                fleet,
                config,
                overrides(country, tz, access_code),
                since,
                until,
                fmt.value,
                quiet,
                workers,
                scheduler,
                parquet,
                lambda stats: _too_many_skipped(stats, tolerance),
            )
        )
    if workers is not None or scheduler or parquet:
        raise fail(["--workers, --scheduler and --parquet go with --fleet"])
    if bool(files) == db:
        raise fail(
            [
                "give CDR files to scan, or --db to read the [cdr] database table (or "
                "--fleet FLEET.toml|DIR)"
            ]
        )
    settings = settings_for(config, country, tz, access_code)
    learned = _baseline(baseline or settings.baseline.file, settings)
    zone = ZoneInfo(settings.site.timezone)
    start, stop = parse_time(since, zone, "since"), parse_time(until, zone, "until")
    files = list(files or [])
    try:
        if verbose:
            for f in files:
                with contextlib.suppress(IngestError):  # reported after the scan if so
                    err.print(markup(describe_layout(f, cdr_options(settings))), soft_wrap=True)
        with ProblemFile(problems) as sink:
            if db:
                result = _scan_database(
                    settings, start, stop, verbose, sink.write if problems else None, learned
                )
            else:
                result = _scan_with_progress(
                    files,
                    settings,
                    start,
                    stop,
                    show=not quiet,
                    problems=sink.write if problems else None,
                    baseline=learned,
                )
    except (IngestError, SecretError) as exc:
        raise fail([str(exc)]) from None
    except OSError as exc:
        if problems is not None and exc.filename in (str(problems), problems):
            raise fail([f"{problems}: cannot write ({exc.strerror or exc})"]) from None
        raise fail([f"{exc.filename or 'scan'}: {exc.strerror or exc}"]) from None
    if files and len(result.stats.file_problems) >= len(files) and not result.stats.rows:
        raise fail(result.stats.file_problems)  # nothing could be read at all
    incidents = result.incidents
    try:
        if fmt is Format.table:
            report_format.print_table(out, incidents, zone)
        elif fmt is Format.json:
            sys.stdout.write(report_format.to_json(incidents, zone) + "\n")
        elif fmt is Format.jsonl:
            sys.stdout.write(report_format.to_jsonl(incidents, zone))
        else:
            sys.stdout.write(report_format.to_csv(incidents, zone))
        sys.stdout.flush()
    except BrokenPipeError:  # `scan | head`: the reader has what it wanted
        _stdout_gone()
    too_many = _too_many_skipped(result.stats, tolerance)
    if not quiet:
        _summary(result.stats, incidents_count=len(incidents), settings=settings)
    warning = result.validity.warning(settings)
    if warning:  # even with -q: the settings may hide fraud
        warn(warning)
    if too_many:  # even with -q: rows were not read
        err.print(f"[red]error:[/red] {result.stats.skipped} row(s) could not be read "
                  f"(tolerated: {markup(max_skipped)}); --max-skipped N or P% tolerates "
                  "known noise", soft_wrap=True)  # fmt: skip
    for line in result.stats.file_problems:  # even with -q: input was not (all) read
        err.print(f"[red]error:[/red] {markup(line)}", soft_wrap=True)
    if any(i.severity == Severity.CRITICAL for i in incidents):
        raise typer.Exit(1)
    if result.stats.file_problems or too_many:
        raise typer.Exit(2)


def _tolerance(text: str) -> tuple[float, bool]:
    """--max-skipped: (value, is a percentage)."""
    raw = text.strip()
    pct = raw.endswith("%")
    try:
        value = float(raw[:-1] if pct else raw)
    except ValueError:
        value = -1.0
    if value < 0 or (not pct and value != int(value)):
        raise fail([f"--max-skipped: {text!r} is not a row count like 5 or a share like 0.1%"])
    return value, pct


def _too_many_skipped(stats: ScanStats, tolerance: tuple[float, bool]) -> bool:
    value, pct = tolerance
    if pct:
        return stats.skipped > stats.rows * value / 100
    return stats.skipped > value


def _stdout_gone() -> None:
    """Point stdout at /dev/null so that nothing more (nor the exit flush) fails on it."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (a test runner's buffer)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _scan_with_progress(
    files: list[Path],
    settings: Settings,
    since: datetime | None,
    until: datetime | None,
    show: bool,
    problems: Problems | None = None,
    baseline: Baseline | None = None,
) -> ScanResult:
    total = sum(_size(f) for f in files)
    if not show or not err.is_terminal or total < 20_000_000:
        return run_scan(files, settings, since, until, problems=problems, baseline=baseline)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # a terminal

    sizes = {str(f): _size(f) for f in files}
    order = [str(f) for f in files]
    with Progress(
        TextColumn("[bold]scanning"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("scan", total=total)
        per_line = {name: _bytes_per_line(Path(name)) for name in order}

        def update(file: str, line: int) -> None:
            done = sum(sizes[n] for n in order[: order.index(file)]) if file in order else 0
            bar.update(task, completed=done + min(sizes.get(file, 0), line * per_line[file]))

        return run_scan(
            files, settings, since, until, progress=update, problems=problems, baseline=baseline
        )


def _baseline(path: Path | None, settings: Settings) -> Baseline | None:
    if path is None:
        return None
    try:
        return load_file(path, settings)
    except BaselineError as exc:
        raise fail([str(exc)]) from None


def _scan_database(
    settings: Settings,
    since: datetime | None,
    until: datetime | None,
    verbose: bool,
    problems: Problems | None,
    baseline: Baseline | None = None,
) -> ScanResult:
    from tollwatch.dbsource import settings_database

    database = settings_database(settings)
    if verbose:
        err.print(markup(database.describe(cdr_options(settings))), soft_wrap=True)
    return run_scan(
        [], settings, since, until, problems=problems, database=database, baseline=baseline
    )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _bytes_per_line(path: Path) -> float:
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return 200.0
    return len(head) / max(1, head.count(b"\n"))


def _summary(stats: ScanStats, incidents_count: int, settings: Settings) -> None:
    classes = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_class.items()))
    replaced = (
        f"{stats.replaced} byte(s) not UTF-8 replaced in {stats.replaced_rows} row(s), rows kept"
        if stats.replaced
        else "0 bytes replaced"
    )
    err.print(
        f"{stats.rows} rows read, {stats.skipped} skipped, {stats.outbound} outbound"
        f" calls ({classes or 'none'}), {stats.calls_scored} scored, {incidents_count}"
        f" incident(s) in {stats.seconds:.2f}s (times in {markup(settings.site.zone_label)});"
        f" {replaced}",
        soft_wrap=True,
    )
    for name, n in sorted(stats.skipped_by_file.items()):
        err.print(f"[yellow]skipped[/yellow] {n} row(s) in {markup(name)}", soft_wrap=True)
    for name, n in sorted(stats.replaced_by_file.items()):
        err.print(f"replaced {n} byte(s) that are not UTF-8 in {markup(name)}", soft_wrap=True)
    for origin, problem in stats.problems[:20]:  # whole in --problems FILE
        err.print(f"[yellow]skipped[/yellow] {markup(origin)}: {markup(clip(problem, 200))}",
                  soft_wrap=True)
    if stats.skipped > 20:
        err.print(
            f"... and {stats.skipped - 20} more skipped rows (all of them: --problems FILE)",
            soft_wrap=True,
        )
    for note in stats.notes[:10]:
        err.print(f"note: {markup(note)}", soft_wrap=True)

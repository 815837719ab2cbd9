"""The `tollwatch` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from alerting.textsafe import markup
from cdr_ingest import IngestError, describe_layout
from config import ConfigError, Settings, masked_dump
from config.fleet import is_fleet_file
from config.secrets import SecretError
from rules.baseline import Baseline
from rules.baseline_io import BaselineError, load_file
from rules.destinations import Classifier
from rules.incidents import Severity
from tollwatch import report_format, status_view
from tollwatch.cli_fleet import FleetOpt, ParquetOpt, SchedulerOpt, WorkersOpt
from tollwatch.scan import Problems, ScanResult, ScanStats, run_scan
from tollwatch.scan_problems import ProblemFile
from tollwatch.settings import cdr_options, load, overrides

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="PBX toll-fraud monitor for Asterisk.",
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Settings file (TOML).", dir_okay=False)
]
CountryOpt = Annotated[
    str | None, typer.Option("--country", help="Home country, ISO 3166 (JP, US, ...).")
]
TzOpt = Annotated[str | None, typer.Option("--tz", help="Site time zone (IANA).")]
AccessOpt = Annotated[
    list[str] | None,
    typer.Option("--access-code", help="Outside-line access code (repeatable), e.g. 0 or 9."),
]


class Format(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


def _fail(lines: list[str]) -> typer.Exit:
    for line in lines:
        err.print(f"[red]error:[/red] {markup(line)}", soft_wrap=True)
    return typer.Exit(2)


def _settings(
    config: Path | None, country: str | None, tz: str | None, access: list[str] | None
) -> Settings:
    try:
        return load(config, overrides(country, tz, access))
    except ConfigError as exc:
        prefix = f"{exc.source}: " if exc.source else ""
        raise _fail([prefix + e for e in exc.errors]) from None


def _parse_time(value: str | None, tz: ZoneInfo | None, name: str) -> datetime | None:
    """An ISO date or time; without an offset it is in `tz` (None: left naive)."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _fail([f"--{name}: {value!r} is not a date or time like 2026-11-24 or "
                     "2026-11-24T06:00"]) from None
    return when.replace(tzinfo=tz) if when.tzinfo is None and tz is not None else when


@app.command()
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
        typer.Option("--problems", help="Write every skipped row (file:line, reason) to this "
                     "CSV file; the summary lists only the first 20.", dir_okay=False),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="The site's baseline from `tollwatch learn` (default: "
                     "[baseline] file; without one it is learned as the scan goes).",
                     dir_okay=False),
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
            raise _fail(["--fleet takes each PBX's files from its settings; --problems and "
                         "--verbose work on a single-PBX scan"])
        raise typer.Exit(cli_fleet.scan_command(
            fleet, config, overrides(country, tz, access_code), since, until, fmt.value, quiet,
            workers, scheduler, parquet, lambda stats: _too_many_skipped(stats, tolerance)))
    if workers is not None or scheduler or parquet:
        raise _fail(["--workers, --scheduler and --parquet go with --fleet"])
    if bool(files) == db:
        raise _fail(["give CDR files to scan, or --db to read the [cdr] database table (or "
                     "--fleet FLEET.toml|DIR)"])
    settings = _settings(config, country, tz, access_code)
    learned = _baseline(baseline or settings.baseline.file, settings)
    zone = ZoneInfo(settings.site.timezone)
    start, stop = _parse_time(since, zone, "since"), _parse_time(until, zone, "until")
    files = list(files or [])
    try:
        if verbose:
            for f in files:
                with contextlib.suppress(IngestError):  # reported after the scan if so
                    err.print(markup(describe_layout(f, cdr_options(settings))), soft_wrap=True)
        with ProblemFile(problems) as sink:
            if db:
                result = _scan_database(settings, start, stop, verbose,
                                        sink.write if problems else None, learned)
            else:
                result = _scan_with_progress(files, settings, start, stop, show=not quiet,
                                             problems=sink.write if problems else None,
                                             baseline=learned)
    except (IngestError, SecretError) as exc:
        raise _fail([str(exc)]) from None
    except OSError as exc:
        raise _fail([f"{problems}: cannot write ({exc.strerror or exc})"]) from None
    if files and len(result.stats.file_problems) >= len(files) and not result.stats.rows:
        raise _fail(result.stats.file_problems)  # nothing could be read at all
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
        _summary(result.stats, incidents_count=len(incidents))
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
        raise _fail([f"--max-skipped: {text!r} is not a row count like 5 or a share like 0.1%"])
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
    files: list[Path], settings: Settings, since: datetime | None, until: datetime | None,
    show: bool, problems: Problems | None = None, baseline: Baseline | None = None,
) -> ScanResult:
    total = sum(_size(f) for f in files)
    if not show or not err.is_terminal or total < 20_000_000:
        return run_scan(files, settings, since, until, problems=problems, baseline=baseline)
    sizes = {str(f): _size(f) for f in files}
    order = [str(f) for f in files]
    with Progress(
        TextColumn("[bold]scanning"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(), console=err, transient=True,
    ) as bar:
        task = bar.add_task("scan", total=total)
        per_line = {name: _bytes_per_line(Path(name)) for name in order}

        def update(file: str, line: int) -> None:
            done = sum(sizes[n] for n in order[: order.index(file)]) if file in order else 0
            bar.update(task, completed=done + min(sizes.get(file, 0), line * per_line[file]))

        return run_scan(files, settings, since, until, progress=update, problems=problems,
                        baseline=baseline)


def _baseline(path: Path | None, settings: Settings) -> Baseline | None:
    if path is None:
        return None
    try:
        return load_file(path, settings)
    except BaselineError as exc:
        raise _fail([str(exc)]) from None


def _scan_database(
    settings: Settings, since: datetime | None, until: datetime | None, verbose: bool,
    problems: Problems | None, baseline: Baseline | None = None,
) -> ScanResult:
    from tollwatch.dbsource import settings_database

    database = settings_database(settings)
    if verbose:
        err.print(markup(database.describe(cdr_options(settings))), soft_wrap=True)
    return run_scan([], settings, since, until, problems=problems, database=database,
                    baseline=baseline)


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


def _summary(stats: ScanStats, incidents_count: int) -> None:
    classes = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_class.items()))
    replaced = (
        f"{stats.replaced} byte(s) not UTF-8 replaced in {stats.replaced_rows} row(s), rows kept"
        if stats.replaced
        else "0 bytes replaced"
    )
    err.print(
        f"{stats.rows} rows read, {stats.skipped} skipped, {stats.outbound} outbound"
        f" calls ({classes or 'none'}), {stats.calls_scored} scored, {incidents_count}"
        f" incident(s) in {stats.seconds:.2f}s; {replaced}",
        soft_wrap=True,
    )
    for name, n in sorted(stats.skipped_by_file.items()):
        err.print(f"[yellow]skipped[/yellow] {n} row(s) in {markup(name)}", soft_wrap=True)
    for name, n in sorted(stats.replaced_by_file.items()):
        err.print(f"replaced {n} byte(s) that are not UTF-8 in {markup(name)}", soft_wrap=True)
    for origin, problem in stats.problems[:20]:
        err.print(f"[yellow]skipped[/yellow] {markup(origin)}: {markup(problem)}", soft_wrap=True)
    if stats.skipped > 20:
        err.print(f"... and {stats.skipped - 20} more skipped rows (all of them: --problems FILE)",
                  soft_wrap=True)
    for note in stats.notes[:10]:
        err.print(f"note: {markup(note)}", soft_wrap=True)


@app.command()
def classify(
    numbers: Annotated[list[str], typer.Argument(help="Numbers as dialed.")],
    config: ConfigOpt = None,
    country: CountryOpt = None,
    tz: TzOpt = None,
    access_code: AccessOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines output.")] = False,
) -> None:
    """Show where each dialed number goes under the site's dial plan."""
    settings = _settings(config, country, tz, access_code)
    classifier = Classifier(settings)
    for number in numbers:
        d = classifier.classify(number)
        if as_json:
            sys.stdout.write(json.dumps(d.__dict__, ensure_ascii=False) + "\n")
            continue
        where = f"{d.region_name} ({d.region}, +{d.calling_code})" if d.region else "-"
        risk = f"HIGH RISK ({d.risk_prefix})" if d.high_risk else (
            "allowlisted" if d.allowlisted else "")
        line = f"{number:>20}  {d.dest_class:<13} {d.e164 or '-':<18} {where}  {risk}"
        sys.stdout.write(line.rstrip() + "\n")


@app.command("check-config")
def check_config(
    file: Annotated[
        Path | None, typer.Argument(help="Settings file (or fleet file/directory) to check.")
    ] = None,
    config: ConfigOpt = None,
    country: CountryOpt = None,
    tz: TzOpt = None,
    access_code: AccessOpt = None,
    pbx: Annotated[
        str | None, typer.Option("--pbx", help="Fleet: show this PBX's effective settings.")
    ] = None,
) -> None:
    """Validate a settings file and print the effective settings (secrets masked).

    A fleet (a file with \\[\\[pbx]] entries, or a directory of PBXes) is shown as a table;
    --pbx NAME prints that PBX's effective settings."""
    path = file or config
    if path is not None and (path.is_dir() or is_fleet_file(path) or pbx):
        from tollwatch import cli_fleet

        shared = config if file is not None and path.is_dir() else None
        fleet = cli_fleet.fleet_settings(path, shared, overrides(country, tz, access_code))
        cli_fleet.check_fleet(fleet, pbx)
        return
    settings = _settings(path, country, tz, access_code)
    out.print_json(json.dumps(masked_dump(settings)))
    err.print("[green]settings OK[/green]")


def _register() -> None:
    from tollwatch import cli_blocks
    from tollwatch.report.cli import report

    app.command("report")(report)
    from tollwatch.cli_baseline import baseline_app, learn

    app.command()(learn)
    app.add_typer(baseline_app, name="baseline")
    for command in (cli_blocks.block, cli_blocks.unblock, cli_blocks.blocks, cli_blocks.dialplan):
        app.command()(command)


_register()


def main() -> None:
    app()


@app.command()
def status(
    config: ConfigOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="The daemon's data directory.")
    ] = None,
) -> None:
    """Show what the running daemon reports: sources, events/s, calls up, open incidents."""
    from tollwatch.state import StateStore, read_status_file

    directory = data_dir
    if directory is None:
        settings = _settings(config, None, None, None) if config else None
        directory = settings.daemon.data_dir if settings else Path("/var/lib/tollwatch")
    db = directory / "tollwatch.sqlite3"
    doc = read_status_file(directory)
    if not db.is_file() and doc is None:
        raise _fail([f"{db}: no daemon state here (is `tollwatch run` using this data dir?)"])
    store = StateStore(db) if db.is_file() else None
    if doc is not None:  # written in place, so it is current even when the disk is full
        updated, info = str(doc.get("updated_at")), dict(doc.get("daemon") or {})
        sources = [dict(d) for d in doc.get("sources") or []]
    else:
        assert store is not None
        rows = store.read_status()
        daemon = rows.get("daemon")
        if daemon is None:
            raise _fail([f"{db}: the daemon has not reported yet"])
        updated, info = daemon
        sources = [data for name, (_, data) in sorted(rows.items()) if name.startswith("source:")]
    incidents = store.incidents(open_only=True) if store is not None else []
    status_view.render(out, updated, info, sources, incidents)


def _logging(verbose: bool) -> None:
    import logging

    from tollwatch import logsafe

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logsafe.install()


@app.command()
def run(
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the live monitor: AMI servers, followed Master.csv files and CDR tables."""
    settings = _settings(config, None, None, None)
    if not settings.ami and not settings.csv_sources and not settings.db_sources:
        raise _fail(["no sources: add [[ami]] servers, [[csv_sources]] or [[db_sources]] to "
                     "the settings"])
    _logging(verbose)
    from tollwatch.runner import run_daemon

    try:
        asyncio.run(run_daemon(settings))
    except SecretError as exc:
        raise _fail([str(exc)]) from None


@app.command()
def demo(
    pace: Annotated[float, typer.Option(help="Seconds between replayed AMI messages.")] = 0.003,
) -> None:
    """Replay a recorded attack through an embedded fake Asterisk and watch it caught live."""
    from tollwatch.runner import run_demo

    _logging(False)
    code = asyncio.run(run_demo(pace, out))
    raise typer.Exit(code)

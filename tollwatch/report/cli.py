"""`tollwatch report`: register with `app.command("report")(report)`."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from cdr_ingest import IngestError
from config import ConfigError
from config.secrets import SecretError
from tollwatch.cli_fleet import FleetOpt, SchedulerOpt, WorkersOpt
from tollwatch.report.build import build_report
from tollwatch.settings import load, overrides
from tollwatch.state import StateStore

err = Console(stderr=True, highlight=False)


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(2)


def _when(value: str, tz: ZoneInfo, name: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"--{name}: {value!r} is not a date or time like 2026-11-24 or "
                    "2026-11-24T06:00") from None
    return when.replace(tzinfo=tz) if when.tzinfo is None else when


def report(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="CDR files (default: [cdr] files from the settings)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Settings file (TOML).", dir_okay=False)
    ] = None,
    country: Annotated[
        str | None, typer.Option("--country", help="Home country, ISO 3166 (JP, US, ...).")
    ] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="Site time zone (IANA).")] = None,
    access_code: Annotated[
        list[str] | None,
        typer.Option("--access-code", help="Outside-line access code (repeatable)."),
    ] = None,
    day: Annotated[
        str | None,
        typer.Option("--date", help="Report on this local day, YYYY-MM-DD (default: yesterday)."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Start of a custom range.")] = None,
    until: Annotated[str | None, typer.Option(help="End of a custom range (exclusive).")] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Reports folder (a dated folder is made in it).")
    ] = Path("reports"),
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="The daemon's data directory, for reconciliation."),
    ] = None,
    keep_days: Annotated[
        int, typer.Option(help="Remove report folders older than this many days (0: keep all).")
    ] = 90,
    no_slack: Annotated[
        bool, typer.Option("--no-slack", help="Do not post the summary to Slack.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    fleet: FleetOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    use_db: Annotated[
        bool, typer.Option("--db", help="Read the [cdr] database table (the default without "
                           "files when [cdr] database is set).")
    ] = False,
) -> None:
    """Write the daily report (HTML, flagged.csv, figures.json) for a day or a range.

    --fleet: every PBX's report (OUT/<pbx>/<day>/), then one fleet summary (OUT/fleet/<day>/)
    posted to the shared Slack channel."""
    if fleet is not None:
        from tollwatch import cli_fleet

        if files or data_dir:
            raise _fail("--fleet takes each PBX's files from its settings (and has no "
                        "--data-dir)")
        raise typer.Exit(cli_fleet.report_command(
            fleet, config, overrides(country, tz, access_code), day, since, until, out,
            keep_days, no_slack, as_json, workers, scheduler))
    if workers is not None or scheduler:
        raise _fail("--workers and --scheduler go with --fleet")
    try:
        settings = load(config, overrides(country, tz, access_code))
    except ConfigError as exc:
        prefix = f"{exc.source}: " if exc.source else ""
        for e in exc.errors:
            err.print(f"[red]error:[/red] {prefix}{e}", soft_wrap=True)
        raise typer.Exit(2) from None
    zone = ZoneInfo(settings.site.timezone)
    span: date | tuple[datetime, datetime] | None = None
    if day is not None and (since is not None or until is not None):
        raise _fail("give either --date or --since/--until")
    if day is not None:
        try:
            span = date.fromisoformat(day)
        except ValueError:
            raise _fail(f"--date: {day!r} is not a date like 2026-11-24") from None
    elif since is not None or until is not None:
        if since is None or until is None:
            raise _fail("--since and --until go together")
        start, stop = _when(since, zone, "since"), _when(until, zone, "until")
        if stop <= start:
            raise _fail("--until must be after --since")
        span = (start, stop)
    paths = [] if use_db else list(files or settings.cdr.files)
    if use_db and files:
        raise _fail("give CDR files, or --db to read the [cdr] database table")
    if not paths and not settings.cdr.database:
        raise _fail("no CDR files: give FILES, or set [cdr] files or [cdr] database")
    store: StateStore | None = None
    directory = data_dir if data_dir is not None else settings.daemon.data_dir
    db = directory / "tollwatch.sqlite3"
    if db.is_file():
        store = StateStore(db)
    try:
        database = None
        if not paths:
            from tollwatch.dbsource import settings_database

            database = settings_database(settings)
        result = build_report(
            settings, paths, span, out, store, keep_days=keep_days or None, database=database
        )
    except (IngestError, SecretError) as exc:
        raise _fail(str(exc)) from None
    finally:
        if store is not None:
            store.close()
    s = result.summary
    if as_json:
        sys.stdout.write(json.dumps(s, ensure_ascii=False, indent=2) + "\n")
    else:
        spend = f", spend {s['spend']} {s['currency']}" if s["spend"] is not None else ""
        err.print(
            f"{s['period']}: {s['calls']} outbound calls ({s['international']} international, "
            f"{s['high_risk']} high-risk){spend}; {s['incidents']} incident(s); "
            f"{s['reconciliation']}",
            soft_wrap=True,
        )
        sys.stdout.write(str(result.html) + "\n")
    if not no_slack and settings.slack.enabled and settings.report.slack:
        from tollwatch.report.post import post_to_slack

        sent = asyncio.run(post_to_slack(settings, result))
        err.print("Slack summary sent" if sent else
                  "[yellow]note:[/yellow] Slack summary queued in the outbox; the daemon sends it")

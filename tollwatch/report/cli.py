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

from tollwatch.alerting.textsafe import markup
from tollwatch.cdr_ingest import IngestError
from tollwatch.cli_common import (
    AccessOpt,
    ConfigOpt,
    CountryOpt,
    FleetOpt,
    SchedulerOpt,
    TzOpt,
    WorkersOpt,
    err,
    parse_day,
    parse_time,
    settings_for,
    warn,
)
from tollwatch.cli_common import fail as _fail
from tollwatch.config.secrets import SecretError
from tollwatch.report.build import build_report
from tollwatch.settings import overrides
from tollwatch.state import StateStore


def _when(value: str, tz: ZoneInfo, name: str) -> datetime:
    when = parse_time(value, tz, name)
    assert when is not None
    return when


def report(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="CDR files (default: [cdr] files from the settings)."),
    ] = None,
    config: ConfigOpt = None,
    country: CountryOpt = None,
    tz: TzOpt = None,
    access_code: AccessOpt = None,
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
        int | None,
        typer.Option(help="Also remove report folders older than this many days "
                     "(default: remove nothing; the daemon uses [report] keep_days)."),
    ] = None,
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
    posted to the shared Slack channel.

    A CDR file that cannot be read (missing, truncated gzip, permission denied) is named with
    the reason, in the report too, and the other files are read. Exit 0: written from all the
    input; 2: written, but some input could not be read (1 if it found a critical incident)."""
    if fleet is not None:
        from tollwatch import cli_fleet

        if files or data_dir:
            raise _fail("--fleet takes each PBX's files from its settings (and has no "
                        "--data-dir)")
        raise typer.Exit(cli_fleet.report_command(
            fleet, config, overrides(country, tz, access_code), day, since, until, out,
            keep_days or 0, no_slack, as_json, workers, scheduler))  # 0: keep all
    if workers is not None or scheduler:
        raise _fail("--workers and --scheduler go with --fleet")
    settings = settings_for(config, country, tz, access_code)
    if keep_days is not None and keep_days < 1:
        raise _fail("--keep-days must be 1 or more (leave it out to keep every report)")
    zone = ZoneInfo(settings.site.timezone)
    span: date | tuple[datetime, datetime] | None = None
    if day is not None and (since is not None or until is not None):
        raise _fail("give either --date or --since/--until")
    if day is not None:
        span = parse_day(day)
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
            settings, paths, span, out, store, keep_days=keep_days, database=database
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
            f"{s['period']} ({markup(settings.site.zone_label)}): {s['calls']} outbound calls "
            f"({s['international']} international, {s['high_risk']} high-risk){spend}; "
            f"{s['incidents']} incident(s); {markup(s['reconciliation'])}",
            soft_wrap=True,
        )
        sys.stdout.write(str(result.html) + "\n")
    if s.get("coverage_note"):
        warn(s["coverage_note"])
    if s.get("validity"):
        warn(s["validity"])
    unreadable: list[str] = s.get("unreadable_files") or []
    for line in unreadable:  # as `scan`: named, the other files read, the exit code says so
        err.print(f"[red]error:[/red] {markup(line)}", soft_wrap=True)
    for path in result.pruned:
        err.print(f"removed old report {markup(path)}", soft_wrap=True)
    if not no_slack and settings.slack.enabled and settings.report.slack:
        from tollwatch.report.post import post_to_slack

        sent = asyncio.run(post_to_slack(settings, result))
        err.print("Slack summary sent" if sent else
                  "[yellow]note:[/yellow] Slack summary queued in the outbox; the daemon sends it")
    if unreadable:  # input problems: 2, unless the report found something critical: 1
        raise typer.Exit(1 if s.get("critical") else 2)

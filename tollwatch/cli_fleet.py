"""The fleet side of the command line: `scan --fleet` and `check-config` of a fleet."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from tollwatch import fleet_output
from tollwatch.alerting.textsafe import markup
from tollwatch.cli_common import parse_day, parse_time
from tollwatch.config import ConfigError, Settings, masked_dump
from tollwatch.config.fleet import Fleet, load_fleet
from tollwatch.fleet_report import Span
from tollwatch.fleet_scan import Progress, run_fleet
from tollwatch.rules.base import check_rules
from tollwatch.scan import ScanStats

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


def _fail(lines: list[str]) -> typer.Exit:
    for line in lines:
        err.print(f"[red]error:[/red] {markup(line)}", soft_wrap=True)
    return typer.Exit(2)


def fleet_settings(path: Path, shared: Path | None, over: dict[str, Any]) -> Fleet:
    """The fleet's per-PBX settings; whole-fleet problems exit 2 (one line each)."""
    if not path.exists():
        raise _fail([f"{path}: no such file or directory"])
    try:
        return load_fleet(path, over, rule_checks=check_rules, shared=shared)
    except ConfigError as exc:
        prefix = f"{exc.source}: " if exc.source else ""
        raise _fail([prefix + e for e in exc.errors]) from None


def _when(value: str | None, name: str) -> datetime | None:
    """--since/--until: without an offset, each PBX reads them in its own time zone."""
    return parse_time(value, None, name)


def scan_command(
    path: Path, shared: Path | None, over: dict[str, Any], since: str | None,
    until: str | None, fmt: str, quiet: bool, workers: int | None, scheduler: str | None,
    parquet: Path | None, too_many_skipped: Callable[[ScanStats], bool],
) -> int:
    """`tollwatch scan --fleet PATH`: the exit code."""
    fleet = fleet_settings(path, shared, over)
    start, stop = _when(since, "since"), _when(until, "until")
    return scan_fleet(fleet, start, stop, fmt, quiet, workers, scheduler, parquet,
                      too_many_skipped)


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def scan_fleet(
    fleet: Fleet,
    since: datetime | None,
    until: datetime | None,
    fmt: str,
    quiet: bool,
    workers: int | None,
    scheduler: str | None,
    parquet: Path | None,
    too_many_skipped: Callable[[ScanStats], bool] = lambda stats: stats.skipped > 0,
) -> int:
    """Run the fleet scan, print incidents on stdout and progress on stderr; the exit code."""

    def progress(p: Progress) -> None:
        if not quiet:  # with -q, failures are still listed at the end
            err.print(fleet_output.progress_line(p), soft_wrap=True)

    n = default_workers() if workers is None else workers
    if not quiet:
        where = (f"the Dask scheduler at {scheduler}" if scheduler else
                 f"a local Dask cluster of {n} worker process(es)" if n > 0 else "this process")
        err.print(f"scanning {len(fleet.order)} PBX(es) on {markup(where)}", soft_wrap=True)
    try:
        result = run_fleet(fleet, since, until, workers=n, scheduler=scheduler,
                           parquet=parquet, progress=progress)
    except OSError as exc:  # the scheduler cannot be reached
        raise _fail([f"{scheduler or 'local cluster'}: {exc}"]) from None
    rows = fleet_output.incident_rows(result, fleet.order)
    if fmt == "table":
        fleet_output.print_tables(out, result, fleet.order)
    elif fmt == "json":
        sys.stdout.write(fleet_output.to_json(rows))
    elif fmt == "jsonl":
        sys.stdout.write(fleet_output.to_jsonl(rows))
    else:
        sys.stdout.write(fleet_output.to_csv(rows))
    sys.stdout.flush()
    if not quiet:
        err.print(fleet_output.summary_line(result, len(fleet.order), len(rows)), soft_wrap=True)
    skipped = False
    for name in fleet.order:  # even with -q: what was not scanned, or not all of it
        if name in result.failed:
            why = result.failed[name]
            head = "" if why.startswith(f"pbx[{name}]") else f"pbx[{name}]: "
            err.print(f"[red]error:[/red] {markup(head + why)}", soft_wrap=True)
            continue
        stats = result.scans[name].stats
        lines = list(stats.file_problems)
        if too_many_skipped(stats):
            skipped = True
            lines.append(f"{stats.skipped} row(s) could not be read (first: "
                         f"{' '.join(stats.problems[0]) if stats.problems else '-'}); "
                         "--max-skipped N or P% tolerates known noise")
        for line in lines:
            err.print(f"[red]error:[/red] {markup(f'pbx[{name}]: {line}')}", soft_wrap=True)
    code = result.exit_code()
    return 2 if code == 0 and skipped else code


def _ami(s: Settings) -> str:
    return ", ".join(f"{a.username}@{a.host}:{a.port}" for a in s.ami) or "-"


def _slack(s: Settings) -> str:
    if not s.slack.enabled:
        return "off"
    return s.slack.channel or "webhook"


def _remediation(s: Settings) -> str:
    r = s.remediation
    return f"{'ON' if r.enabled else 'dry run'} ({r.severity}, {r.block})"


def check_fleet(fleet: Fleet, pbx: str | None) -> None:
    """A table of the fleet (or one PBX's effective settings as JSON); exit 2 on errors."""
    if pbx is not None:
        if pbx in fleet.errors:
            raise _fail(fleet.errors[pbx])
        if pbx not in fleet.settings:
            raise _fail([f"pbx[{pbx}]: no such PBX in {fleet.source} "
                         f"(have: {', '.join(fleet.order)})"])
        out.print_json(json.dumps(masked_dump(fleet.settings[pbx])))
        err.print(f"[green]pbx\\[{markup(pbx)}]: settings OK[/green]")
        return
    table = Table(title=f"{markup(fleet.source)}: {len(fleet.order)} PBX(es)")
    for col in ("pbx", "site", "country", "time zone", "CDR files", "AMI", "Slack",
                "remediation", "settings"):
        table.add_column(col, overflow="fold", no_wrap=col in ("pbx", "country", "AMI"))
    for name in fleet.order:
        s = fleet.settings.get(name)
        if s is None:
            table.add_row(markup(name), *["-"] * 7, "[red]errors[/red]")
            continue
        files = ", ".join(str(f) for f in s.cdr.files[:2]) + (
            f" (+{len(s.cdr.files) - 2})" if len(s.cdr.files) > 2 else "")
        table.add_row(markup(name), markup(s.site.name), s.site.country or "-",
                      s.site.timezone, markup(files or "-"), markup(_ami(s)),
                      markup(_slack(s)), _remediation(s), "[green]OK[/green]")
    out.print(table)
    problems = [e for name in fleet.order for e in fleet.errors.get(name, [])]
    if problems:
        raise _fail([f"{fleet.source}: {e}" for e in problems])
    err.print(f"[green]settings OK: {len(fleet.order)} PBX(es)[/green]")


def _span(day: str | None, since: str | None, until: str | None) -> Span:
    """--date or --since/--until; naive, so each PBX reads them in its own time zone."""
    if day is not None and (since is not None or until is not None):
        raise _fail(["give either --date or --since/--until"])
    if day is not None:
        return parse_day(day)
    if since is None and until is None:
        return None
    start, stop = _when(since, "since"), _when(until, "until")
    if start is None or stop is None:
        raise _fail(["--since and --until go together"])
    return (start, stop)


def report_command(
    path: Path, shared: Path | None, over: dict[str, Any], day: str | None, since: str | None,
    until: str | None, out_dir: Path, keep_days: int, no_slack: bool, as_json: bool,
    workers: int | None, scheduler: str | None,
) -> int:
    """`tollwatch report --fleet PATH`: the exit code (2 if a PBX has no report)."""
    from tollwatch.fleet_report import run_fleet_report

    fleet = fleet_settings(path, shared, over)
    span = _span(day, since, until)

    def progress(name: str, summary: dict[str, Any] | None, error: str | None) -> None:
        if summary is not None and not as_json:
            err.print(f"pbx {markup(name)}: {summary['calls']} outbound calls, "
                      f"{summary['incidents']} incident(s) -> {markup(summary['report'])}",
                      soft_wrap=True)

    n = default_workers() if workers is None else workers
    report = run_fleet_report(fleet, span, out_dir, keep_days=keep_days or None, workers=n,
                              scheduler=scheduler, progress=progress)
    assert report.folder is not None
    if as_json:
        sys.stdout.write((report.folder / "fleet.json").read_text(encoding="utf-8"))
    else:
        for line in report.text.splitlines():
            err.print(markup(line), soft_wrap=True)
        sys.stdout.write(str(report.folder / "index.html") + "\n")
    for name in fleet.order:
        if name in report.failed:
            why = report.failed[name]
            head = "" if why.startswith(f"pbx[{name}]") else f"pbx[{name}]: "
            err.print(f"[red]error:[/red] {markup(head + why)}", soft_wrap=True)
    if not no_slack:
        _post(fleet, report.folder.name, report.text)
    return 2 if report.failed else 0


def _post(fleet: Fleet, label: str, text: str) -> None:
    """The fleet summary to the shared (top-level) Slack settings, when enabled."""
    import asyncio

    from pydantic import ValidationError

    from tollwatch.config.schema import Daemon, Report, Slack
    from tollwatch.report.post import post_text

    try:
        slack = Slack.model_validate(fleet.shared.get("slack", {}))
        daemon = Daemon.model_validate(fleet.shared.get("daemon", {}))
        report = Report.model_validate(fleet.shared.get("report", {}))
    except ValidationError as exc:
        err.print(f"[yellow]note:[/yellow] fleet summary not posted: the top-level [slack] "
                  f"is incomplete ({markup(exc.errors()[0]['msg'])})", soft_wrap=True)
        return
    if not slack.enabled or not report.slack:
        return
    sent = asyncio.run(post_text(slack, daemon.data_dir, f"fleet-{label}", text))
    err.print("Slack fleet summary sent" if sent else
              "[yellow]note:[/yellow] Slack fleet summary queued in the outbox")


def run_command(path: Path, verbose: bool, log_format: str | None) -> None:
    """`tollwatch run` with a fleet file: one pipeline per PBX in this process. PBXes whose
    settings do not resolve are reported and the others start; none resolving exits 2."""
    import asyncio

    from tollwatch.fleet_daemon import run_fleet
    from tollwatch.logs import setup_logging

    fleet = fleet_settings(path, None, {})
    if not fleet.settings:
        raise _fail([f"{path}: pbx[{n}]: {e.removeprefix(f'pbx[{n}].')}"
                     for n, errs in fleet.errors.items() for e in errs])
    setup_logging(verbose, log_format)

    def load() -> Fleet:
        return load_fleet(path, None, rule_checks=check_rules)

    first = [fleet]

    def initial_then_reload() -> Fleet:  # the fleet just checked, then the file again
        return first.pop() if first else load()

    asyncio.run(run_fleet(initial_then_reload))

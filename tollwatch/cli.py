"""The `tollwatch` command line."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
import typer.main
from typer.core import TyperGroup

from tollwatch import __version__
from tollwatch.alerting.textsafe import markup, plain
from tollwatch.cdr_ingest import IngestError
from tollwatch.cli_common import (
    AccessOpt,
    ConfigOpt,
    CountryOpt,
    TzOpt,
    err,
    fail,
    out,
    settings_for,
    warn,
)
from tollwatch.cli_scan import scan
from tollwatch.config import Settings, masked_dump
from tollwatch.config.fleet import is_fleet_file
from tollwatch.config.load import default_path
from tollwatch.config.secrets import SecretError
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.validity import valid_e164
from tollwatch.settings import overrides

if TYPE_CHECKING:
    from typer import _click  # the click TyperGroup is built on (typer 0.29 vendors it)

_SETTINGS: dict[str, Any] = dict(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is shown as written: "[cdr]" is a settings section
)


class _Commands(TyperGroup):
    """This module's commands, and the others (report, learn, baseline, block, status...)
    made when first asked for (another name, the list of commands): `tollwatch scan` does not
    import their modules (the remediation, report and status ones: ~0.2 CPU s)."""

    def _add_others(self) -> None:
        if not getattr(self, "_others_added", False):
            self._others_added = True
            others = typer.Typer(**_SETTINGS)
            _register(others)
            for name, command in cast(TyperGroup, typer.main.get_command(others)).commands.items():
                self.commands.setdefault(name, command)

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        if cmd_name not in self.commands:
            self._add_others()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: _click.Context) -> list[str]:
        self._add_others()
        return super().list_commands(ctx)


app = typer.Typer(
    cls=_Commands,
    no_args_is_help=True,
    help="PBX toll-fraud monitor for Asterisk.",
    **_SETTINGS,
)


def _fail(lines: list[str]) -> typer.Exit:
    return fail(lines)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"tollwatch {__version__}\n")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    """PBX toll-fraud monitor for Asterisk."""


app.command()(scan)  # first in --help


@app.command()
def classify(
    numbers: Annotated[list[str], typer.Argument(help="Numbers as dialed.")],
    config: ConfigOpt = None,
    country: CountryOpt = None,
    tz: TzOpt = None,
    access_code: AccessOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines output.")] = False,
) -> None:
    """Show where each dialed number goes under the site's dial plan, and whether it is a valid
    number there ("invalid": check --country and --access-code)."""
    settings = settings_for(config, country, tz, access_code)
    classifier = Classifier(settings)
    for number in numbers:
        d = classifier.classify(number)
        outbound = d.dest_class in ("domestic", "international", "unknown")
        valid = valid_e164(d.e164) if outbound else None
        if as_json:
            row = {**d.__dict__, "valid": valid}
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            continue
        where = f"{d.region_name} ({d.region}, +{d.calling_code})" if d.region else "-"
        risk = (
            f"HIGH RISK ({d.risk_prefix})"
            if d.high_risk
            else ("allowlisted" if d.allowlisted else "")
        )
        check = "invalid" if valid is False else ""
        line = (
            f"{plain(number):>20}  {d.dest_class:<13} {d.e164 or '-':<18} {check:<7} "
            f"{where}  {risk}"
        )
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
    sample: Annotated[
        list[Path] | None,
        typer.Option(
            "--sample",
            help="A CDR file: check its dialed numbers are valid under "
            "the settings (up to 10k distinct numbers; repeatable).",
        ),
    ] = None,
) -> None:
    """Validate a settings file (every error at once, referenced secrets included) and print
    the effective settings (secrets masked).

    A fleet (a file with \\[\\[pbx]] entries, or a directory of PBXes) is shown as a table;
    --pbx NAME prints that PBX's effective settings."""
    path = file or config
    if path is not None and (path.is_dir() or is_fleet_file(path) or pbx):
        from tollwatch import cli_fleet

        shared = config if file is not None and path.is_dir() else None
        fleet = cli_fleet.fleet_settings(path, shared, overrides(country, tz, access_code))
        cli_fleet.check_fleet(fleet, pbx)
        return
    settings = settings_for(path, country, tz, access_code, check_secrets=True)
    out.print_json(json.dumps(masked_dump(settings)))
    for line in _config_warnings(settings):
        warn(line)
    if sample:
        from tollwatch.check_sample import sample_numbers

        try:
            validity = sample_numbers(settings, sample)
        except IngestError as exc:
            raise fail(str(exc)) from None
        warning = validity.warning(settings)
        if warning:
            warn(warning)
            raise typer.Exit(1)
        err.print(
            f"{validity.checked} distinct outbound numbers checked, {validity.invalid} invalid"
        )
    err.print(f"[green]settings OK[/green] (times in {markup(settings.site.zone_label)})")


def _config_warnings(settings: Settings) -> list[str]:
    found = []
    if settings.hours.holidays_country == "" and settings.site.country:
        found.append(
            f"hours.holidays_country: the holidays package has no calendar for "
            f"{settings.site.country}: public holidays are not known (list them in "
            "hours.closures)"
        )
    return found


def _register(app: typer.Typer) -> None:
    """The commands of other modules (see _Commands), in the order `--help` lists them."""
    from tollwatch import cli_blocks, cli_status
    from tollwatch.report.cli import report

    app.command("report")(report)
    from tollwatch.cli_baseline import baseline_app, learn

    app.command()(learn)
    app.add_typer(baseline_app, name="baseline")
    for command in (
        cli_blocks.block,
        cli_blocks.unblock,
        cli_blocks.blocks,
        cli_blocks.dialplan,
        cli_status.status,
    ):
        app.command()(command)
    app.command("slack-test")(cli_status.slack_test)


@app.command()
def run(
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="text or json (default: text; no timestamps when journald adds its own).",
        ),
    ] = None,
) -> None:
    """Run the live monitor: AMI servers, followed Master.csv files and CDR tables. A fleet
    file (\\[\\[pbx]] entries) runs one pipeline per PBX; SIGHUP reloads it."""
    path = config if config is not None else default_path()
    if path is not None and is_fleet_file(path):
        from tollwatch import cli_fleet

        cli_fleet.run_command(path, verbose, log_format)
        return
    settings = settings_for(config)
    if not settings.ami and not settings.csv_sources and not settings.db_sources:
        raise fail(
            "no sources: add [[ami]] servers, [[csv_sources]] or [[db_sources]] to the settings"
        )
    from tollwatch.logs import setup_logging

    setup_logging(verbose, log_format)
    from tollwatch.runner import run_daemon

    try:
        asyncio.run(run_daemon(settings))
    except SecretError as exc:
        raise fail(str(exc)) from None


@app.command()
def demo(
    pace: Annotated[float, typer.Option(help="Seconds between replayed AMI messages.")] = 0.003,
) -> None:
    """Replay a recorded attack through an embedded fake Asterisk and watch it caught live."""
    from tollwatch.logs import setup_logging
    from tollwatch.runner import run_demo

    setup_logging(False, None)
    code = asyncio.run(run_demo(pace, out))
    raise typer.Exit(code)


def main() -> None:
    """The `tollwatch` command. On the way out everything the command made is handed to the
    collector's permanent generation (`gc.freeze()`), so that the interpreter's shutdown frees
    it by reference counting without walking it again: its collections at exit took ~0.17 s
    of a ~1.1 s `scan` of a day's CDRs (files are closed and exit handlers run as before; only
    reference cycles left over are not collected, which a process about to end never needs)."""
    try:
        app()
    finally:
        gc.freeze()

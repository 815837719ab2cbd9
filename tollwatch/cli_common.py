"""What the commands share: consoles, options, the one-line error, settings loading.

Every text that reaches the terminal through rich markup goes through `textsafe.markup`
(file names, CDR fields, setting values may hold `[/bold]` or control characters).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console

from tollwatch.alerting.textsafe import markup
from tollwatch.cdr_ingest._types import YEARS, in_years
from tollwatch.config import ConfigError, Settings
from tollwatch.settings import load, overrides

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

CONFIG_HELP = ("Settings file (TOML). Default: $TOLLWATCH_CONFIG, else "
               "/etc/tollwatch/tollwatch.toml if it exists.")
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help=CONFIG_HELP, dir_okay=False)
]
CountryOpt = Annotated[
    str | None, typer.Option("--country", help="Home country, ISO 3166 (JP, US, ...).")
]
TzOpt = Annotated[
    str | None, typer.Option("--tz", help="Site time zone (IANA). Default: the host's zone.")
]
AccessOpt = Annotated[
    list[str] | None,
    typer.Option("--access-code", help="Outside-line access code (repeatable), e.g. 0 or 9."),
]


def fail(lines: list[str] | str, code: int = 2) -> typer.Exit:
    """Print each line as `error: ...` (escaped) and return the Exit to raise."""
    for line in [lines] if isinstance(lines, str) else lines:
        err.print(f"[red]error:[/red] {markup(line)}", soft_wrap=True)
    return typer.Exit(code)


def warn(line: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {markup(line)}", soft_wrap=True)


def settings_for(
    config: Path | None,
    country: str | None = None,
    tz: str | None = None,
    access: list[str] | None = None,
    *,
    check_secrets: bool = False,
) -> Settings:
    try:
        return load(config, overrides(country, tz, access), check_secrets=check_secrets)
    except ConfigError as exc:
        prefix = f"{exc.source}: " if exc.source else ""
        raise fail([prefix + e for e in exc.errors]) from None


def parse_time(value: str | None, tz: ZoneInfo | None, name: str) -> datetime | None:
    """An ISO date or time; without an offset it is in `tz` (None: left naive)."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"--{name}: {value!r} is not a date or time like 2026-11-24 or "
                   "2026-11-24T06:00") from None
    if not in_years(when.year):  # as CDR times (cdr_ingest): a zone can then be put on it
        raise fail(f"--{name}: {value!r} is outside the {YEARS}")
    return when.replace(tzinfo=tz) if when.tzinfo is None and tz is not None else when


def parse_day(value: str, name: str = "date") -> date:
    """An ISO date (`report --date`), in the years a call may have."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise fail(f"--{name}: {value!r} is not a date like 2026-11-24") from None
    if not in_years(day.year):
        raise fail(f"--{name}: {value!r} is outside the {YEARS}")
    return day


# the fleet options of `scan` and `report` (here, so that the CLI loads no fleet code to parse)
FleetOpt = Annotated[
    Path | None,
    typer.Option("--fleet", help="A fleet: a settings file with \\[\\[pbx]] entries, or a "
                 "directory ROOT/<pbx>/Master.csv* (--config: shared settings)."),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=0, help="--fleet: local Dask worker processes "
                 "(default: CPU count; 0: no Dask, one PBX after another)."),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="--fleet: an existing Dask scheduler, e.g. "
                 "tcp://host:8786."),
]
ParquetOpt = Annotated[
    Path | None,
    typer.Option("--parquet", help="--fleet: write classified calls as Parquet under "
                 "DIR/pbx=<pbx>/day=<date>/.", file_okay=False),
]

"""`tollwatch learn` and `tollwatch baseline show`: the site's learned normal.

Registered on the main app by tollwatch.cli (`app.command()(learn)`,
`app.add_typer(baseline_app, name="baseline")`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tollwatch.alerting.textsafe import markup
from tollwatch.cdr_ingest import IngestError
from tollwatch.config import ConfigError, Settings
from tollwatch.config.secrets import SecretError
from tollwatch.rules.baseline import DAY_NAMES, Baseline
from tollwatch.rules.baseline_io import BaselineError, load, load_file, loads, new_baseline, save
from tollwatch.settings import load as load_settings
from tollwatch.settings import overrides

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Settings file (TOML).", dir_okay=False)
]
CountryOpt = Annotated[str | None, typer.Option("--country", help="Home country (ISO 3166).")]
TzOpt = Annotated[str | None, typer.Option("--tz", help="Site time zone (IANA).")]
AccessOpt = Annotated[
    list[str] | None, typer.Option("--access-code", help="Outside-line access code.")
]

baseline_app = typer.Typer(no_args_is_help=True, help="The site's learned baseline.")


def _fail(line: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {markup(line)}", soft_wrap=True)
    return typer.Exit(2)


def _settings(
    config: Path | None, country: str | None, tz: str | None, access: list[str] | None
) -> Settings:
    try:
        return load_settings(config, overrides(country, tz, access))
    except ConfigError as exc:
        prefix = f"{exc.source}: " if exc.source else ""
        raise _fail(prefix + "; ".join(exc.errors)) from None


def learn(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Baseline file to write.",
                                           dir_okay=False)],
    files: Annotated[
        list[Path] | None, typer.Argument(help="Past CDR files (Master.csv, rotated, .gz).")
    ] = None,
    db: Annotated[
        bool, typer.Option("--db", help="Learn from the [cdr] database table instead of files.")
    ] = False,
    config: ConfigOpt = None,
    country: CountryOpt = None,
    tz: TzOpt = None,
    access_code: AccessOpt = None,
    update: Annotated[bool, typer.Option(
        "--update", help="Start from the baseline already in --out and add these files.")] = False,
) -> None:
    """Learn the site's baseline from past CDRs, for the daemon ([baseline] file) and scan."""
    from tollwatch.learn import learn_files

    if bool(files) == db:
        raise _fail("give past CDR files, or --db to read the [cdr] database table")
    settings = _settings(config, country, tz, access_code)
    start = None
    if update and out_file.exists():
        try:
            start = load_file(out_file, settings)
        except BaselineError as exc:
            raise _fail(str(exc)) from None
    try:
        database = None
        if db:
            from tollwatch.dbsource import settings_database

            database = settings_database(settings)
        baseline, stats = learn_files(list(files or []), settings, start, database)
    except (IngestError, SecretError) as exc:
        raise _fail(str(exc)) from None
    for line in stats.file_problems:
        err.print(f"[red]error:[/red] {markup(line)}", soft_wrap=True)
    if not stats.rows and stats.file_problems:
        raise typer.Exit(2)
    try:
        save(baseline, out_file, settings.site.name)
    except OSError as exc:
        raise _fail(f"{out_file}: cannot write ({exc.strerror or exc})") from None
    first, last = baseline.first_day, baseline.last_day
    span = f"{first} .. {last}" if first else "no calls abroad"
    err.print(
        f"{stats.rows} rows read, {stats.skipped} skipped, {stats.calls_scored} calls abroad "
        f"learned ({span}); {len(baseline.dest_days)} destinations, "
        f"{len(baseline.src_dests)} sources -> {markup(str(out_file))}",
        soft_wrap=True,
    )
    if stats.file_problems:  # learned from the rest; the exit code says input was missing
        raise typer.Exit(2)


@baseline_app.command("show")
def show(
    file: Annotated[Path | None, typer.Option("--file", "-f", help="A baseline file "
                                              "(from `tollwatch learn`).", dir_okay=False)] = None,
    config: ConfigOpt = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="The daemon's data directory (its live baseline).")] = None,
    pbx: Annotated[str | None, typer.Option("--pbx", help="Which PBX of the daemon.")] = None,
    country: CountryOpt = None,
    tz: TzOpt = None,
    sources: Annotated[int, typer.Option(help="How many sources to list.")] = 20,
) -> None:
    """Show a baseline: usual volume by hour of week, destinations, sources."""
    # Only [baseline] and data_dir matter here (the calendar is not used to show a baseline).
    settings = _settings(config, country or (None if config else "US"), tz, None)
    baseline = new_baseline(settings)
    if file is not None:
        try:
            load(baseline, file)
        except BaselineError as exc:
            raise _fail(str(exc)) from None
        what = str(file)
    else:
        from tollwatch.state import StateStore

        directory = data_dir or settings.daemon.data_dir
        db = directory / "tollwatch.sqlite3"
        if not db.is_file():
            raise _fail(f"{db}: no daemon state here (give --file, or --data-dir)")
        stored = StateStore(db).baselines()
        if not stored:
            raise _fail(f"{db}: the daemon has not saved a baseline yet")
        name = pbx or sorted(stored)[0]
        if name not in stored:
            raise _fail(f"{db}: no baseline for pbx {name!r} (known: {', '.join(sorted(stored))})")
        try:
            loads(baseline, stored[name])
        except BaselineError as exc:
            raise _fail(f"{db}: the baseline of {name} cannot be read ({exc})") from None
        what = f"{db} (pbx {name})"
    print_baseline(baseline, what, sources)


def print_baseline(b: Baseline, what: str, top: int = 20) -> None:
    o = b.options
    if b.last_day is None or b.first_day is None:
        out.print(f"{markup(what)}: empty (nothing learned yet)")
        return
    today = b.last_day + timedelta(days=1)
    start = today - o.period
    days = b.history_days()
    ready = b.first_day <= today - o.min_history
    out.print(f"{markup(what)}: {b.first_day} .. {b.last_day}, {days} days with calls abroad in "
              f"the last {o.period.days} days; learned thresholds "
              f"{'in use' if ready else f'not yet (need {o.min_history.days} days)'}")
    grid = Table(title="usual international calls per 10 min (quantile "
                 f"{o.quantile:g} of the period's days), by local hour")
    grid.add_column("hour")
    for kind, name in enumerate(DAY_NAMES):
        grid.add_column(name[:3] + ("+hol" if kind == 6 else ""), justify="right")
    for h in range(24):
        cells = [b.usual(kind, h, "international", timedelta(minutes=10), start, today)
                 for kind in range(7)]
        grid.add_row(f"{h:02d}", *["-" if c is None else str(c) for c in cells])
    out.print(grid)
    dests = Table(title="destinations (routine: a high-risk one scores like any call abroad)")
    for col in ("destination", "days called", "sources", "routine"):
        dests.add_column(col)
    rows = sorted(b.dest_days, key=lambda k: -b.days_called(k))
    for key in rows:
        dests.add_row(markup(key), str(b.days_called(key)), str(b.sources_of(key)),
                      "yes" if b.is_routine(key) else "")
    out.print(dests)
    srcs = Table(title=f"sources (the {top} with most destinations)")
    for col in ("source", "destinations", "usual hours abroad"):
        srcs.add_column(col)
    ranked = sorted(b.src_dests, key=lambda s: (-len(b.src_dests[s]), s))[:top]
    for src in ranked:
        hours = b.src_hours.get(src, {})
        usual = [h for h, d in sorted(hours.items())
                 if sum(1 for x in d if start <= x < today) >= o.usual_hour_days]
        srcs.add_row(markup(src), markup(", ".join(sorted(b.src_dests[src]))),
                     ", ".join(f"{h:02d}" for h in usual) or "-")
    out.print(srcs)

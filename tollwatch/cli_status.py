"""`tollwatch status` and `tollwatch slack-test`: plain functions for the main app.

status exit codes (like `systemctl status`): 0 running, 3 stopped or not reporting.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from tollwatch import status_view
from tollwatch.alerting.textsafe import clip, markup
from tollwatch.cli_common import ConfigOpt, err, fail, out, settings_for
from tollwatch.config import Settings
from tollwatch.report_format import human_time
from tollwatch.status_read import read_daemon_status

NOT_RUNNING = 3


def _age(updated: str) -> float | None:
    """Seconds since the daemon's report; None when its time cannot be read (a status file
    cut short or edited by hand)."""
    try:
        when = datetime.fromisoformat(updated)
        return (datetime.now(UTC) - when).total_seconds()
    except (ValueError, TypeError, OverflowError):  # not a time, or one without a zone
        return None


def daemon_state(updated: str, info: dict[str, Any], settings: Settings | None,
                 tz: ZoneInfo) -> tuple[bool, str]:
    """(running, words): stopped cleanly, running, or not reporting (crashed or hung)."""
    if info.get("stopped_at"):
        return False, f"STOPPED at {human_time(info['stopped_at'], tz)}"
    every = settings.daemon.status_every.total_seconds() if settings else 5.0
    age = _age(updated)
    if age is None:
        return False, f"NOT RUNNING? its last status has no time ({markup(clip(updated, 40))})"
    if age <= max(30.0, 3 * every):
        return True, f"running since {human_time(info.get('started_at'), tz)}"
    return False, (f"NOT RUNNING: no report for {age:.0f}s (last at {human_time(updated, tz)}; "
                   "crashed or killed?)")


def _local(source: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """A source's status with its times for people (local time with the zone's name)."""
    return {**source, "last_event_at": human_time(source.get("last_event_at"), tz)}


def _slack_line(directory: Path, tz: ZoneInfo) -> str | None:
    from tollwatch.alerting.outbox import read_health

    health = read_health(directory)
    if health is None:
        return None
    state, pending = health.get("state", "ok"), health.get("pending", 0)
    since = human_time(datetime.fromtimestamp(health["since"], UTC), tz) \
        if health.get("since") else "-"
    if state == "ok":
        return f"slack: ok; {pending} alert(s) queued"
    return (f"slack: {state.upper()} since {since}: {health.get('detail', '')}; "
            f"{pending} alert(s) queued and kept")


def blocks_line(directory: Path) -> str | None:
    """Blocks in force, and what a dry run WOULD BLOCK (never called blocked)."""
    from tollwatch.alerting.remediation.store import FILENAME, BlockStore

    path = directory / FILENAME
    if not path.is_file():
        return None
    store = BlockStore(path)
    try:
        real, pending, dry = store.counts()
    finally:
        store.close()
    if not real and not pending and not dry:
        return "blocks: none in force"
    line = f"blocks: {real} in force"
    if pending:
        line += f"; {pending} recorded but NOT applied in Asterisk (no AMI, or AstDB refused)"
    if dry:
        line += f"; {dry} WOULD BLOCK (dry run: [remediation] enabled = false)"
    return line + " (tollwatch blocks)"


def _fleet_data_dir(config: Path | None) -> Path | None:
    """A fleet file's shared data directory (None: not a fleet file)."""
    from tollwatch.config import ConfigError
    from tollwatch.config.fleet import is_fleet_file, load_fleet
    from tollwatch.config.load import default_path

    path = config if config is not None else default_path()
    if path is None or not is_fleet_file(path):
        return None
    try:
        shared = load_fleet(path).shared
    except ConfigError as exc:
        raise fail([f"{exc.source}: {e}" if exc.source else e for e in exc.errors]) from None
    return Path((shared.get("daemon") or {}).get("data_dir") or "/var/lib/tollwatch")


def _fleet_zones(info: dict[str, Any], default: ZoneInfo) -> dict[str, ZoneInfo]:
    """A fleet daemon's PBXes' zones (their incidents are shown in their own time)."""
    zones: dict[str, ZoneInfo] = {}
    for line in info.get("fleet") or []:
        try:
            zones[str(line["pbx"])] = ZoneInfo(str(line.get("timezone")))
        except (KeyError, ValueError):
            zones[str(line.get("pbx"))] = default
    return zones


def status(
    config: ConfigOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="The daemon's data directory.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The status data as JSON.")] = False,
) -> None:
    """Show whether the daemon runs, and what it reports: sources, events/s, calls up, open
    incidents, Slack delivery. Exit 0: running; 3: stopped or not reporting."""
    fleet_dir = _fleet_data_dir(config) if data_dir is None else None
    settings = settings_for(config) if data_dir is None and fleet_dir is None else None
    directory = data_dir or fleet_dir or (
        settings.daemon.data_dir if settings else Path("/var/lib/tollwatch"))
    tz = ZoneInfo(settings.site.timezone) if settings else ZoneInfo("UTC")
    found = read_daemon_status(directory)
    if found is None:
        err.print(f"daemon: NOT RUNNING (no status from a daemon in {markup(directory)})")
        raise typer.Exit(NOT_RUNNING)
    updated, info, source_rows, incidents = found
    running, words = daemon_state(updated, info, settings, tz)
    if as_json:
        doc = {"running": running, "state": words, "updated_at": updated, "daemon": info,
               "sources": source_rows, "open_incidents": incidents}
        out.print_json(json.dumps(doc, default=str))
        raise typer.Exit(0 if running else NOT_RUNNING)
    slack = _slack_line(directory, tz)
    sources = [_local(data, tz) for data in source_rows]
    zones = _fleet_zones(info, tz)
    incidents = [{**inc, "first_call_at": human_time(inc.get("first_call_at"),
                                                     zones.get(str(inc.get("pbx")), tz))}
                 for inc in incidents]
    extra = [markup(line) for line in (slack, blocks_line(directory)) if line]
    status_view.render(out, updated, info, sources, incidents, state=words, extra=extra)
    if not running:
        raise typer.Exit(NOT_RUNNING)


def slack_test(
    config: ConfigOpt = None,
    message: Annotated[
        str, typer.Option("--message", help="The text to post.")
    ] = "tollwatch test message: alerts for this site will appear in this channel.",
) -> None:
    """Post a test message with the [slack] settings and say what is wrong in plain words
    (bad token, missing scopes chat:write / files:write, unknown channel)."""
    from tollwatch.alerting.slack_check import check_slack

    settings = settings_for(config)
    if not settings.slack.enabled:
        raise fail("Slack is not enabled: set [slack] enabled = true with a token and channel "
                   "(or a webhook)")
    try:
        result = asyncio.run(check_slack(settings.slack, message))
    except Exception as exc:  # a secret that cannot be read, a network failure
        raise fail(str(exc), 1) from None
    for line in result.lines:
        out.print(markup(line), soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)

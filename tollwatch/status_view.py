"""What `tollwatch status` prints: the daemon's last report, its sources, its health problems.

Every value that may come from a CDR, an AMI peer or a file name (source states, incident
sources and destinations, storage paths) is escaped with `alerting.textsafe.markup` before it
reaches rich, so `[/bold]` or an ESC sequence in a caller ID is shown, never interpreted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from tollwatch.alerting.textsafe import markup

STALE_AFTER = 30.0  # seconds without a report: the daemon is not running


def age_of(updated: str, now: datetime | None = None) -> float:
    now = now or datetime.now(UTC)
    try:
        return (now - datetime.fromisoformat(updated)).total_seconds()
    except (TypeError, ValueError):
        return float("inf")


def render(
    out: Console,
    updated: str,
    info: dict[str, Any],
    sources: list[dict[str, Any]],
    incidents: list[dict[str, Any]],
    state: str | None = None,
    extra: list[str] | None = None,
) -> None:
    """`state`: the daemon's state in words (running since ..., STOPPED at ...); `extra`:
    lines (already escaped) printed after the daemon line (Slack delivery)."""
    if state is None:
        age = age_of(updated)
        state = "running" if age < STALE_AFTER else f"NOT RUNNING (last report {age:.0f}s ago)"
    out.print(
        f"daemon: {state}; site {markup(info.get('site'))}; events {info.get('events')}; "
        f"errors {info.get('errors')}; open incidents {info.get('open_incidents')}"
    )
    for line in extra or []:
        out.print(line, soft_wrap=True)
    backlog = info.get("backlog") or {}
    if backlog:
        oldest = backlog.get("oldest_s") or 0.0
        style = "red" if oldest >= 10 else ""
        text = (f"backlog: {backlog.get('events', 0)} event(s) queued, oldest "
                f"{oldest:.1f}s, peak {backlog.get('peak', 0)} of {backlog.get('limit', '-')}")
        out.print(f"[{style}]{text}[/{style}]" if style else text)
    for problem in info.get("storage") or []:
        out.print(
            f"[red]storage:[/red] {markup(problem.get('path'))}: {markup(problem.get('errno'))}"
            f" ({markup(problem.get('error'))}) since {markup(problem.get('since'))}; "
            "kept in memory until it can be written again"
        )
    fleet = isinstance(info.get("fleet"), list)
    if fleet:
        render_fleet(out, info["fleet"])
    else:
        render_sources(out, sources)
    for inc in incidents:
        dests = ", ".join(str(d) for d in inc.get("destinations") or [])
        where = f"pbx {markup(inc.get('pbx'))}: " if fleet else ""
        out.print(
            f"open: {where}{markup(inc.get('severity'))} {markup(inc.get('source'))} "
            f"{markup(dests)} ({inc.get('calls')} calls since {markup(inc.get('first_call_at'))})"
        )


def _age(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def render_fleet(out: Console, lines: list[dict[str, Any]]) -> None:
    """A fleet daemon at a glance: one line per PBX."""
    table = Table(title=f"fleet: {sum(1 for r in lines if r.get('connected'))} of "
                        f"{len(lines)} PBX connected")
    for col in ("pbx", "country", "zone", "connection", "calls up", "open incidents", "blocks",
                "last event", "errors"):
        table.add_column(col)
    for row in lines:
        connected = bool(row.get("connected"))
        conn = markup(row.get("connection") or row.get("state") or "-")
        blocks = str(row.get("blocks", 0))
        if row.get("blocks_dry_run"):
            blocks += f" (+{row['blocks_dry_run']} WOULD BLOCK, dry run)"
        errors = int(row.get("errors", 0) or 0)
        table.add_row(
            markup(row.get("pbx", "")), markup(row.get("country") or "-"),
            markup(row.get("timezone") or "-"), conn if connected else f"[red]{conn}[/red]",
            str(row.get("calls_in_progress", 0)),
            str(row.get("open_incidents", 0)), blocks, _age(row.get("last_event_age_s")),
            f"[red]{errors}[/red]" if errors else "0",
        )
    out.print(table)


def render_sources(out: Console, sources: list[dict[str, Any]]) -> None:
    table = Table(title="sources")
    for col in ("source", "kind", "connected", "events/s", "calls up", "bad frames",
                "backlog", "last event", "state", "dialect", "unknown events"):
        table.add_column(col)
    warnings = []
    for data in sources:
        bad = int(data.get("bad_frames", 0) or 0)
        table.add_row(
            markup(data.get("name", "")), markup(data.get("kind", "")),
            "yes" if data.get("connected") else "[red]no[/red]",
            str(data.get("events_per_s", 0)), str(data.get("calls_in_progress", 0)),
            f"[red]{bad}[/red]" if bad else "0",
            str(data.get("backlog", 0)),
            markup(data.get("last_event_at") or "-"), markup(data.get("state", "")),
            markup(data.get("dialect", "")), str(data.get("unknown_events", 0)),
        )
        for note in (data.get("notes") or [])[:5]:
            warnings.append(f"note: {markup(data.get('name', ''))}: {markup(note)}")
        if data.get("warning"):
            warnings.append(f"[yellow]warning:[/yellow] {markup(data.get('name', ''))}: "
                            f"{markup(data['warning'])}")  # fmt: skip
    out.print(table)
    for line in warnings:
        out.print(line, soft_wrap=True)

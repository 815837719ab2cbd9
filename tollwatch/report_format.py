"""Render incidents for people (a rich table) and for tools (JSON, JSON lines, CSV)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table

from tollwatch.alerting.textsafe import csv_cell, markup
from tollwatch.rules.incidents import Incident, Severity


def _iso(when: datetime | None, tz: ZoneInfo) -> str | None:
    return when.astimezone(tz).isoformat() if when is not None else None


def human_time(when: datetime | str | None, tz: ZoneInfo, date: bool = True) -> str:
    """For people: local time with the zone's name, "2026-11-24 22:30:15 JST" ("-" if none)."""
    if when is None or when == "":
        return "-"
    if isinstance(when, str):
        text = when
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return text
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z" if date else "%H:%M:%S %Z")


def human_minutes(minutes: float | None) -> str:
    """For people: minutes as m:ss ("12:05"); "-" if unknown."""
    if minutes is None:
        return "-"
    seconds = round(float(minutes) * 60)
    return f"{seconds // 60}:{seconds % 60:02d}"


def incident_dict(inc: Incident, tz: ZoneInfo, now: datetime | None = None) -> dict[str, Any]:
    """The incident as data. `now` (live): minutes and spend count calls still up until now.

    Counts, minutes, spend, sources, regions, destinations and numbers cover every call;
    `call_ids` lists the calls whose details the incident keeps (its first and last ones, and
    those still up) and `calls_not_listed` says how many more there are. `number_calls`
    (parallel to `numbers`) counts the calls to each number: remediation's evidence; an incident
    that counted more numbers than it keeps (`incident_calls.NUMBERS`, the most recently called)
    says how many it forgot in `numbers_dropped` (absent otherwise)."""
    log = inc.log
    calls = log.ordered()
    accounts = log.sorted_set("accounts")
    numbers = log.sorted_set("numbers")
    return {
        "id": inc.id,
        "site": inc.site,
        "severity": inc.severity.label,
        "score": inc.score,
        "source": inc.source,
        "sources": list(log.sorted_set("sources")),
        "account": accounts[0] if len(accounts) == 1 else ",".join(accounts),
        "rules": [h.rule for h in sorted(inc.hits.values(), key=lambda h: -h.score)],
        "regions": list(log.sorted_set("regions")),
        "destinations": list(log.sorted_set("labels")),
        "numbers": list(numbers),
        "number_calls": [log.numbers[n] for n in numbers],
        "calls": log.count,
        "calls_not_listed": log.count - len(calls),
        "attempts_refused": inc.refused,  # calls the dialplan refused (blocks in force)
        "minutes": round(log.seconds(now) / 60.0, 2),
        "spend": log.spend(now),
        "first_call_at": _iso(inc.first_call_at, tz),
        "last_call_at": _iso(inc.last_call_at, tz),
        "detected_at": _iso(inc.detected_at.get(inc.severity), tz),
        "call_ids": [c.call_id for c in calls],
        "call_numbers": [c.dest.e164 or "" for c in calls],  # parallel to call_ids
        "reasons": inc.reasons(),
    } | ({"numbers_dropped": log.numbers_dropped} if log.numbers_dropped else {})


def not_listed(count: int) -> str:
    """ "… and 1,234 more calls" ("" when every call is listed)."""
    if count <= 0:
        return ""
    return f"… and {count:,} more call{'s' if count != 1 else ''}"


def to_json(incidents: list[Incident], tz: ZoneInfo) -> str:
    return json.dumps([incident_dict(i, tz) for i in incidents], indent=2, ensure_ascii=False)


def to_jsonl(incidents: list[Incident], tz: ZoneInfo) -> str:
    return "".join(
        json.dumps(incident_dict(i, tz), ensure_ascii=False) + "\n" for i in incidents
    )


CSV_FIELDS = (
    "id", "severity", "score", "source", "account", "rules", "regions", "destinations", "calls",
    "attempts_refused", "minutes", "first_call_at", "last_call_at", "detected_at", "reasons",
    "call_ids", "calls_not_listed",
)


def to_csv(incidents: list[Incident], tz: ZoneInfo) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for inc in incidents:
        row = incident_dict(inc, tz)
        for key in ("rules", "regions", "destinations", "call_ids"):
            row[key] = " ".join(row[key])
        row["reasons"] = "; ".join(row["reasons"])
        writer.writerow({k: csv_cell(v) if isinstance(v, str) else v for k, v in row.items()})
    return out.getvalue()


_STYLE = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow"}


def print_table(console: Console, incidents: list[Incident], tz: ZoneInfo) -> None:
    """A summary table, then each incident's reasons as a list under its number."""
    if not incidents:
        console.print("[green]No incidents.[/green]")
        return
    table = Table(title=f"{len(incidents)} incident(s), times in {tz.key}", show_edge=False)
    # on a narrow terminal the source and destinations wrap first, and the first call's time
    # breaks between its date, time and zone, not inside the date ("2026-11-2" / "4")
    for col in ("#", "severity", "score", "source", "destinations", "calls", "minutes"):
        grows = col in ("source", "destinations")
        table.add_column(col, overflow="fold", ratio=1 if grows else None)
    wide = console.width >= 80  # room for a whole date; below, every column folds
    table.add_column("first call", overflow="fold", min_width=10 if wide else None)
    for n, inc in enumerate(incidents, start=1):
        d = incident_dict(inc, tz)
        table.add_row(
            str(n),
            f"[{_STYLE.get(inc.severity, '')}]{d['severity']}[/]",
            str(d["score"]),
            markup(d["source"] + (f" ({d['account']})" if d["account"] else "")),
            markup(", ".join(d["destinations"])),
            str(d["calls"]) + (f" (+{inc.refused} refused)" if inc.refused else ""),
            human_minutes(d["minutes"]),
            human_time(inc.first_call_at, tz),
        )
    console.print(table)
    for n, inc in enumerate(incidents, start=1):
        when = human_time(inc.detected_at.get(inc.severity), tz)
        console.print(f"[bold]#{n}[/bold] {inc.severity.label} since {when} "
                      f"({markup(inc.id)})")
        for reason in inc.reasons():
            console.print(f"   • {markup(reason)}", soft_wrap=True)
        hidden = inc.calls_not_listed
        if hidden:
            console.print(f"   calls listed: the first and last ones {not_listed(hidden)}")

"""The report's incidents in a few words, for people: the HTML banner, the Slack summary.

"ext 377 → Sierra Leone (+232), 40 calls, 03:00–03:20, blocked" — who, where to, how much,
when (with dates when the period spans several days) and whether it was stopped: "blocked"
only when the live monitor really put a block in force, "WOULD BLOCK (dry run)", "block NOT
applied", "not blocked"; nothing when that is unknown (no live monitor state).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

_RANK = {"critical": 0, "warning": 1}


def sort_views(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most severe first, then by first call."""
    return sorted(views, key=lambda v: (_RANK.get(str(v.get("severity")), 9),
                                        str(v.get("first_call_at") or ""), str(v.get("id"))))


def _clock(iso: str | None, dated: bool) -> str:
    if not iso:
        return "?"
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return at.strftime("%m-%d %H:%M" if dated else "%H:%M")


def who(view: dict[str, Any]) -> str:
    source = str(view.get("source", "?"))
    return "all sources (PBX-wide)" if source == "*" else f"ext {source}"


def incident_line(view: dict[str, Any], dated: bool = False) -> str:
    """One incident: severity, who, where to, how many calls, when, blocked or not."""
    dests = [str(d) for d in view.get("destinations") or []]
    where = ", ".join(dests[:3]) + (f" and {len(dests) - 3} more" if len(dests) > 3 else "")
    when = f"{_clock(view.get('first_call_at'), dated)}–{_clock(view.get('last_call_at'), dated)}"
    spend = view.get("spend")
    cur = f" {view['currency']}" if view.get("currency") else ""
    money = f", ≈ {spend:,.2f}{cur}" if isinstance(spend, int | float) else ""
    line = (f"{str(view.get('severity', '')).upper()}: {who(view)} → {where or '-'}, "
            f"{view.get('calls', 0)} calls{money}, {when}")
    block = view.get("block")
    if block and block != "unknown":
        line += f", {block}"
    refused = int(view.get("attempts_refused") or 0)
    if refused:
        line += f", {refused} attempt(s) refused"
    live = str(view.get("live") or "")
    if live.startswith("NOT"):
        line += ", NOT alerted live"
    return line

"""Reconciliation: what the CDRs show against what the live monitor alerted on.

A flagged call (high-risk, or part of an incident the batch engine finds) counts as alerted when
a live incident lists its call id, or, failing that (AMI and CDR ids can differ for calls
originated through Local channels), when a live incident of the same source spans its start
time. Everything else is listed as not alerted, so nothing the CDRs show goes unseen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tollwatch.report.flagged import FlaggedCall
from tollwatch.report.period import Period
from tollwatch.rules.incidents import Incident
from tollwatch.state import StateStore

ALERTED = "alerted"
ALERTED_NEAR = "alerted (same source and time)"
NOT_ALERTED = "NOT alerted"
UNKNOWN = "unknown"
NOT_AVAILABLE = "live monitor state not available"
SLACK = timedelta(seconds=10)  # AMI and CDR clocks of one call differ by about a second


@dataclass
class IncidentStatus:
    id: str
    live: str  # ALERTED / ALERTED_NEAR / NOT_ALERTED / UNKNOWN
    live_ids: list[str] = field(default_factory=list)
    blocked: str | None = None  # what the live monitor blocked, when known


@dataclass
class Reconciliation:
    available: bool
    live_incidents: int = 0
    incidents: dict[str, IncidentStatus] = field(default_factory=dict)
    unseen: list[FlaggedCall] = field(default_factory=list)  # flagged, not alerted live
    live_only: list[dict[str, Any]] = field(default_factory=list)  # live, no flagged call here

    @property
    def note(self) -> str:
        if not self.available:
            return NOT_AVAILABLE
        if not self.unseen:
            return "every flagged call was alerted on by the live monitor"
        return f"{len(self.unseen)} flagged call(s) were NOT alerted on by the live monitor"


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _blocked(view: dict[str, Any]) -> str | None:
    """What remediation did for a live incident, when the stored view says so."""
    for key in ("blocked", "blocks", "remediation"):
        value = view.get(key)
        if not value:
            continue
        if isinstance(value, str):
            return value
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        if isinstance(value, dict):
            return ", ".join(f"{k} {v}" for k, v in value.items() if v)
        return "yes"
    return None


def live_incidents(store: StateStore, period: Period) -> list[dict[str, Any]]:
    """Live incidents whose calls may touch the period (queried with a margin, then filtered)."""
    since = (period.start - timedelta(days=2)).astimezone(period.tz).isoformat()
    until = (period.end + timedelta(days=1)).astimezone(period.tz).isoformat()
    out = []
    for view in store.incidents(since=since, until=until):
        first = _parse(view.get("first_call_at"))
        last = _parse(view.get("last_call_at")) or first
        if first is None or last is None:
            continue
        if last >= period.start - SLACK and first < period.end + SLACK:
            out.append(view)
    return out


def reconcile(
    flagged: list[FlaggedCall],
    incidents: list[Incident],
    store: StateStore | None,
    period: Period,
) -> Reconciliation:
    if store is None:
        rec = Reconciliation(available=False)
        for inc in incidents:
            rec.incidents[inc.id] = IncidentStatus(inc.id, UNKNOWN)
        for fc in flagged:
            fc.live = UNKNOWN
        return rec
    views = live_incidents(store, period)
    rec = Reconciliation(available=True, live_incidents=len(views))
    by_id: dict[str, dict[str, Any]] = {}
    spans: list[tuple[set[str], datetime, datetime, dict[str, Any]]] = []
    for view in views:
        for cid in view.get("call_ids") or []:
            by_id.setdefault(str(cid), view)
        first = _parse(view.get("first_call_at"))
        last = _parse(view.get("last_call_at")) or first
        if first is not None and last is not None:
            sources = {str(s) for s in view.get("sources") or [view.get("source")]}
            spans.append((sources, first - SLACK, last + SLACK, view))
    matched: dict[str, dict[str, Any]] = {}
    for fc in flagged:
        hit = by_id.get(fc.call_id)
        if hit is not None:
            fc.live = ALERTED
        else:
            hit = next(
                (v for srcs, a, b, v in spans if fc.source in srcs and a <= fc.start <= b), None
            )
            fc.live = ALERTED_NEAR if hit is not None else NOT_ALERTED
        if hit is not None:
            matched[str(hit.get("id"))] = hit
        else:
            rec.unseen.append(fc)
    calls_of: dict[str, list[FlaggedCall]] = {}
    for fc in flagged:
        if fc.incident_id:
            calls_of.setdefault(fc.incident_id, []).append(fc)
    for inc in incidents:
        mine = calls_of.get(inc.id, [])
        lives = [fc.live for fc in mine]
        if ALERTED in lives:
            live = ALERTED
        elif ALERTED_NEAR in lives:
            live = ALERTED_NEAR
        else:
            live = NOT_ALERTED
        ids: list[str] = []
        blocked: list[str] = []
        for fc in mine:
            live_view = by_id.get(fc.call_id)
            if live_view is None:
                continue
            vid = str(live_view.get("id"))
            if vid not in ids:
                ids.append(vid)
                b = _blocked(live_view)
                if b:
                    blocked.append(b)
        rec.incidents[inc.id] = IncidentStatus(
            inc.id, live, ids, "; ".join(blocked) if blocked else None
        )
    rec.live_only = [v for v in views if str(v.get("id")) not in matched]
    return rec

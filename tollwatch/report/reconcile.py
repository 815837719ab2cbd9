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

from tollwatch.alerting.remediation.policy import Target
from tollwatch.alerting.remediation.store import BlockStore
from tollwatch.report.flagged import FlaggedCall
from tollwatch.report.period import Period
from tollwatch.rules.incidents import Incident
from tollwatch.state import StateStore

ALERTED = "alerted"
ALERTED_NEAR = "alerted (same source and time)"
NOT_ALERTED = "NOT alerted"
UNKNOWN = "unknown"
NOT_AVAILABLE = "live monitor state not available"
BLOCKED = "blocked"
WOULD_BLOCK = "WOULD BLOCK (dry run)"
NOT_APPLIED = "block NOT applied"
NOT_BLOCKED = "not blocked"
SLACK = timedelta(seconds=10)  # AMI and CDR clocks of one call differ by about a second


@dataclass
class IncidentStatus:
    id: str
    live: str  # ALERTED / ALERTED_NEAR / NOT_ALERTED / UNKNOWN
    live_ids: list[str] = field(default_factory=list)
    blocked: str | None = None  # what the live monitor blocked (or would have), when known
    block: str = UNKNOWN  # BLOCKED / WOULD_BLOCK / NOT_APPLIED / NOT_BLOCKED / UNKNOWN
    refused: int = 0  # call attempts the dialplan refused because of the block


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


def block_state(entries: list[dict[str, Any]]) -> tuple[str, str | None]:
    """The block state of an incident from its blocks ({"what", "dry_run", "failed"}): blocked
    only when one really was in force; a dry run's blocks WOULD BLOCK. And what, in words."""
    real = [b for b in entries if not b.get("dry_run") and not b.get("failed")]
    dry = [b for b in entries if b.get("dry_run")]
    chosen = real or dry or entries
    what = ", ".join(dict.fromkeys(str(b.get("what") or b.get("value")) for b in chosen))
    if real:
        return BLOCKED, what
    if dry:
        return WOULD_BLOCK, what
    if entries:
        return NOT_APPLIED, what
    return NOT_BLOCKED, None


def incident_blocks(view: dict[str, Any], blocks: BlockStore | None) -> list[dict[str, Any]]:
    """The blocks made for a live incident: blocks.sqlite3 when there is one (every block and
    whether it was a dry run), else the "blocks" list the daemon saved on the incident."""
    iid = str(view.get("id"))
    if blocks is not None:
        recs = blocks.of_incident(iid)
        if recs:
            return [{"what": Target(r.kind, r.value).what, "dry_run": r.dry_run,
                     "failed": not r.dry_run and not r.applied} for r in recs]
    saved = view.get("blocks")
    return [b for b in saved if isinstance(b, dict)] if isinstance(saved, list) else []


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


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
    blocks: BlockStore | None = None,
) -> Reconciliation:
    """`blocks`: the daemon's block records (blocks.sqlite3), for the real block state."""
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
    hit_of: dict[str, dict[str, Any]] = {}  # flagged call id -> the live incident it is in
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
            hit_of[fc.call_id] = hit
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
        entries: list[dict[str, Any]] = []
        refused = 0
        for fc in mine:
            live_view = hit_of.get(fc.call_id)
            if live_view is None:
                continue
            vid = str(live_view.get("id"))
            if vid not in ids:
                ids.append(vid)
                entries.extend(incident_blocks(live_view, blocks))
                refused += _int(live_view.get("attempts_refused"))
        state, what = block_state(entries)
        rec.incidents[inc.id] = IncidentStatus(inc.id, live, ids, what, state, refused)
    rec.live_only = [v for v in views if str(v.get("id")) not in matched]
    return rec

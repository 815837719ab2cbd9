"""The period's incidents (the batch engine over the calls kept by the pass) and flagged calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from tollwatch.config import Settings
from tollwatch.report.figures import Figures
from tollwatch.rules.batch import run_frame
from tollwatch.rules.builtin.new_destination import NewDestination
from tollwatch.rules.calendar import BusinessCalendar
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.engine import Engine
from tollwatch.rules.incidents import Incident
from tollwatch.settings import rule_specs


@dataclass
class FlaggedCall:
    call_id: str
    start: datetime
    source: str
    account: str
    dialed: str
    e164: str | None
    region: str | None
    destination: str
    dest_class: str
    high_risk: bool
    answered: bool
    billsec: int
    spend: float | None
    off_hours: str | None  # why the office was closed, if it was
    incident_id: str = ""
    severity: str = ""
    reasons: list[str] = field(default_factory=list)
    live: str = ""  # reconciliation: "alerted", "alerted (same source and time)", "NOT alerted"


def period_incidents(settings: Settings, figs: Figures, classifier: Classifier) -> list[Incident]:
    """Replay the kept calls (period plus warm-up) through a fresh engine; keep the incidents
    with a call in the period. new_destination starts from the baseline seen in the pass."""
    frame = figs.relevant
    if frame is None or frame.height == 0:
        return []
    engine = Engine.from_settings(settings, rule_specs(settings))
    engine.tracker.keep = None  # every call of an incident is flagged: keep them all
    for rule in engine.rules:
        if isinstance(rule, NewDestination) and rule.options.during == "any":
            rule.history_start = figs.history_start
            rule.last_seen.update(figs.prior_last_seen)
    incidents = run_frame(engine, frame.drop("billsec"), classifier, settings.allowlist.sources)
    p = figs.period
    kept = [
        i for i in incidents
        if i.severity > 0 and any(p.start <= c.start < p.end for c in i.calls.values())
    ]
    return sorted(kept, key=lambda i: (i.first_call_at, i.id))


def _label(row: dict[str, Any]) -> str:
    if row["region_name"] and row["calling_code"]:
        return f"{row['region_name']} (+{row['calling_code']})"
    return str(row["e164"] or row["dialed"] or "")


def flagged_calls(
    figs: Figures, incidents: list[Incident], calendar: BusinessCalendar
) -> list[FlaggedCall]:
    """Calls of the period that are in an incident or go to a high-risk destination."""
    frame = figs.relevant
    if frame is None or frame.height == 0:
        return []
    p = figs.period
    by_call: dict[str, Incident] = {}
    for incident in incidents:
        for cid in incident.calls:
            by_call.setdefault(cid, incident)
    ids = list(by_call)
    rows = frame.filter(
        (pl.col("start") >= p.utc_start)
        & (pl.col("start") < p.utc_end)
        & (pl.col("high_risk").fill_null(False) | pl.col("call_id").is_in(ids))
    ).sort("start", "call_id")
    out: list[FlaggedCall] = []
    for row in rows.iter_rows(named=True):
        billsec = max(0, int(row["billsec"] or 0))
        rate = row["rate"]
        inc = by_call.get(row["call_id"])
        fc = FlaggedCall(
            call_id=row["call_id"],
            start=row["start"],
            source=row["source"] or "",
            account=row["account"] or "",
            dialed=row["dialed"] or "",
            e164=row["e164"],
            region=row["region"],
            destination=_label(row),
            dest_class=row["dest_class"],
            high_risk=bool(row["high_risk"]),
            answered=row["answer"] is not None,
            billsec=billsec,
            spend=round(rate * billsec / 60.0, 4) if rate is not None else None,
            off_hours=calendar.closed_reason(row["start"])
            if row["dest_class"] == "international"
            else None,
        )
        if inc is not None:
            fc.incident_id = inc.id
            fc.severity = inc.severity.label
            fc.reasons = inc.reasons()
        else:
            prefix = row["risk_prefix"]
            fc.reasons = [f"call to a high-risk destination: {fc.destination}, prefix {prefix}"]
        out.append(fc)
    return out

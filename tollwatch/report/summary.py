"""A report's summary: a compact dict (for `report --json` and the fleet report) and a few lines
of plain text for Slack (escaped for mrkdwn where it is posted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tollwatch.report.words import incident_line


def summarize(doc: dict[str, Any], html: Path) -> dict[str, Any]:
    """The compact summary (Slack, `report --json`) of a report's figures.json."""
    t = doc["totals"]
    base = doc["baseline"]
    rec = doc["reconciliation"]
    return {
        "site": doc["site"],
        "period": doc["period"]["label"],
        "calls": t["calls"],
        "answered": t["answered"],
        "international": t["international"],
        "high_risk": t["high_risk"],
        "off_hours_international": t["off_hours_international"],
        "minutes": t["minutes"],
        "spend": t["spend"],
        "currency": doc["currency"],
        "compared": (
            {"words": base["words"], "kind": base["kind"],
             **{k: base["average"][k] for k in ("calls", "international", "high_risk", "spend")}}
            if base else None
        ),
        "day_kind": doc["period"].get("what"),
        "missing_days": doc.get("missing_days") or [],
        "attempts_refused": sum(int(i.get("attempts_refused") or 0) for i in doc["incidents"]),
        "incidents": len(doc["incidents"]),
        "critical": sum(1 for i in doc["incidents"] if i["severity"] == "critical"),
        "not_alerted_live": len(rec["unseen"]) if rec["available"] else None,
        "reconciliation": rec["note"],
        "first_time_countries": [c["region"] for c in doc["first_time_countries"]],
        "top_countries": [f"{c['name']} {c['calls']}" for c in doc["top_countries"][:3]],
        "malformed_rows": doc["malformed"]["rows"],
        "unreadable_files": doc["malformed"].get("unreadable_files", []),
        "report": str(html),
        "incident_lines": [incident_line(v, dated=doc["period"]["days"] > 1)
                           for v in doc["incidents"][:10]],
        "coverage_note": doc.get("coverage_note"),
        "validity": doc.get("validity"),
        "timezone": doc["period"]["timezone"],
    }


def summary_text(summary: dict[str, Any]) -> str:
    """The summary as a few lines of plain text (e.g. a Slack message)."""
    s = summary
    avg = s.get("compared") or {}
    vs = (f" (avg of the {avg['words']}: {avg['calls']:g})" if avg.get("calls") is not None
          else "")
    day = f" ({s['day_kind']})" if s.get("day_kind") else ""
    spend = f", est. spend {s['spend']:g} {s['currency']}" if s.get("spend") is not None else ""
    lines = [
        f"tollwatch daily report {s['site']} {s['period']}{day}: {s['calls']} outbound calls{vs}, "
        f"{s['international']} international, {s['high_risk']} high-risk, "
        f"{s['off_hours_international']} international off hours{spend}",
        f"{s['incidents']} incident(s), {s['critical']} critical; {s['reconciliation']}",
    ]
    for line in s.get("incident_lines") or []:
        lines.append("• " + line)
    if s.get("incidents", 0) > len(s.get("incident_lines") or []):
        lines.append(f"… and {s['incidents'] - len(s['incident_lines'])} more in the report")
    if s.get("coverage_note"):
        lines.append("NOTE: " + s["coverage_note"])
    if s.get("first_time_countries"):
        lines.append("first-time countries: " + ", ".join(s["first_time_countries"]))
    if s.get("malformed_rows"):
        lines.append(f"{s['malformed_rows']} malformed CDR row(s) skipped")
    lines.append(s["report"])
    return "\n".join(lines)

"""What remediation tells the alerters: block entries and the view of a lift."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tollwatch.alerting.base import IncidentView
from tollwatch.alerting.remediation.policy import Target
from tollwatch.alerting.remediation.store import BlockRecord
from tollwatch.config.schema import Settings


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def block_entry(rec: BlockRecord, failed: str | None = None) -> dict[str, Any]:
    """One item of a notification view's "blocks" list. `failed`: why AstDB did not take a
    real block (recorded, re-applied when AMI is back): it is not in force yet."""
    target = Target(rec.kind, rec.value)
    entry: dict[str, Any] = {
        "kind": rec.kind,
        "value": rec.value,
        "what": target.what,
        "pbx": rec.pbx,
        "expires_at": iso(rec.expires_at),
        "lift": target.lift,
        "dry_run": rec.dry_run,
        "reason": rec.reason,
        "origin": rec.origin,
    }
    if failed and not rec.dry_run:
        entry["failed"] = failed
    return entry


def unblock_view(settings: Settings, records: list[BlockRecord]) -> IncidentView:
    """The view of a lift (expiry or `tollwatch unblock`): not an incident's full view, so
    alerters must not expect score, calls or first_call_at in it."""
    first = records[0]
    return {
        "id": first.incident_id or "",
        "site": settings.site.name,
        "pbx": first.pbx,
        "severity": "none",
        "source": first.value if first.kind == "source" else "",
        "reasons": [f"{Target(r.kind, r.value)} unblocked ({r.lifted_by})" for r in records],
        "blocks": [block_entry(r) for r in records],
        "dry_run": all(r.dry_run for r in records),
    }


def reason_of(view: IncidentView) -> str:
    rules = ",".join(str(r) for r in view.get("rules") or [])
    return f"incident {view.get('id', '?')} {view.get('severity', '')} {rules}".strip()

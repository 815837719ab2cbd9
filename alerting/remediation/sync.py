"""Keep AstDB in step with the block records: put back what Asterisk lost, show drift.

`reapply` DBGets each active record and DBPuts the missing ones (after a restart that lost
AstDB, or periodically whatever the AMI account may read). `astdb_state` reads the families
with DBGetTree; `drift` compares them with the records for `tollwatch blocks`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from tollwatch.alerting.remediation import astdb
from tollwatch.alerting.remediation.astdb import ActionError, ActionSender
from tollwatch.alerting.remediation.policy import Target
from tollwatch.alerting.remediation.store import BlockRecord

log = logging.getLogger("tollwatch.remediation")


async def reapply(
    pbx: str, sender: ActionSender, records: Sequence[BlockRecord], families: dict[str, str],
    held: list[BlockRecord] | None = None,
) -> list[BlockRecord]:
    """Put back the records AstDB lost; the ones put back. `held` gets every record AstDB
    holds after the check (found there or put back)."""
    restored: list[BlockRecord] = []
    for rec in records:
        family = families[rec.kind]
        try:
            if await astdb.db_get(sender, family, rec.value) is None:
                value = astdb.block_value(rec.expires_at, rec.reason)
                await astdb.db_put(sender, family, rec.value, value)
                restored.append(rec)
            if held is not None:
                held.append(rec)
        except Exception as exc:
            log.warning("pbx %s: could not check or re-apply %s (%s)", pbx,
                        Target(rec.kind, rec.value), exc)  # fmt: skip
    return restored


async def astdb_state(sender: ActionSender, families: dict[str, str]) -> dict[tuple[str, str], str]:
    """{(kind, value): AstDB value} of every entry under the block families (DBGetTree)."""
    out: dict[tuple[str, str], str] = {}
    for kind, family in families.items():
        resp = await sender.send_action({"Action": "DBGetTree", "Family": family})
        if not astdb.succeeded(resp):
            text = astdb.error_text(resp)
            if "not found" in text.lower() or "no entries" in text.lower():
                continue
            raise ActionError(f"DBGetTree {family}: {text}")
        for msg in astdb.messages(resp):
            if msg.get("Event") != "DBGetTreeResponse":
                continue
            key = str(msg.get("Key", ""))
            fam = str(msg.get("Family", family))
            if fam != family and key.startswith("/"):  # some versions put the full path in Key
                key = key.rsplit("/", 1)[-1]
            out[(kind, key.rsplit("/", 1)[-1])] = str(msg.get("Val", ""))
    return out


@dataclass(frozen=True)
class Drift:
    missing: list[BlockRecord]  # active here, absent from AstDB (the dialplan lets calls pass)
    unknown: list[tuple[str, str, str]]  # (kind, value, AstDB value) with no active record
    expired_in_astdb: list[tuple[str, str, str]]  # entries whose expiry has passed


def drift(records: Sequence[BlockRecord], state: dict[tuple[str, str], str], now: int) -> Drift:
    active = {(r.kind, r.value) for r in records if not r.dry_run}
    missing = [r for r in records if not r.dry_run and (r.kind, r.value) not in state]
    unknown, expired = [], []
    for (kind, value), val in sorted(state.items()):
        expires, _ = astdb.parse_value(val)
        if expires is not None and expires <= now:
            expired.append((kind, value, val))
        elif (kind, value) not in active:
            unknown.append((kind, value, val))
    return Drift(missing, unknown, expired)

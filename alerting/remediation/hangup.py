"""Hang up an incident's calls still up, but only those a block in force applies to.

The channels come from CoreShowChannels, matched to the incident's call ids (Uniqueid, else
Linkedid); each channel's number is read from its Dial data (else its extension) and checked
against the blocks in force: a call to a destination nobody blocked goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tollwatch.alerting.remediation import astdb
from tollwatch.alerting.remediation.astdb import ActionSender
from tollwatch.alerting.remediation.policy import Target
from tollwatch.cdr_ingest.dialed import dialed_number

log = logging.getLogger("tollwatch.remediation")

# (blocks in force, dialed number, source) -> the block that applies, or None
Covers = Callable[[Sequence[Target], str, str], Target | None]


def chosen(up: list[dict[str, str]], call_ids: set[str]) -> list[dict[str, str]]:
    """The incident's calling channels up (by Uniqueid, else by Linkedid)."""
    mine = [c for c in up if c.get("Uniqueid") in call_ids]
    return mine or [c for c in up if c.get("Linkedid") in call_ids]


def number_of(channel: Mapping[str, str]) -> str:
    """The Dial target's number (as batch reads lastdata), else the extension."""
    return dialed_number(channel.get("Application", ""), channel.get("ApplicationData", ""),
                         channel.get("Exten", ""))  # fmt: skip


async def hang_up(
    pbx: str,
    sender: ActionSender | None,
    view: Mapping[str, Any],
    blocks: Sequence[Target],
    covers: Covers,
    dry: bool,
) -> list[str]:
    """Hang up the incident's calls still up that one of `blocks` applies to; the channels
    hung up (in a dry run: none, the ones it would hang up are logged)."""
    call_ids = {str(c) for c in view.get("call_ids") or []}
    source = str(view.get("source", ""))
    if not call_ids or not blocks or sender is None:
        return []
    try:
        up = await astdb.channels(sender)
    except Exception as exc:
        log.warning("pbx %s: cannot list channels (%s); not hanging up", pbx, exc)
        return []
    hung: list[str] = []
    for chan in chosen(up, call_ids):
        number = number_of(chan)
        block = covers(blocks, number, source)
        if block is None:
            continue
        name = chan.get("Channel", "")
        if dry:
            log.warning("pbx %s: WOULD HANG UP (dry run) %s (call to %s, block %s)",
                        pbx, name, number, block)  # fmt: skip
            continue
        try:
            done = await astdb.hangup(sender, name)
        except Exception as exc:
            log.warning("pbx %s: hang-up of %s failed (%s)", pbx, name, exc)
            continue
        if done:
            log.warning("pbx %s: hung up %s (call to %s, blocked by %s)", pbx, name, number, block)
        hung.extend(done)
    return hung

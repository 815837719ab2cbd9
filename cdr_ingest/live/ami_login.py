"""What an AMI session checks right after login: Asterisk's start time, and the account's rights.

`session_start(source, down_since)` asks `CoreStatus` (when Asterisk started: a different start
time than last session means it restarted, whatever events the account may read) and
`ListCommands` (the actions the account may send), and logs once per source, in plain words,
what the account lacks for tollwatch's work. It returns the `PbxConnected` event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from tollwatch.cdr_ingest.live.events import PbxConnected

log = logging.getLogger("tollwatch.cdr_ingest.live.ami")

# action -> (the manager.conf right it needs, what tollwatch does with it)
NEEDED = {
    "DBPut": ("write = system", "apply blocks"),
    "DBGet": ("write = system", "check that AstDB still holds the blocks"),
    "DBDel": ("write = system", "lift blocks"),
    "DBGetTree": ("write = system", "show AstDB's blocks in `tollwatch blocks`"),
    "CoreStatus": ("write = system", "tell an Asterisk restart from a reconnect"),
    "CoreShowChannels": ("write = system", "resync calls up after a reconnect"),
    "Hangup": ("write = call", "hang up blocked calls still up"),
}

Send = Callable[[Mapping[str, str]], Awaitable[Any]]


def _first(resp: Any) -> Mapping[str, Any]:
    if isinstance(resp, list | tuple):
        return resp[0] if resp else {}
    return resp if isinstance(resp, Mapping) else {}


def _ok(resp: Mapping[str, Any]) -> bool:
    return str(resp.get("Response", "")).lower() == "success"


async def startup_stamp(send: Send) -> str | None:
    """Asterisk's start date and time ("2026-11-30 16:22:14", the PBX's clock), or None."""
    resp = _first(await send({"Action": "CoreStatus"}))
    if not _ok(resp):
        return None
    date, clock = str(resp.get("CoreStartupDate", "")), str(resp.get("CoreStartupTime", ""))
    return f"{date} {clock}".strip() or None


async def missing_rights(send: Send) -> list[str]:
    """Plain sentences for each needed action the account may not send."""
    resp = _first(await send({"Action": "ListCommands"}))
    if not _ok(resp):
        return []  # an Asterisk that does not answer ListCommands: nothing to tell
    allowed = {str(k) for k in resp}
    out = []
    for action, (right, why) in NEEDED.items():
        if action not in allowed:
            out.append(f"{action} ({right}: needed to {why})")
    return out


async def session_start(
    pbx: str,
    send: Send,
    at: datetime,
    down_since: datetime | None,
    told: set[str],
) -> PbxConnected:
    """The checks of a new session; `told` keeps what was already logged for this source."""
    stamp: str | None = None
    try:
        stamp = await startup_stamp(send)
        missing = await missing_rights(send)
    except Exception as exc:  # a check must never cost the session
        log.warning("AMI %s: login checks failed (%s)", pbx, exc)
        missing = []
    text = "; ".join(missing)
    if missing and text not in told:
        told.add(text)
        log.warning("AMI %s: the account may not send %s. Add the right to its entry in "
                    "manager.conf (see the README's account).", pbx, text)  # fmt: skip
    if stamp is None and "corestatus" not in told:
        told.add("corestatus")
        log.warning("AMI %s: CoreStatus refused: an Asterisk restart cannot be told from "
                    "a reconnect; blocks are checked in AstDB on every reconnect anyway",
                    pbx)  # fmt: skip
    return PbxConnected(pbx, at, _parse(stamp), down_since)


def _parse(stamp: str | None) -> datetime | None:
    """The start time as a naive datetime on the PBX's clock (the daemon gives it a zone)."""
    if not stamp:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(stamp, fmt)
        except ValueError:
            continue
    return None

"""Print incident changes to the console or log, for sites without Slack."""

from __future__ import annotations

import logging
from typing import IO, Any

from tollwatch.alerting.base import IncidentView
from tollwatch.alerting.textsafe import plain

log = logging.getLogger("tollwatch.alert")


class ConsoleAlerter:
    """Openings and escalations in full; growth as one short line when the call count (or the
    count of refused attempts) moves; blocks and lifts in one line each."""

    name = "console"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream
        self._seen: dict[str, tuple[Any, Any]] = {}

    async def send(self, kind: str, view: IncidentView) -> None:
        key = str(view.get("id", ""))
        counts = (view.get("calls"), view.get("attempts_refused"))
        if kind == "updated":
            if self._seen.get(key) == counts:
                return
            line = format_update(view)
        elif kind in ("blocked", "unblocked"):
            line = format_block(kind, view)
        else:
            line = format_change(kind, view)
        if kind not in ("blocked", "unblocked"):
            self._seen[key] = counts
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()
        else:
            for part in line.split("\n"):  # one log line each (the parts are escaped)
                log.warning("%s", part)


def _refused(view: IncidentView) -> str:
    n = int(view.get("attempts_refused") or 0)
    return f", {n} attempt(s) refused" if n else ""


def format_change(kind: str, view: IncidentView) -> str:
    head = {"opened": "NEW", "escalated": "ESCALATED"}.get(kind, kind.upper())
    dests = ", ".join(plain(d) for d in view.get("destinations", [])) or "-"
    lines = [
        f"[{head}] {plain(view.get('severity', '?')).upper()} (score {view.get('score', '?')}) "
        f"source {plain(view.get('source', '?'))} -> {dests}: {view.get('calls', 0)} call(s)"
        f"{_refused(view)} since {plain(view.get('first_call_at', '?'))}  "
        f"[{plain(view.get('id', '?'))}]"
    ]
    lines += [f"    - {plain(reason)}" for reason in view.get("reasons", [])]
    return "\n".join(lines)


def format_update(view: IncidentView) -> str:
    return (
        f"[UPDATE] {plain(view.get('severity', '?')).upper()} source "
        f"{plain(view.get('source', '?'))}: now {view.get('calls', 0)} calls{_refused(view)}, "
        f"{view.get('minutes', 0)} min  [{plain(view.get('id', '?'))}]"
    )


def format_block(kind: str, view: IncidentView) -> str:
    """A block applied (or, in a dry run, that would be) or lifted, with how to lift it."""
    parts = []
    for b in view.get("blocks") or []:
        what = plain(b.get("what") or f"{b.get('kind')} {b.get('value')}")
        if kind == "unblocked":
            parts.append(f"{what}: block ended")
        else:
            verb = "would block (dry run)" if b.get("dry_run") else "blocked"
            parts.append(f"{verb} {what} until {b.get('expires_at', '?')} "
                         f"(lift: {plain(b.get('lift', '?'))})")  # fmt: skip
    for r in view.get("refused") or []:
        parts.append(f"not blocking {plain(r.get('value', '?'))}: {plain(r.get('why', ''))}")
    if view.get("hung_up"):
        parts.append(f"hung up {len(view['hung_up'])} call(s)")
    head = "[UNBLOCKED]" if kind == "unblocked" else "[BLOCK]"
    where = plain(view.get("pbx", "?"))
    iid = plain(view.get("id", "")) or "-"
    return f"{head} pbx {where}: " + ("; ".join(parts) or "nothing") + f"  [{iid}]"

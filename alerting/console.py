"""Print incident changes to the console or log, for sites without Slack."""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime, tzinfo
from typing import IO, Any

from tollwatch.alerting.base import IncidentView, pending_note
from tollwatch.alerting.blockkit import block_command, minutes_text
from tollwatch.alerting.textsafe import plain

log = logging.getLogger("tollwatch.alert")
SEEN_MAX = 4096  # incidents whose last printed counts are kept (a daemon runs for months)


class ConsoleAlerter:
    """Openings and escalations in full; growth as one short line when the call count (or the
    count of refused attempts) moves; blocks and lifts in one line each."""

    name = "console"

    def __init__(self, stream: IO[str] | None = None, tz: tzinfo | None = None) -> None:
        """`tz`: the site's zone, for times as people read them (None: the view's offset)."""
        self.stream = stream
        self.tz = tz
        # the counts last printed per incident, to print growth only when it moves; the most
        # recently changed SEEN_MAX incidents (alerters are not told when one closes): a
        # forgotten one prints its next growth line once more, nothing is lost
        self._seen: OrderedDict[str, tuple[Any, Any]] = OrderedDict()

    async def send(self, kind: str, view: IncidentView) -> None:
        key = str(view.get("id", ""))
        counts = (view.get("calls"), view.get("attempts_refused"))
        if kind == "updated":
            if self._seen.get(key) == counts:
                return
            line = format_update(view)
        elif kind in ("blocked", "unblocked"):
            line = format_block(kind, view, self.tz)
        else:
            line = format_change(kind, view, self.tz)
        if kind not in ("blocked", "unblocked"):
            self._seen[key] = counts
            self._seen.move_to_end(key)
            if len(self._seen) > SEEN_MAX:
                self._seen.popitem(last=False)
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()
        else:
            for part in line.split("\n"):  # one log line each (the parts are escaped)
                log.warning("%s", part)


def _refused(view: IncidentView) -> str:
    n = int(view.get("attempts_refused") or 0)
    return f", {n} attempt(s) refused" if n else ""


def human_time(value: object, tz: tzinfo | None = None) -> str:
    """An ISO time for people: "2026-11-24 22:30:11 JST" in `tz`, else with its own offset."""
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return plain(value)
    if tz is not None and at.tzinfo is not None:
        return at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")
    return at.isoformat(sep=" ")


def format_change(kind: str, view: IncidentView, tz: tzinfo | None = None) -> str:
    head = {"opened": "NEW", "escalated": "ESCALATED"}.get(kind, kind.upper())
    dests = ", ".join(plain(d) for d in view.get("destinations", [])) or "-"
    lines = [
        f"[{head}] {plain(view.get('severity', '?')).upper()} (score {view.get('score', '?')}) "
        f"source {plain(view.get('source', '?'))} -> {dests}: {view.get('calls', 0)} call(s)"
        f"{_refused(view)} since {human_time(view.get('first_call_at', '?'), tz)}  "
        f"[{plain(view.get('id', '?'))}]"
    ]
    lines += [f"    - {plain(reason)}" for reason in view.get("reasons", [])]
    return "\n".join(lines)


def format_update(view: IncidentView) -> str:
    return (
        f"[UPDATE] {plain(view.get('severity', '?')).upper()} source "
        f"{plain(view.get('source', '?'))}: now {view.get('calls', 0)} calls{_refused(view)}, "
        f"talk time {minutes_text(view.get('minutes', 0))}  [{plain(view.get('id', '?'))}]"
    )


def format_block(kind: str, view: IncidentView, tz: tzinfo | None = None) -> str:
    """A block applied, one a dry run WOULD apply, or a lift, with how to lift (or apply) it.
    The head says what happened: [BLOCKED] only when AstDB took a real block."""
    parts = []
    applied = would = failed = 0
    for b in view.get("blocks") or []:
        what = plain(b.get("what") or f"{b.get('kind')} {b.get('value')}")
        until = human_time(b.get("expires_at", "?"), tz)
        if kind == "unblocked":
            parts.append(f"{what}: block ended")
        elif b.get("dry_run"):
            would += 1
            parts.append(f"WOULD BLOCK {what} until {until} (dry run; to block now: "
                         f"{plain(block_command(b))})")  # fmt: skip
        elif b.get("failed"):
            failed += 1
            parts.append(f"NOT applied yet: {what} ({plain(b['failed'])}; "
                         f"{pending_note(str(b['failed']))})")  # fmt: skip
        else:
            applied += 1
            parts.append(f"blocked {what} until {until} (lift: {plain(b.get('lift', '?'))})")
    for r in view.get("refused") or []:
        parts.append(f"not blocking {plain(r.get('value', '?'))}: {plain(r.get('why', ''))}")
    if view.get("hung_up"):
        parts.append(f"hung up {len(view['hung_up'])} call(s)")
    if kind == "unblocked":
        head = "[UNBLOCKED]"
    elif applied or view.get("hung_up"):
        head = "[BLOCKED]"
    elif would:
        head = "[WOULD BLOCK]"
    elif failed:
        head = "[BLOCK FAILED]"
    else:
        head = "[NOT BLOCKED]"
    where = plain(view.get("pbx", "?"))
    iid = plain(view.get("id", "")) or "-"
    return f"{head} pbx {where}: " + ("; ".join(parts) or "nothing") + f"  [{iid}]"

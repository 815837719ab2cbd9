"""Print incident changes to the console or log, for sites without Slack."""

from __future__ import annotations

import logging
from typing import IO

from alerting.base import IncidentView

log = logging.getLogger("tollwatch.alert")


class ConsoleAlerter:
    """Openings and escalations in full; growth as one short line when the call count moves."""

    name = "console"

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream
        self._calls: dict[str, int] = {}

    async def send(self, kind: str, view: IncidentView) -> None:
        if kind == "updated":
            if self._calls.get(view["id"]) == view["calls"]:
                return
            line = format_update(view)
        else:
            line = format_change(kind, view)
        self._calls[view["id"]] = view["calls"]
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()
        else:
            log.warning("%s", line)


def format_change(kind: str, view: IncidentView) -> str:
    head = {"opened": "NEW", "escalated": "ESCALATED"}.get(kind, kind.upper())
    dests = ", ".join(view.get("destinations", [])) or "-"
    lines = [
        f"[{head}] {view['severity'].upper()} (score {view['score']}) source {view['source']} "
        f"-> {dests}: {view['calls']} call(s) since {view['first_call_at']}  [{view['id']}]"
    ]
    lines += [f"    - {reason}" for reason in view.get("reasons", [])]
    return "\n".join(lines)


def format_update(view: IncidentView) -> str:
    return (
        f"[UPDATE] {view['severity'].upper()} source {view['source']}: now {view['calls']} calls,"
        f" {view['minutes']} min  [{view['id']}]"
    )

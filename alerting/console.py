"""Print incident changes to the console or log, for sites without Slack."""

from __future__ import annotations

import logging
from typing import TextIO

from alerting.base import IncidentView

log = logging.getLogger("tollwatch.alert")


class ConsoleAlerter:
    name = "console"

    def __init__(self, stream: TextIO | None = None, updates: bool = True) -> None:
        self.stream = stream
        self.updates = updates

    async def send(self, kind: str, view: IncidentView) -> None:
        if kind == "updated" and not self.updates:
            return
        line = format_change(kind, view)
        if self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()
        else:
            log.warning("%s", line)


def format_change(kind: str, view: IncidentView) -> str:
    head = {"opened": "NEW", "escalated": "ESCALATED", "updated": "UPDATE"}.get(kind, kind)
    dests = ", ".join(view.get("destinations", [])) or "-"
    reasons = "; ".join(view.get("reasons", []))
    return (
        f"[{head}] {view['severity'].upper()} score {view['score']} source {view['source']} "
        f"-> {dests}: {view['calls']} calls since {view['first_call_at']} ({view['id']}): "
        f"{reasons}"
    )

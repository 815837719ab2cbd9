"""Print incident changes to the console or log, for sites without Slack."""

from __future__ import annotations

import logging
from typing import IO

from alerting.base import IncidentView
from alerting.textsafe import plain

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
            for part in line.split("\n"):  # one log line each (the parts are escaped)
                log.warning("%s", part)


def format_change(kind: str, view: IncidentView) -> str:
    head = {"opened": "NEW", "escalated": "ESCALATED"}.get(kind, kind.upper())
    dests = plain(", ".join(view.get("destinations", [])) or "-")
    lines = [
        f"[{head}] {plain(view['severity']).upper()} (score {view.get('score', '-')}) source "
        f"{plain(view['source'])} -> {dests}: {view.get('calls', '-')} call(s) since "
        f"{plain(view.get('first_call_at', '-'))}  [{plain(view['id'])}]"
    ]
    lines += [f"    - {plain(reason)}" for reason in view.get("reasons", [])]
    return "\n".join(lines)


def format_update(view: IncidentView) -> str:
    return (
        f"[UPDATE] {plain(view['severity']).upper()} source {plain(view['source'])}: now "
        f"{view['calls']} calls, {view['minutes']} min  [{plain(view['id'])}]"
    )

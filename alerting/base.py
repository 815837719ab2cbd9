"""The alerter seam: rules never know who is told. An alerter gets each incident change."""

from __future__ import annotations

from typing import Any, Protocol

IncidentView = dict[str, Any]  # the JSON shape `tollwatch scan --format json` prints


class Alerter(Protocol):
    name: str

    async def send(self, kind: str, view: IncidentView) -> None:
        """kind: "opened" (reached warning), "escalated" (severity rose), "updated" (grew)."""
        ...

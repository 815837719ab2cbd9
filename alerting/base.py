"""The alerter seam: rules never know who is told. An alerter gets each incident change."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

IncidentView = dict[str, Any]  # the JSON shape `tollwatch scan --format json` prints


class Alerter(Protocol):
    name: str

    async def send(self, kind: str, view: IncidentView) -> None:
        """kind: "opened" (reached warning), "escalated" (severity rose), "updated" (grew),
        "blocked"/"unblocked" (remediation). Must not block on the network: queue and return."""
        ...


@runtime_checkable
class Background(Protocol):
    """An alerter with work of its own (a sender loop): the daemon runs and closes it."""

    async def run(self) -> None: ...

    async def close(self) -> None: ...

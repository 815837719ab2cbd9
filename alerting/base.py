"""The alerter seam: rules never know who is told. An alerter gets each incident change."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

IncidentView = dict[str, Any]  # the JSON shape `tollwatch scan --format json` prints

# Why a real block was not applied, when no AMI connection will ever apply it (a PBX watched
# through its CDR file only): the messages must not promise "applied when AMI is back".
NO_AMI_CONNECTION = "no AMI connection for this PBX"


def pending_note(failed: str) -> str:
    """What happens next to a real block AstDB did not take (`failed`: why)."""
    if failed == NO_AMI_CONNECTION:
        return "recorded; tollwatch cannot apply it: block it in this PBX's dialplan by hand"
    return "recorded, applied when AMI is back"


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

"""Incident views for the live daemon.

An attack's incident gathers hundreds or thousands of calls and the daemon publishes it again
as it grows (once a second). The incident's call log (`rules/incident_calls.py`) keeps its
aggregates up to date call by call (counts, sets, minutes settled as calls end) and the
details of a bounded number of calls, so `report_format.incident_dict` is O(listed calls + calls
still up + distinct numbers), not O(calls): the live view is that function. `IncidentViews`
keeps the daemon's interface (view, forget, count of incidents viewed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tollwatch.report_format import incident_dict
from tollwatch.rules.incidents import Incident


class IncidentViews:
    """`view(incident, now)`: `incident_dict(incident, tz, now)` for the open incidents."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._viewed: set[str] = set()

    def view(self, inc: Incident, now: datetime | None = None) -> dict[str, Any]:
        self._viewed.add(inc.id)
        return incident_dict(inc, self.tz, now)

    def forget(self, incident_id: str) -> None:
        """The incident closed: its last view was built."""
        self._viewed.discard(incident_id)

    def __len__(self) -> int:
        return len(self._viewed)

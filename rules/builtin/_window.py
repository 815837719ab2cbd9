"""A sliding window of calls on event time, kept per group (a source, the PBX, a destination)."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Literal

from tollwatch.rules.model import Call, dest_block_key, dest_number_key

# Sigma-style group-by: one source, the whole PBX, or one destination number / number block
# called from any sources (a distributed attack or rotating forwarded calls to one range).
GroupBy = Literal["source", "pbx", "destination", "dest_block"]
PBX = "*"


def group_key(call: Call, group_by: GroupBy) -> str:
    if group_by == "source":
        return call.source
    if group_by == "destination":
        return dest_number_key(call)
    if group_by == "dest_block":
        return dest_block_key(call)
    return PBX


def incident_group(key: str, group_by: GroupBy) -> str | None:
    """The incident a finding spanning sources joins: its destination group, else PBX-wide."""
    return key if group_by in ("destination", "dest_block") else None


def who(call: Call, key: str, group_by: GroupBy, sources: int) -> str:
    """Words for a reason: "from 209", "PBX-wide", "to +2327654xxx from 12 sources"."""
    if group_by == "source":
        return f"from {call.source}"
    if group_by == "pbx":
        return "PBX-wide"
    return f"to {key.removeprefix('dest:')} from {sources} source" + ("s" if sources > 1 else "")


class Windows:
    """Calls within `span` of the newest event, per group; empty groups are dropped."""

    def __init__(self, span: timedelta) -> None:
        self.span = span
        self._groups: dict[str, deque[tuple[datetime, Call]]] = {}

    def add(self, key: str, at: datetime, call: Call) -> int:
        """Add a call; returns how many calls the group's window now holds."""
        window = self._groups.get(key)
        if window is None:
            window = self._groups[key] = deque()
        window.append((at, call))
        limit = at - self.span
        while window and window[0][0] <= limit:
            window.popleft()
        return len(window)

    def held(self, key: str) -> tuple[Call, ...]:
        """The calls in a group's window as of the last add (no eviction)."""
        return tuple([c for _, c in self._groups.get(key, ())])

    def calls(self, key: str, now: datetime) -> list[Call]:
        window = self._groups.get(key)
        if window is None:
            return []
        self._evict(window, now)
        if not window:
            del self._groups[key]
            return []
        return [c for _, c in window]

    def prune(self, now: datetime) -> None:
        for key in list(self._groups):
            self.calls(key, now)

    def _evict(self, window: deque[tuple[datetime, Call]], now: datetime) -> None:
        limit = now - self.span
        while window and window[0][0] <= limit:
            window.popleft()

    def __len__(self) -> int:
        return len(self._groups)

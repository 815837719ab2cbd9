"""A sliding window of calls on event time, kept per group (a source, or the whole PBX)."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Literal

from rules.model import Call

GroupBy = Literal["source", "pbx"]
PBX = "*"


def group_key(call: Call, group_by: GroupBy) -> str:
    return call.source if group_by == "source" else PBX


class Windows:
    """Calls within `span` of the newest event, per group; empty groups are dropped."""

    def __init__(self, span: timedelta) -> None:
        self.span = span
        self._groups: dict[str, deque[tuple[datetime, Call]]] = {}

    def add(self, key: str, at: datetime, call: Call) -> int:
        """Add a call; returns how many calls the group's window now holds."""
        window = self._groups.setdefault(key, deque())
        window.append((at, call))
        self._evict(window, at)
        return len(window)

    def held(self, key: str) -> list[Call]:
        """The calls in a group's window as of the last add (no eviction)."""
        return [c for _, c in self._groups.get(key, ())]

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

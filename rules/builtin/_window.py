"""A sliding window of calls on event time, kept per group (a source, the PBX, a destination)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
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


class Window:
    """One group's calls within the span, oldest first; `added` counts every call ever added
    (so a finding can tell which calls came since the window's last finding: `Finding.window`);
    `sources` (when kept) counts the calls per source."""

    __slots__ = ("added", "calls", "sent_at", "sent_to", "sources", "times")

    def __init__(self, count_sources: bool) -> None:
        self.times: deque[datetime] = deque()
        self.calls: deque[Call] = deque()
        self.added = 0
        self.sent_to: object = None  # the incident the calls went to (IncidentTracker.add)
        self.sent_at = 0  # ... up to this many added
        self.sources: dict[str, int] | None = {} if count_sources else None

    def evict(self, limit: datetime) -> None:
        """Drop the calls at or before `limit`."""
        times, calls, sources = self.times, self.calls, self.sources
        while times and times[0] <= limit:
            times.popleft()
            gone = calls.popleft()
            if sources is not None:
                left = sources[gone.source] - 1
                if left:
                    sources[gone.source] = left
                else:
                    del sources[gone.source]

    def __len__(self) -> int:
        return len(self.calls)

    def __iter__(self) -> Iterator[Call]:
        return iter(self.calls)


PRUNE_EVERY = 1024  # adds between two prunings of every group (`Windows.add`)


class Windows:
    """Calls within `span` of the newest event, per group; empty groups are dropped.
    `count_sources`: each group also counts its calls per source (`Window.sources`).

    A group is evicted when a call is added to it; one that no call comes to again (the
    destination block of a past attack, a source gone quiet) is evicted, and dropped once
    empty, when every group is pruned: every PRUNE_EVERY adds (amortized O(1) per add), so
    what the windows hold is bounded by the span, not by every group ever seen."""

    _adds = 0  # (a class default: snapshots from before it restore without it)

    def __init__(self, span: timedelta, count_sources: bool = False) -> None:
        self.span = span
        self.count_sources = count_sources
        self._groups: dict[str, Window] = {}

    def __setstate__(self, state: dict[str, object]) -> None:
        """Snapshots from before `Window`: a deque of (time, call) per group."""
        groups = state.get("_groups")
        if isinstance(groups, dict) and any(isinstance(g, deque) for g in groups.values()):
            state = {**state, "count_sources": state.get("count_sources", False)}
            converted: dict[str, Window] = {}
            for key, old in groups.items():
                window = Window(bool(state["count_sources"]))
                for at, call in old:
                    window.times.append(at)
                    window.calls.append(call)
                    if window.sources is not None:
                        window.sources[call.source] = window.sources.get(call.source, 0) + 1
                window.added = len(window.calls)
                converted[key] = window
            state["_groups"] = converted
        state.setdefault("count_sources", False)
        self.__dict__.update(state)

    def add(self, key: str, at: datetime, call: Call) -> int:
        """Add a call; returns how many calls the group's window now holds."""
        self._adds += 1
        if self._adds >= PRUNE_EVERY:
            self._adds = 0
            self.prune(at, keep=key)  # (this group is evicted below, as always)
        window = self._groups.get(key)
        if window is None:
            window = self._groups[key] = Window(self.count_sources)
        times = window.times
        times.append(at)
        window.calls.append(call)
        window.added += 1
        sources = window.sources
        if sources is not None:
            sources[call.source] = sources.get(call.source, 0) + 1
        limit = at - self.span
        if times[0] <= limit:
            window.evict(limit)
        return len(times)

    def held(self, key: str) -> Window:
        """A group's window as of the last add (no eviction): its calls, for a finding (which
        takes the window itself, not a copy: `Rule.finding`)."""
        window = self._groups.get(key)
        if window is None:
            window = Window(self.count_sources)
        return window

    def calls(self, key: str, now: datetime) -> list[Call]:
        window = self._groups.get(key)
        if window is None:
            return []
        window.evict(now - self.span)
        if not window.calls:
            del self._groups[key]
            return []
        return list(window.calls)

    def prune(self, now: datetime, keep: str | None = None) -> None:
        """Evict every group (but `keep`) as of `now`; drop the empty ones."""
        limit = now - self.span
        groups = self._groups
        for key in list(groups):
            if key == keep:
                continue
            window = groups[key]
            window.evict(limit)
            if not window.calls:
                del groups[key]

    def __len__(self) -> int:
        return len(self._groups)

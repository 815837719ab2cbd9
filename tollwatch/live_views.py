"""Incident views for the live daemon, kept up to date call by call.

`report_format.incident_dict` builds an incident's view from scratch: it sorts every call,
labels each, collects its sources, regions and numbers, and sums every call's minutes. An
attack's incident holds hundreds or thousands of calls and the daemon publishes it again as it
grows (once a second), so from scratch is O(calls) of Python work each time, on the event loop.
`IncidentViews` remembers, per open incident, what it already took in: incident calls are only
ever added (in `Incident.calls` insertion order), so each view takes the new calls only (sorted
in with bisect) and sums minutes only over the calls still up. The result equals
`incident_dict` (tests/test_live_views.py holds it to that).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from tollwatch.report_format import _iso, _spend, incident_dict
from tollwatch.rules.incidents import Incident
from tollwatch.rules.model import Call


class _Acc:
    """What one incident's views were built from so far."""

    def __init__(self, inc: Incident) -> None:
        self.inc = inc
        self.n = 0  # calls of inc.calls taken in (a prefix, in insertion order)
        self.keys: list[tuple[datetime, str]] = []  # (start, call_id), sorted
        self.calls: list[Call] = []  # parallel to keys
        self.ids: list[str] = []
        self.numbers: list[str] = []
        self.sources: set[str] = set()
        self.accounts: set[str] = set()
        self.regions: set[str] = set()
        self.labels: set[str] = set()
        self.e164s: set[str] = set()
        self.rated: list[Call] = []  # calls with a rate, in view order
        self.rated_keys: list[tuple[datetime, str]] = []
        self.up: list[Call] = []  # calls whose minutes may still change
        self.settled = 0.0  # seconds of the calls that ended
        self.sorted: dict[str, list[str]] = {}  # cached sorted sets, dropped when one grows

    def take(self, calls: list[Call]) -> None:
        for c in calls:
            key = (c.start, c.call_id)
            i = bisect_right(self.keys, key)
            self.keys.insert(i, key)
            self.calls.insert(i, c)
            self.ids.insert(i, c.call_id)
            d = c.dest
            self.numbers.insert(i, d.e164 or "")
            _grow(self, "sources", self.sources, c.source)
            if c.account:
                _grow(self, "accounts", self.accounts, c.account)
            if d.region:
                _grow(self, "regions", self.regions, d.region)
            _grow(self, "labels", self.labels, c.label())
            if d.e164:
                _grow(self, "e164s", self.e164s, d.e164)
            if d.rate:
                j = bisect_right(self.rated_keys, key)
                self.rated_keys.insert(j, key)
                self.rated.insert(j, c)
            self.up.append(c)
        self.n += len(calls)

    def seconds(self, now: datetime | None) -> float:
        """Sum of up_for over every call, as Incident.minutes does (times 60)."""
        still: list[Call] = []
        for c in self.up:
            if c.ended and c.end is not None:
                self.settled += c.up_for(c.end)
            else:
                still.append(c)
        self.up = still
        return self.settled + sum(c.up_for(now or c.end or c.start) for c in still)

    def listed(self, name: str, values: set[str]) -> list[str]:
        out = self.sorted.get(name)
        if out is None:
            out = self.sorted[name] = sorted(values)
        return out


def _grow(acc: _Acc, name: str, values: set[str], value: str) -> None:
    if value not in values:
        values.add(value)
        acc.sorted.pop(name, None)


class IncidentViews:
    """`view(incident, now)` == `incident_dict(incident, tz, now)`, incrementally."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._accs: dict[str, _Acc] = {}

    def view(self, inc: Incident, now: datetime | None = None) -> dict[str, Any]:
        acc = self._accs.get(inc.id)
        if acc is None or acc.inc is not inc or acc.n > len(inc.calls):
            acc = self._accs[inc.id] = _Acc(inc)  # new, or restored from a snapshot
        if len(inc.calls) > acc.n:
            acc.take(list(islice(inc.calls.values(), acc.n, None)))
        if len(acc.calls) != len(inc.calls):  # never expected: fall back to from scratch
            del self._accs[inc.id]
            return incident_dict(inc, self.tz, now)
        tz = self.tz
        accounts = acc.listed("accounts", acc.accounts)
        calls = acc.calls
        return {
            "id": inc.id,
            "site": inc.site,
            "severity": inc.severity.label,
            "score": inc.score,
            "source": inc.source,
            "sources": list(acc.listed("sources", acc.sources)),
            "account": accounts[0] if len(accounts) == 1 else ",".join(accounts),
            "rules": [h.rule for h in sorted(inc.hits.values(), key=lambda h: -h.score)],
            "regions": list(acc.listed("regions", acc.regions)),
            "destinations": list(acc.listed("labels", acc.labels)),
            "numbers": list(acc.listed("e164s", acc.e164s)),
            "calls": len(calls),
            "attempts_refused": inc.refused,
            "minutes": round(acc.seconds(now) / 60.0, 2),
            "spend": _spend(acc.rated, now) if acc.rated else None,
            "first_call_at": _iso(calls[0].start if calls else inc.opened_at, tz),
            "last_call_at": _iso(calls[-1].start if calls else inc.last_activity, tz),
            "detected_at": _iso(inc.detected_at.get(inc.severity), tz),
            "call_ids": list(acc.ids),
            "call_numbers": list(acc.numbers),
            "reasons": inc.reasons(),
        }

    def forget(self, incident_id: str) -> None:
        """The incident closed: its last view was built."""
        self._accs.pop(incident_id, None)

    def __len__(self) -> int:
        return len(self._accs)

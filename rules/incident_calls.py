"""What an incident keeps of its calls: exact aggregates, and the details of a bounded few.

A PBX-wide incident under steady international traffic may never go quiet, so keeping every call
it gathers grows without bound. `IncidentCalls` keeps, exactly and in O(1) per call:
  * the number of calls, the first and last call's start;
  * the sources, accounts, regions and destination labels (sets: bounded by the PBX's
    extensions and the world's regions);
  * the calls per distinct destination number (remediation's evidence: it blocks what those
    numbers show, and counts the calls a block covers), a few dozen bytes each instead of a
    call: with a limit, for the `NUMBERS` most recently called numbers (an incident that never
    goes quiet, e.g. a source or the PBX under steady traffic, would otherwise keep one entry
    per number ever dialed; `numbers_dropped` counts the others, a dropped number called again
    counts afresh);
  * the talk seconds and spend of ended calls (summed when they end), and the calls still up
    (their minutes still change; bounded by concurrency);
and the details (the `Call`) of the first `first` and the last `last` calls added, plus any
evicted call that is still up (a hang-up needs its id). `limit=None` keeps every call.

A call counts once: its id is looked up among the kept calls and, for calls whose details were
dropped, in a weak map that forgets a call once nothing holds it any more. A finding can only
carry a call some rule still holds, so a dropped call that comes back in a later finding is
always still in the weak map: the count is exact.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from weakref import ref

from tollwatch.rules.model import Call

DEFAULT_LIMIT = (50, 150)  # the first 50 and the last 150 calls' details
NUMBERS = 10_000  # numbers whose calls are counted, with a limit: the most recently called
_ZERO = timedelta(0)
_PRUNE_MIN = 256


class IncidentCalls:
    # Values that start the same in every log are class attributes until first written (most
    # incidents are made for one weak finding and never written again).
    gone: dict[str, ref[Call]] | None = None  # see __init__
    count = 0
    first_start: datetime | None = None
    last_start: datetime | None = None
    rated = 0  # calls with a rate (spend is None without any)
    settled = _ZERO  # talk time of the calls that ended (exact: timedelta)
    settled_spend = 0.0
    _settle_at = 64  # settle `up` when it grows past this (amortized O(1) per call)
    _prune_at = _PRUNE_MIN  # prune dead entries of `gone` when it reaches this size (`_drop`)
    numbers_dropped = 0  # numbers forgotten (the least recently called past NUMBERS)

    def __init__(self, limit: tuple[int, int] | None = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.head: dict[str, Call] = {}  # the first calls added (all of them when no limit)
        self.tail: OrderedDict[str, Call] = OrderedDict()  # the last calls added
        # `gone`: calls whose details were dropped, while something else holds them (made on
        # the first drop: most incidents never drop one)
        self.up: dict[str, Call] = {}  # calls whose minutes may still change
        self.sources: set[str] = set()
        self.accounts: set[str] = set()
        self.regions: set[str] = set()
        self.labels: set[str] = set()
        self.numbers: dict[str, int] = {}  # E.164 -> calls to it
        self._sorted: dict[str, tuple[int, list[str]]] = {}  # (size, sorted) per set

    # ---- taking calls in ---------------------------------------------------------------------
    def __contains__(self, call_id: str) -> bool:
        return call_id in self.head or call_id in self.tail or self._held_gone(call_id)

    def _held_gone(self, call_id: str) -> bool:
        """Whether a call whose details were dropped is still held by something else (a rule
        window): once nothing holds it, it is as if never counted (its weak reference is dead;
        the entry itself is pruned later, `_drop`)."""
        gone = self.gone
        if gone is None:
            return False
        held = gone.get(call_id)
        return held is not None and held() is not None

    def add(self, call: Call) -> bool:
        """Count a call (False if it was counted already)."""
        if call.call_id in self:
            return False
        self._take(call)
        return True

    def add_all(self, calls: Iterable[Call]) -> bool:
        """Count the calls not counted yet (a finding's); whether there was one."""
        head, tail = self.head, self.tail
        grew = False
        for call in calls:
            cid = call.call_id
            if cid in head or cid in tail or self._held_gone(cid):
                continue
            self._take(call)
            grew = True
        return grew

    def _take(self, call: Call) -> None:
        cid = call.call_id
        self.count += 1
        start = call.start
        if self.first_start is None or start < self.first_start:
            self.first_start = start
        if self.last_start is None or start > self.last_start:
            self.last_start = start
        d = call.dest
        self.sources.add(call.source)  # sets only grow: sorted_set() compares their sizes
        if call.account:
            self.accounts.add(call.account)
        if d.region:
            self.regions.add(d.region)
        self.labels.add(call.label())
        e164 = d.e164
        if e164:
            numbers = self.numbers
            if self.limit is None:
                numbers[e164] = numbers.get(e164, 0) + 1
            else:  # most recently called last
                numbers[e164] = numbers.pop(e164, 0) + 1
                if len(numbers) > NUMBERS + (NUMBERS >> 3):
                    self._forget_numbers()
        if d.rate:
            self.rated += 1
        if call.ended and call.end is not None:
            self._settle_one(call)
        else:
            self.up[cid] = call
            if len(self.up) > self._settle_at:
                self.settle()
                self._settle_at = max(64, 2 * len(self.up))
        limit = self.limit
        if limit is None or len(self.head) < limit[0]:
            self.head[cid] = call
        else:
            tail = self.tail
            tail[cid] = call
            if len(tail) > limit[1]:
                self._drop(*tail.popitem(last=False))

    def _forget_numbers(self) -> None:
        """Keep the NUMBERS most recently called numbers (done when an eighth more came:
        amortized O(1) per call)."""
        numbers = self.numbers
        drop = len(numbers) - NUMBERS
        self.numbers = dict(list(numbers.items())[drop:])
        self.numbers_dropped += drop
        self._sorted.pop("numbers", None)  # (its size may come back to the same)

    def _drop(self, call_id: str, call: Call) -> None:
        """Forget a call's details but remember, while something else holds the call, that it
        was counted. A plain weak reference (no callback: a callback closing over the map made
        a reference cycle per entry, garbage only the full collector frees, and five tracked
        objects instead of none); dead entries are pruned whenever the map doubled since the
        last pruning (amortized O(1) per call)."""
        gone = self.gone
        if gone is None:
            gone = self.gone = {}
        gone[call_id] = ref(call)
        if len(gone) >= self._prune_at:
            for cid in [cid for cid, held in gone.items() if held() is None]:
                del gone[cid]
            self._prune_at = max(_PRUNE_MIN, 2 * len(gone))

    def _settle_one(self, call: Call) -> None:
        if call.answer is not None and call.end is not None:
            talk = call.end - call.answer
            if talk < _ZERO:
                talk = _ZERO
            self.settled += talk
            if call.dest.rate:
                self.settled_spend += call.dest.rate * talk.total_seconds() / 60.0

    def settle(self) -> None:
        """Sum the calls that ended since into the settled totals."""
        still: dict[str, Call] = {}
        for cid, c in self.up.items():
            if c.ended and c.end is not None:
                self._settle_one(c)
            else:
                still[cid] = c
        self.up = still

    # ---- reading ------------------------------------------------------------------------------
    def listed(self) -> dict[str, Call]:
        """The calls whose details are kept: first and last ones, and those still up."""
        self.settle()
        out = dict(self.head)
        out.update(self.tail)
        for cid, c in self.up.items():
            out.setdefault(cid, c)
        return out

    def ordered(self) -> list[Call]:
        return sorted(self.listed().values(), key=lambda c: (c.start, c.call_id))

    def seconds(self, now: datetime | None = None) -> float:
        """Talk seconds of every call (calls still up: until `now`, else their end or start)."""
        self.settle()
        return self.settled.total_seconds() + sum(
            c.up_for(now or c.end or c.start) for c in self.up.values()
        )

    def spend(self, now: datetime | None = None) -> float | None:
        """Estimated cost from the rate table; None when no call's destination has a rate."""
        if not self.rated:
            return None
        self.settle()
        up = sum((c.dest.rate or 0.0) * c.up_for(now or c.end or c.start) / 60.0
                 for c in self.up.values() if c.dest.rate)  # fmt: skip
        return round(self.settled_spend + up, 2)

    def sorted_set(self, name: str) -> list[str]:
        """"sources", "accounts", "regions", "labels" or "numbers", sorted (cached while the
        set keeps its size: they only grow)."""
        values: set[str] | dict[str, int] = (
            self.numbers if name == "numbers" else getattr(self, name))
        cached = self._sorted.get(name)
        if cached is None or cached[0] != len(values):
            cached = self._sorted[name] = (len(values), sorted(values))
        return cached[1]

    # ---- pickling (snapshots) -----------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        # the calls still held elsewhere, pickled with them
        gone = self.gone
        state["gone"] = None if gone is None else {
            k: c for k, c in ((k, r()) for k, r in gone.items()) if c is not None}
        state["_sorted"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        gone: dict[str, Call] | None = state.pop("gone", None)
        self.__dict__.update(state)
        self.gone = None
        if gone is not None:
            self.gone = {k: ref(c) for k, c in gone.items()}

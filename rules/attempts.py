"""One call attempt, however many legs: carrier failover and parallel forks count once.

Asterisk writes a leg (a CDR row, a DialBegin) for every trunk a call is tried on: a dial plan
that fails over from one carrier to the next gives three legs with one uniqueid/linkedid for one
attempt, and `Dial(A&B)` to the same number on two trunks gives two. The engine asks this
tracker, when a leg starts, whether it repeats an attempt already counted; volume rules then
skip it (`Rule.counts_repeats`), while rules about talk time and cost (long_call, spend) still
see the leg that was answered.

A leg repeats an earlier one when both belong to one call (same linkedid, else same uniqueid)
and go to the same number, and the earlier leg is still up (a parallel fork) or ended
unanswered (failover: successive attempts, on the same or another trunk). A new attempt after
an answered leg is a new call. Decided on event time, in the engine, so batch and live agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from tollwatch.rules.model import Call

# A failed leg is remembered this long after it ended (failover follows within seconds).
KEEP = timedelta(minutes=5)
_PRUNE_EVERY = 1024


@dataclass
class _Leg:
    call: Call
    number: str
    answered: bool = False
    ended_at: datetime | None = None


@dataclass
class AttemptTracker:
    groups: dict[str, list[_Leg]] = field(default_factory=dict)
    _seen: int = 0

    @staticmethod
    def group_of(call: Call) -> str:
        return call.linkedid or call.call_id

    @staticmethod
    def number_of(call: Call) -> str:
        return call.dest.e164 or call.dest.dialed

    def started(self, call: Call, now: datetime) -> bool:
        """Record a leg that starts; True when it repeats an attempt already counted."""
        self._seen += 1
        if self._seen % _PRUNE_EVERY == 0:
            self.prune(now)
        group = call.linkedid or call.call_id  # group_of
        number = call.dest.e164 or call.dest.dialed  # number_of
        legs = self.groups.get(group)
        if legs is None:  # the usual case: the first leg of its call
            self.groups[group] = [_Leg(call, number)]
            call.repeat = False
            return False
        repeat = any(
            leg.number == number and (leg.ended_at is None or not leg.answered)
            for leg in legs
            if leg.call is not call
        )
        legs.append(_Leg(call, number))
        call.repeat = repeat
        return repeat

    def skip(self, now: datetime) -> None:
        """A leg that starts alone (`Call.lone`): not tracked, but counted like `started`
        counts legs (pruning comes at the same legs, so the other groups see the same)."""
        self._seen += 1
        if self._seen % _PRUNE_EVERY == 0:
            self.prune(now)

    def answered(self, call: Call) -> None:
        leg = self._leg(call)
        if leg is not None:
            leg.answered = True

    def ended(self, call: Call, now: datetime) -> None:
        leg = self._leg(call)
        if leg is None:
            return
        leg.ended_at = now
        group = call.linkedid or call.call_id  # group_of
        legs = self.groups[group]
        if leg.answered if len(legs) == 1 else all(
            x.ended_at is not None and x.answered for x in legs
        ):
            del self.groups[group]  # nothing left that a later leg could repeat

    def prune(self, now: datetime) -> None:
        limit = now - KEEP
        for group in list(self.groups):
            kept = [x for x in self.groups[group] if x.ended_at is None or x.ended_at > limit]
            if kept:
                self.groups[group] = kept
            else:
                del self.groups[group]

    def _leg(self, call: Call) -> _Leg | None:
        for leg in self.groups.get(call.linkedid or call.call_id, ()):  # group_of
            if leg.call is call:
                return leg
        return None

    def __len__(self) -> int:
        return sum(len(v) for v in self.groups.values())


def lone_legs(frame: pl.DataFrame, tracker: AttemptTracker) -> list[bool]:
    """For each row of `frame` (columns call_id, linkedid), whether its call is the only leg of
    its group (`AttemptTracker.group_of`) in the frame, and the tracker holds no leg of that
    group. Such a leg never repeats an attempt and no other leg can repeat it: a batch that
    knows the frame holds every call the engine gets from now on leaves it untracked
    (`Call.lone`; the live daemon tracks every leg)."""
    linkedid = pl.col("linkedid")
    group = pl.when(linkedid.is_not_null() & (linkedid != "")).then(linkedid).otherwise(
        pl.col("call_id"))
    lone = group.is_unique()
    if tracker.groups:
        lone = lone & ~group.is_in(list(tracker.groups))
    flags: list[bool] = frame.select(lone.alias("lone")).get_column("lone").to_list()
    return flags

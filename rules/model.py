"""What rules see and say: calls, call events and findings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum
from functools import cached_property
from typing import NamedTuple, Protocol, cast

from tollwatch.rules.destination import Destination


@dataclass(eq=False)
class Call:
    """An outbound call. Batch fills everything up front; live fills answer/end as they happen.

    Rules must only read `answer` from on_answer on and `end`/`billsec` from on_end on, so that a
    batch replay decides exactly what the live daemon decides.
    """

    call_id: str
    source: str
    account: str
    dest: Destination
    start: datetime
    answer: datetime | None = None
    end: datetime | None = None
    trunk: str = ""
    origin: str = ""
    allowlisted: bool = False  # site-wide or per-source allowlist covers the destination
    ended: bool = field(default=False)
    closed: str | None = None  # why the office was closed when the call started (engine sets it)
    linkedid: str = ""  # the Asterisk call this leg belongs to ("" when the CDR has no linkedid)
    repeat: bool = False  # a failover leg or parallel fork of an attempt counted already
    route: int = field(default=-1, repr=False)  # which rules its events go to (engine sets it)
    # rules a batch replay leaves out of on_start for it, one bit each (rules.sparse)
    sparse: int = field(default=0, repr=False)
    # a batch holds no other leg of its attempt: never a repeat, not tracked (rules.attempts)
    lone: bool = field(default=False, repr=False)

    @property
    def billsec(self) -> float:
        if self.answer is None or self.end is None:
            return 0.0
        return max(0.0, (self.end - self.answer).total_seconds())

    def up_for(self, now: datetime) -> float:
        """Seconds the call has been answered by `now` (or in all, once ended)."""
        if self.answer is None:
            return 0.0
        stop = self.end if self.ended and self.end is not None else now
        return max(0.0, (stop - self.answer).total_seconds())

    @property
    def risky(self) -> bool:
        return self.dest.high_risk and not self.allowlisted

    def label(self) -> str:
        d = self.dest
        if d.region_name and d.calling_code:
            return f"{d.region_name} (+{d.calling_code})"
        return d.e164 or d.dialed


def dest_number_key(call: Call) -> str:
    """The incident/window key of a call's destination number: "dest:+23276543210"."""
    cached = call.dest.__dict__  # cached_property's value, without its lock (Python 3.11)
    key: str | None = cached.get("number_key")
    if key is None:
        key = cached["number_key"] = _number_key(call.dest)
    return key


def dest_block_key(call: Call) -> str:
    """The key of its number block: "dest:+2327654xxx" (short numbers: the number)."""
    cached = call.dest.__dict__
    key: str | None = cached.get("block_key")
    if key is None:
        key = cached["block_key"] = _block_key(call.dest)
    return key


# what the cached properties compute (numbers are mostly distinct: most reads are the first)
_number_key = cast(cached_property[str], vars(Destination)["number_key"]).func
_block_key = cast(cached_property[str], vars(Destination)["block_key"]).func


# f"{n:02d}" for 0-99, looked up: an int's format spec costs ~1,500 instructions (callgrind),
# paid on every incident opened and every call outside business hours
TWO_DIGITS = tuple(f"{n:02d}" for n in range(100))


def stamp(when: datetime) -> str:
    """`when`'s fields as "20261202T053001Z" (the same as formatting each with :04d / :02d)."""
    two = TWO_DIGITS
    year = when.year
    return (
        f"{year if year >= 1000 else f'{year:04d}'}{two[when.month]}{two[when.day]}T"
        f"{two[when.hour]}{two[when.minute]}{two[when.second]}Z"
    )


MAX_SPARSE = 4  # sparse rules an engine tells apart (its dispatch lists double with each one)


@dataclass(frozen=True)
class SparseGroup:
    """What a rule's on_start counts per group (`Rule.sparse_group`, rules.sparse): calls
    within `span`, nothing found below `count`. `block_digits` 0: the group is the call's
    source; else its source and its E.164 number less the last `block_digits` digits (calls
    without a number are always asked). `at_end`: the rule's on_end does that instead, on
    the time of the call's end event (its on_end is what a batch may leave out)."""

    span: timedelta
    count: int
    block_digits: int = 0
    at_end: bool = False


class Kind(IntEnum):
    """Event kinds; the value orders events that share a timestamp."""

    ENDED = 0
    STARTED = 1
    ANSWERED = 2
    ENDED_SAME_INSTANT = 3  # a call that ends the instant it starts or is answered


class CallEvent(NamedTuple):
    at: datetime
    kind: Kind
    call: Call


@dataclass(frozen=True)
class AuthEvent:
    """A failed or successful authentication (from the PBX's security events)."""

    at: datetime
    outcome: str  # "failed" | "success"
    account: str
    address: str
    service: str = ""


class CallWindow(Protocol):
    """A rule's window of calls (rules.builtin._window.Window), as a finding sees it: new calls
    come last (calls may leave from anywhere)."""

    added: int  # calls ever added to it
    sent_to: object  # the incident its calls last went to
    sent_at: int  # `added` then


@dataclass(slots=True)
class Finding:
    rule: str  # the rule's name
    rule_type: str
    at: datetime  # event time at which it fired
    trigger: Call | None  # the call whose event fired it (None for an authentication finding)
    calls: Sequence[Call]  # a tuple, or a window's own calls (read at once, never kept)
    score: int
    reason: str
    pbx_wide: bool = False
    group: str | None = None  # the incident key when there are no calls to tell it
    source: str | None = None  # the one source of all its calls, when the rule knows it
    window: CallWindow | None = None  # the window `calls` belong to

    @property
    def sources(self) -> set[str]:
        return {c.source for c in self.calls}

    @property
    def key(self) -> str:
        """Which incident it joins: its one source, else its group (a destination number or
        block, "dest:+2327654xxx", for a finding across sources), else PBX-wide."""
        if self.source is not None:
            return self.source
        calls = self.calls
        n = len(calls)
        if n == 1:
            return calls[0].source
        if n:
            first = calls[0].source
            if calls[-1].source == first and all(c.source == first for c in calls):
                return first
        if self.group:
            return self.group
        return "*"

    def calls_new_to(self, incident: object) -> Sequence[Call]:
        """Its calls that may not be in `incident` yet: all of them, unless they are a window
        whose calls went to this same incident before (then those added to it since, which
        is all that can be new: a window only gains calls at its end); notes that they are in
        it now. Incidents never lose a call, and a finding is applied as soon as it is made."""
        calls = self.calls
        window = self.window
        if window is None:
            return calls
        fresh = window.added - window.sent_at if window.sent_to is incident else len(calls)
        window.sent_to = incident
        window.sent_at = window.added
        n = len(calls)
        if fresh >= n:
            return calls
        return [calls[i] for i in range(n - fresh, n)]

    @property
    def trigger_time(self) -> datetime:
        return self.trigger.start if self.trigger is not None else self.at

"""What a site normally does, learned from its own calls, so thresholds fit the site.

Fed the calls rules look at (international or high-risk), in event-time order, by the engine
after the rules have scored each one (batch and live alike). It keeps, over `period`:

* PBX-wide volume per local day in 5-minute buckets (all such calls, and high-risk calls to
  destinations not routine at the time, counted once the history allows judging that) and the
  most calls up at once per hour;
* per destination (region, else calling code): the days it was called and by which sources;
* per source: the destinations it called and the hours of day it called abroad, by day.

No look-ahead: every query answers from the days strictly before the day of the call being
scored, so a call never counts towards its own normal (nor do later calls in a file). Days are
grouped by day of week; public holidays and closure days count as Sundays. Until
`min_history` of days is there, volume queries return None and the absolute floors apply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import accumulate
from operator import sub

from tollwatch.config.schema import Baseline as BaselineSettings
from tollwatch.rules.calendar import BusinessCalendar
from tollwatch.rules.destination import Destination
from tollwatch.rules.model import Call

BUCKET = 300  # seconds per volume bucket
_DAY = timedelta(days=1)
PER_HOUR = 3600 // BUCKET
BUCKETS = 24 * PER_HOUR
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
Volume = tuple[int, str]  # (usual count, which slot in words)
Seen = tuple[date | None, date]  # (the day called before the last one, the last day)


def dest_key(dest: Destination) -> str | None:
    """What a destination is known by: its region (MX, JM), else its calling code."""
    return dest.region or dest.calling_code


@dataclass
class DayStats:
    kind: int  # day of week 0-6; holidays and closure days are 6 (as Sundays)
    intl: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    novel: list[int] = field(default_factory=lambda: [0] * BUCKETS)  # non-routine high-risk
    conc: list[int] = field(default_factory=lambda: [0] * 24)  # most calls up at once


@dataclass
class _Touched:
    """What one day added: destination keys, (destination, source) pairs, (source, hour)."""

    dests: set[str] = field(default_factory=set)
    pairs: set[tuple[str, str]] = field(default_factory=set)
    hours: set[tuple[str, int]] = field(default_factory=set)


def _seen_in(s: Seen | None, start: date, today: date) -> bool:
    """Whether a (previous, last) pair shows a day in [start, today)."""
    if s is None:
        return False
    previous, last = s
    return start <= last < today or (previous is not None and start <= previous < today)


class Baseline:
    def __init__(self, options: BaselineSettings, calendar: BusinessCalendar) -> None:
        self.options = options
        self.calendar = calendar
        self.clear()

    def clear(self) -> None:
        """Forget everything learned."""
        self.days: dict[date, DayStats] = {}
        self.dest_days: dict[str, set[date]] = {}
        self.dest_sources: dict[str, dict[str, Seen]] = {}
        self.src_dests: dict[str, dict[str, Seen]] = {}
        self.src_hours: dict[str, dict[int, set[date]]] = {}
        self.first_day: date | None = None
        self.last_day: date | None = None
        self.up: set[str] = set()
        self._volumes: dict[tuple[str, timedelta | None, int], Volume | None] = {}
        self._routine: dict[str, bool] = {}
        self._cache_day: date | None = None
        self._span_memo: tuple[datetime, tuple[date, date]] | None = None
        self._ready_memo: tuple[date, date | None, bool] | None = None
        # What each day added, so that a day leaving the period is forgotten without walking
        # everything learned; None: not indexed (filled from a file), rebuilt on the next roll.
        self._touched: dict[date, _Touched] | None = {}

    def forget_caches(self) -> None:
        """After the tables were replaced (loaded from a file): drop what was derived."""
        self._volumes.clear()
        self._routine.clear()
        self._cache_day = None
        self._span_memo = None
        self._ready_memo = None
        self._touched = None

    def index(self) -> None:
        """Build now what each learned day added (`_touched`), if it is not there (after a
        load): the next day roll would otherwise build it, on the daemon's event loop at the
        first local midnight after a restart (50-215 ms for 8,000 phones over 28 days)."""
        if self._touched is None:
            self._touched = self._index()

    # ---- learning --------------------------------------------------------------------------
    def observe_start(self, call: Call) -> None:
        """A call started (after the rules scored it)."""
        if call.repeat:
            return
        local = self.calendar.local(call.start)
        day = local.date()
        if day != self.last_day:
            self._roll(day)
        stats = self.days.get(day)
        if stats is None:
            stats = self.days[day] = DayStats(self.day_kind(day))
        hour = local.hour
        b = (hour * 3600 + local.minute * 60 + local.second) // BUCKET
        stats.intl[b] += 1
        dest = call.dest
        # "Not routine" means something only once routine can be judged (min_history):
        # before that, counting every high-risk call would make floods of them look usual.
        if (dest.high_risk and not call.allowlisted  # call.risky
                and self.ready(call.start) and not self.is_routine(dest, call.start)):
            stats.novel[b] += 1
        up = self.up
        up.add(call.call_id)
        conc = stats.conc
        if len(up) > conc[hour]:
            conc[hour] = len(up)
        key = dest.region or dest.calling_code  # dest_key
        if key is None:
            return
        source = call.source
        # Each table is only written when this call is the first of its kind today; then (and
        # only then) what today added is noted in `_touched` for the roll.
        days = self.dest_days.get(key)
        if days is None:
            days = self.dest_days[key] = set()
        new_dest = day not in days
        if new_dest:
            days.add(day)
        srcs = self.dest_sources.get(key)
        if srcs is None:
            srcs = self.dest_sources[key] = {}
        old = srcs.get(source)
        new_pair = old is None or old[1] != day
        if new_pair:  # (the day called before, today)
            srcs[source] = (None if old is None else old[1], day)
        mine = self.src_dests.get(source)
        if mine is None:
            mine = self.src_dests[source] = {}
        old = mine.get(key)
        if old is None or old[1] != day:
            mine[key] = (None if old is None else old[1], day)
            new_pair = True
        hours = self.src_hours.get(source)
        if hours is None:
            hours = self.src_hours[source] = {}
        at_hour = hours.get(hour)
        if at_hour is None:
            at_hour = hours[hour] = set()
        new_hour = day not in at_hour
        if new_hour:
            at_hour.add(day)
        if self._touched is not None and (new_dest or new_pair or new_hour):
            touched = self._touched.get(day)
            if touched is None:
                touched = self._touched[day] = _Touched()
            if new_dest:
                touched.dests.add(key)
            if new_pair:
                touched.pairs.add((key, source))
            if new_hour:
                touched.hours.add((source, hour))

    def observe_end(self, call: Call) -> None:
        self.up.discard(call.call_id)

    def _roll(self, day: date) -> None:
        """A new latest day: forget what fell out of the period."""
        if self.first_day is None or day < self.first_day:
            self.first_day = day
        if self.last_day is not None and day <= self.last_day:
            return
        self.last_day = day
        start = day - self.options.period - timedelta(days=1)
        for d in [d for d in self.days if d < start]:
            del self.days[d]
        if self._touched is None:
            self._touched = self._index()
        gone = [d for d in self._touched if d < start]
        dest_days, dest_sources = self.dest_days, self.dest_sources
        src_dests, src_hours = self.src_dests, self.src_hours
        for d in gone:
            touched = self._touched.pop(d)
            for key in touched.dests:
                days = dest_days.get(key)
                if days is not None:
                    days.difference_update([x for x in days if x < start])
                    if not days:
                        del dest_days[key]
            for key, src in touched.pairs:  # both tables, written out (thousands a day)
                entries = dest_sources.get(key)
                if entries is not None:
                    seen = entries.get(src)
                    if seen is not None and seen[1] < start:
                        del entries[src]
                        if not entries:
                            del dest_sources[key]
                entries = src_dests.get(src)
                if entries is not None:
                    seen = entries.get(key)
                    if seen is not None and seen[1] < start:
                        del entries[key]
                        if not entries:
                            del src_dests[src]
            for src, h in touched.hours:
                hours = src_hours.get(src)
                if hours is None:
                    continue
                at_hour = hours.get(h)
                if at_hour is None:
                    continue
                at_hour.difference_update([x for x in at_hour if x < start])
                if not at_hour:
                    del hours[h]
                    if not hours:
                        del src_hours[src]

    def _index(self) -> dict[date, _Touched]:
        """Which day added what, rebuilt from the learned tables (after a load)."""
        index: dict[date, _Touched] = {}

        def at(day: date) -> _Touched:
            touched = index.get(day)
            if touched is None:
                touched = index[day] = _Touched()
            return touched

        for key, days in self.dest_days.items():
            for d in days:
                at(d).dests.add(key)
        for key, inner in self.dest_sources.items():
            for src, seen in inner.items():
                at(seen[1]).pairs.add((key, src))
        for src, inner in self.src_dests.items():
            for key, seen in inner.items():
                at(seen[1]).pairs.add((key, src))
        for src, hours in self.src_hours.items():
            for h, days in hours.items():
                for d in days:
                    at(d).hours.add((src, h))
        return index

    # ---- what is normal ----------------------------------------------------------------------
    def day_kind(self, day: date) -> int:
        if day in self.calendar.closures or self.calendar.holiday(day):
            return 6
        return day.weekday()

    def _span(self, at: datetime | None) -> tuple[date, date]:
        """[start, today): the days a call at `at` may be scored against (None: all learned)."""
        memo = self._span_memo
        if at is not None and memo is not None and memo[0] is at:
            return memo[1]
        if at is None:
            today = (self.last_day or date.min) + timedelta(days=1)
        else:
            today = self.calendar.local(at).date()
        if today != self._cache_day:
            self._volumes.clear()
            self._routine.clear()
            self._ready_memo = None
            self._cache_day = today
        span = (today - self.options.period, today)
        # one entry, for the same event time asked again (None: the span moves with learning)
        self._span_memo = None if at is None else (at, span)
        return span

    def ready(self, at: datetime) -> bool:
        """Enough history before the day of `at` for learned thresholds."""
        span = self._span_memo
        _, today = span[1] if span is not None and span[0] is at else self._span(at)
        first = self.first_day
        memo = self._ready_memo
        if memo is not None and memo[0] == today and memo[1] == first:
            return memo[2]
        ok = first is not None and first <= today - self.options.min_history
        self._ready_memo = (today, first, ok)
        return ok

    def history_days(self, at: datetime | None = None) -> int:
        start, today = self._span(at)
        return sum(1 for d in self.days if start <= d < today)

    def slot_label(self, at: datetime) -> str:
        local = self.calendar.local(at)
        kind = self.day_kind(local.date())
        if kind == 6 and local.weekday() != 6:
            return f"holidays and Sundays {local.hour:02d}:00"
        return f"{DAY_NAMES[kind]} {local.hour:02d}:00"

    def volume(self, what: str, window: timedelta, at: datetime) -> Volume | None:
        """The usual most calls in `window` within this hour of this kind of day, PBX-wide.

        `what` is "international" (every call rules look at) or "high_risk" (high-risk calls
        to destinations that were not routine). None while the history is too short."""
        if not self.ready(at):
            return None
        start, today = self._span(at)
        hour = self.calendar.local(at).hour
        key = (what, window, hour)
        try:
            return self._volumes[key]  # per day (cleared when the day changes)
        except KeyError:
            pass
        usual = self.usual(self.day_kind(today), hour, what, window, start, today)
        found = self._volumes[key] = None if usual is None else (usual, self.slot_label(at))
        return found

    def usual(
        self, kind: int, hour: int, what: str, window: timedelta | None, start: date, today: date
    ) -> int | None:
        """The quantile, over days of `kind` in [start, today), of the most calls in any
        `window` overlapping `hour` (window None: the most calls up at once in it)."""
        values = []
        k = 0 if window is None else max(1, math.ceil(window.total_seconds() / BUCKET)) + 1
        first = hour * PER_HOUR
        for d, stats in self.days.items():
            if not start <= d < today or stats.kind != kind:
                continue
            if window is None:
                values.append(stats.conc[hour])
                continue
            counts = stats.intl if what == "international" else stats.novel
            # prefix sums padded by k on both sides: p[s + k] is the sum of the buckets
            # before s clamped to [0, BUCKETS]; each window [s, s + k) starting from
            # first - k + 1 to the hour's last bucket is p[s + 2k] - p[s + k]
            p = [0] * k + list(accumulate(counts, initial=0))
            p += [p[-1]] * k
            lo = first + 1  # (first - k + 1) + k
            hi = first + PER_HOUR + k
            values.append(max(map(sub, p[lo + k : hi + k], p[lo:hi])))
        return self._quantile(values)

    def concurrency(self, at: datetime) -> Volume | None:
        """The usual most international calls up at once in this hour of this kind of day."""
        if not self.ready(at):
            return None
        start, today = self._span(at)
        hour = self.calendar.local(at).hour
        key = ("", None, hour)
        try:
            return self._volumes[key]
        except KeyError:
            pass
        usual = self.usual(self.day_kind(today), hour, "", None, start, today)
        found = self._volumes[key] = None if usual is None else (usual, self.slot_label(at))
        return found

    def _quantile(self, values: list[int]) -> int | None:
        if not values:
            return None
        values.sort()
        rank = max(0, math.ceil(self.options.quantile * len(values)) - 1)
        return values[min(rank, len(values) - 1)]

    # ---- destinations and sources ------------------------------------------------------------
    def days_called(self, key: str, at: datetime | None = None) -> int:
        start, today = self._span(at)
        return sum(1 for d in self.dest_days.get(key, ()) if start <= d < today)

    def sources_of(self, key: str, at: datetime | None = None) -> int:
        start, today = self._span(at)
        return sum(1 for s in self.dest_sources.get(key, {}).values() if _seen_in(s, start, today))

    def is_routine(self, dest: Destination | str, at: datetime | None = None) -> bool:
        """Whether the site calls this destination routinely: on at least `routine_days` days
        of the period, from at least `routine_sources` sources (days before `at`; at None:
        everything learned). `dest` is a Destination or its key (region such as "MX", or a
        calling code)."""
        key = dest if isinstance(dest, str) else dest_key(dest)
        if key is None:
            return False
        self._span(at)
        if key not in self._routine:
            o = self.options
            self._routine[key] = (self.days_called(key, at) >= o.routine_days
                                  and self.sources_of(key, at) >= o.routine_sources)
        return self._routine[key]

    def knows(self, dest: Destination, at: datetime, source: str | None = None) -> bool:
        """Whether the destination was called in the period (by `source`, when given)."""
        key = dest_key(dest)
        if key is None:
            return True
        start, today = self._span(at)
        if source is None:
            days = self.dest_days.get(key)
            if not days:
                return False
            if today - _DAY in days:  # the usual case: called the day before
                return start < today
            return any(start <= d < today for d in days)
        mine = self.src_dests.get(source)
        return mine is not None and _seen_in(mine.get(key), start, today)

    def usual_hour(self, source: str, at: datetime) -> bool:
        """Whether `source` called abroad at this hour of day on `usual_hour_days` days."""
        hours = self.src_hours.get(source)
        if hours is None:
            return False
        need = self.options.usual_hour_days
        days = hours.get(self.calendar.local(at).hour, ())
        if len(days) < need:  # too few days even if all of them count
            return False
        start, today = self._span(at)
        before = start - _DAY
        if today == self.last_day and min(days) >= before:
            # in time order (no day after today is learned), and the roll dropped the days
            # before the period but the one just before it
            n = len(days) - (today in days) - (before in days)
        else:
            n = sum(1 for d in days if start <= d < today)
        return n >= need

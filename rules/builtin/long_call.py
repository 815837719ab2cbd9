"""long_call: an international call up longer than T, and exposure: minutes piling up.

Both fire while calls are still up. Exposure adds up the talk minutes, within
`exposure_window`, of answered calls to high-risk destinations the site does not call routinely
or to destinations it has not called in its baseline period (rules.baseline), per source and
PBX-wide, re-checked every minute while such a call is up: six 25-minute calls to a country
never called before add up long before any one of them is long.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import Field

from tollwatch.config.types import Duration, format_duration
from tollwatch.rules.base import Rule, RuleOptions, register
from tollwatch.rules.builtin._learned import novel_high_risk
from tollwatch.rules.model import Call, Finding

_TICK = timedelta(seconds=60)


class LongCallOptions(RuleOptions):
    score: int = 20
    longer_than: Duration = timedelta(minutes=30)
    exposure_minutes: float = Field(default=60.0, ge=0)  # per source; 0: off
    exposure_pbx_minutes: float = Field(default=120.0, ge=0)  # PBX-wide; 0: off
    exposure_window: Duration = timedelta(hours=2)
    exposure_score: int = Field(default=50, ge=0)
    # estimated cost of those calls ([rates]) per source / PBX-wide; 0: off
    exposure_amount: float = Field(default=0.0, ge=0)


def _minutes(call: Call, since: datetime, now: datetime) -> float:
    """Talk minutes of `call` between `since` and `now`."""
    return _total_minutes((call,), since, now)


def _total_minutes(calls: Sequence[Call], since: datetime, now: datetime) -> float:
    """The talk minutes of `calls` between `since` and `now`, added up in their order: one
    loop, the builtin min and max written out (the exposure check sums every exposed call on
    every minute's tick: a call per call and those builtins cost more than the work)."""
    total = 0.0
    for call in calls:
        answer = call.answer
        if answer is None:
            continue
        stop = call.end if call.ended and call.end is not None else now
        if now < stop:
            stop = now
        seconds = (stop - (since if since > answer else answer)).total_seconds()
        if seconds > 0.0:
            total += seconds / 60.0
    return total


@register
class LongCall(Rule[LongCallOptions]):
    rule_type = "long_call"
    options_model = LongCallOptions
    counts_repeats = True
    end_defers_wakeup = True  # on_end sets no timer; the call's own timer is dropped later

    def setup(self) -> None:
        self._timers: list[tuple[datetime, int, Call]] = []
        self._seq = 0
        self.exposed: list[Call] = []  # answered exposed calls, up or ended within the window
        self._next: datetime | None = None

    def _is_exposed(self, call: Call) -> bool:
        o = self.options
        if not (o.exposure_minutes or o.exposure_pbx_minutes or o.exposure_amount) \
                or call.allowlisted:
            return False
        learned = self.context.baseline
        if novel_high_risk(learned, call, call.start):
            return True
        return (learned is not None and learned.ready(call.start)
                and not learned.knows(call.dest, call.start))

    def on_answer(self, call: Call, now: datetime) -> list[Finding]:
        assert call.answer is not None
        self._seq += 1
        heapq.heappush(self._timers, (call.answer + self.options.longer_than, self._seq, call))
        if self._is_exposed(call):
            self.exposed.append(call)
            if self._next is None:
                epoch = int(now.timestamp())
                self._next = datetime.fromtimestamp(epoch - epoch % 60 + 60, tz=now.tzinfo)
        return []

    def on_end(self, call: Call, now: datetime) -> list[Finding]:
        if call.answer is None or call not in self.exposed:  # Call compares by identity
            return []
        return self._exposure(now, [call])

    def next_wakeup(self) -> datetime | None:
        while self._timers and self._timers[0][2].ended:
            heapq.heappop(self._timers)
        timer = self._timers[0][0] if self._timers else None
        if timer is None or (self._next is not None and self._next < timer):
            return self._next
        return timer

    def on_tick(self, now: datetime) -> list[Finding]:
        found = []
        while self._timers and self._timers[0][0] <= now:
            _, _, call = heapq.heappop(self._timers)
            if call.ended:
                continue
            reason = (
                f"call to {call.label()} up longer than "
                f"{format_duration(self.options.longer_than)}"
            )
            found.append(self.finding(now, call, [call], reason))
        if self._next is not None and self._next <= now:
            live = [c for c in self.exposed if not c.ended]
            if live:
                found.extend(self._exposure(now, live))
            self._next = now + _TICK if any(not c.ended for c in self.exposed) else None
        return found

    def _exposure(self, now: datetime, triggers: list[Call]) -> list[Finding]:
        """Check the sources of `triggers` (the calls up, or the one that ended) and the PBX."""
        o = self.options
        since = now - o.exposure_window
        self.exposed = [c for c in self.exposed
                        if not c.ended or (c.end is not None and c.end > since)]
        found = []
        last = {c.source: c for c in triggers}
        mine: dict[str, list[Call]] = {src: [] for src in last}  # their exposed calls, in order
        for c in self.exposed:
            kept = mine.get(c.source)
            if kept is not None:
                kept.append(c)
        checks = [(o.exposure_minutes, mine[src], f"from {src}", t) for src, t in last.items()]
        checks.append((o.exposure_pbx_minutes, self.exposed, "PBX-wide", triggers[-1]))
        cur = self.context.currency
        for limit, calls, who, trigger in checks:
            if not calls or not (limit or o.exposure_amount):
                continue
            total = _total_minutes(calls, since, now)
            if limit and total >= limit:
                over = f"threshold {limit:.0f} min"
            elif o.exposure_amount and (cost := sum(
                    (c.dest.rate or 0.0) * _minutes(c, since, now) for c in calls
            )) >= o.exposure_amount:  # the cost only when a limit on it is set
                over = f"estimated {cost:.2f} {cur}, threshold {o.exposure_amount:.2f} {cur}"
            else:
                continue
            places = ", ".join(sorted({c.label() for c in calls}))
            reason = (
                f"{total:.0f} min to high-risk or new destinations {who} within "
                f"{format_duration(o.exposure_window)} ({over}): {places}"
            )
            found.append(self.finding(now, trigger, calls, reason, score=o.exposure_score,
                                      pbx_wide=who == "PBX-wide"))
        return found

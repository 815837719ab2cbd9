"""spend: estimated cost of international calls per window, from the per-prefix rate table.

Cost accrues while a call is up, so the rule re-evaluates every minute of event time while a
rated call is answered, and again when it ends: a long expensive call fires before hangup.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from tollwatch.config.types import Duration, format_duration
from tollwatch.rules.base import Rule, RuleOptions, register
from tollwatch.rules.builtin._window import GroupBy, group_key, incident_group
from tollwatch.rules.model import Call, Finding

_TICK = 60


class SpendOptions(RuleOptions):
    score: int = 60
    group_by: GroupBy = "source"
    amount: float = Field(default=50.0, gt=0)
    window: Duration = timedelta(hours=1)


def cost(call: Call, now: datetime) -> float:
    rate = call.dest.rate
    if not rate:
        return 0.0
    return rate * call.up_for(now) / 60.0


@register
class Spend(Rule[SpendOptions]):
    rule_type = "spend"
    options_model = SpendOptions
    counts_repeats = True
    end_defers_wakeup = True  # on_end (_check) sets no timer
    only_rated = True  # a call without a rate costs nothing here

    def setup(self) -> None:
        self.calls: dict[str, list[Call]] = {}  # rated calls answered within the window
        self._next: datetime | None = None

    def on_answer(self, call: Call, now: datetime) -> list[Finding]:
        if not call.dest.rate:
            return []
        self.calls.setdefault(group_key(call, self.options.group_by), []).append(call)
        if self._next is None:
            epoch = int(now.timestamp())
            self._next = datetime.fromtimestamp(epoch - epoch % _TICK + _TICK, tz=now.tzinfo)
        return []

    def on_end(self, call: Call, now: datetime) -> list[Finding]:
        if not call.dest.rate or call.answer is None:
            return []
        return self._check(group_key(call, self.options.group_by), now, call)

    def next_wakeup(self) -> datetime | None:
        return self._next

    def on_tick(self, now: datetime) -> list[Finding]:
        found: list[Finding] = []
        any_up = False
        for key in list(self.calls):
            live = [c for c in self.calls[key] if not c.ended]
            if live:
                any_up = True
                found.extend(self._check(key, now, live[-1]))
        self._next = now + timedelta(seconds=_TICK) if any_up else None
        return found

    def _check(self, key: str, now: datetime, trigger: Call) -> list[Finding]:
        o = self.options
        limit = now - o.window
        kept = [
            c for c in self.calls.get(key, [])
            if not c.ended or (c.end is not None and c.end > limit)
        ]
        if kept:
            self.calls[key] = kept
        else:
            self.calls.pop(key, None)
        total = sum(cost(c, now) for c in kept)
        if total < o.amount:
            return []
        cur = self.context.currency
        reason = (
            f"estimated spend {total:.2f} {cur} within {format_duration(o.window)} "
            f"(threshold {o.amount:.2f} {cur})"
        )
        return [self.finding(now, trigger, kept, reason, pbx_wide=o.group_by != "source",
                             group=incident_group(key, o.group_by))]

"""long_call: an international call up longer than T. Fires while the call is still up."""

from __future__ import annotations

import heapq
from datetime import datetime, timedelta

from config.types import Duration, format_duration
from rules.base import Rule, RuleOptions, register
from rules.model import Call, Finding


class LongCallOptions(RuleOptions):
    score: int = 20
    longer_than: Duration = timedelta(minutes=30)


@register
class LongCall(Rule[LongCallOptions]):
    rule_type = "long_call"
    options_model = LongCallOptions
    counts_repeats = True

    def setup(self) -> None:
        self._timers: list[tuple[datetime, int, Call]] = []
        self._seq = 0

    def on_answer(self, call: Call, now: datetime) -> list[Finding]:
        assert call.answer is not None
        self._seq += 1
        heapq.heappush(self._timers, (call.answer + self.options.longer_than, self._seq, call))
        return []

    def next_wakeup(self) -> datetime | None:
        while self._timers and self._timers[0][2].ended:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

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
        return found

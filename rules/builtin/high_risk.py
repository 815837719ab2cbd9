"""high_risk_destination: calls to destinations on the high-risk list (not allowlisted).

One such call is a weak signal (30: no incident alone); many from one source within the window
are a strong one (70).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from tollwatch.config.types import Duration, format_duration
from tollwatch.rules.base import Rule, RuleOptions, register
from tollwatch.rules.builtin._learned import novel_high_risk
from tollwatch.rules.builtin._window import Windows
from tollwatch.rules.model import Call, Finding


class HighRiskOptions(RuleOptions):
    score: int = 30
    window: Duration = timedelta(hours=6)  # how far back this source's calls are counted
    many: int = Field(default=10, ge=2)  # this many high-risk calls within the window ...
    many_score: int = Field(default=70, ge=0)  # ... score this instead
    # A high-risk destination the site calls routinely (rules.baseline: on many days, from
    # several sources) scores like any international call: not here (volume rules still count).
    routine_exempt: bool = True


@register
class HighRiskDestination(Rule[HighRiskOptions]):
    rule_type = "high_risk_destination"
    options_model = HighRiskOptions
    only_risky = True

    def setup(self) -> None:
        self.windows = Windows(self.options.window)

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        o = self.options
        if not call.risky:
            return []
        if o.routine_exempt and not novel_high_risk(self.context.baseline, call, now):
            return []
        self.windows.add(call.source, now, call)
        recent = self.windows.held(call.source)
        places = ", ".join(sorted({c.label() for c in recent}))
        n = len(recent)
        span = format_duration(o.window)
        if n >= o.many:
            reason = f"{n} calls to high-risk destinations within {span}: {places}"
            return [self.window_finding(now, call, recent, reason, score=o.many_score,
                                        source=call.source)]
        what = "call" if n == 1 else "calls"
        reason = f"{n} {what} to high-risk destinations within {span}: {places}"
        return [self.finding(now, call, (call,), reason, source=call.source)]

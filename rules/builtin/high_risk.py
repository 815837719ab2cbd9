"""high_risk_destination: a call to a destination on the high-risk list (not allowlisted)."""

from __future__ import annotations

from datetime import datetime, timedelta

from config.types import Duration, format_duration
from rules.base import Rule, RuleOptions, register
from rules.builtin._window import Windows
from rules.model import Call, Finding


class HighRiskOptions(RuleOptions):
    score: int = 30
    window: Duration = timedelta(hours=6)  # how far back the reason counts this source's calls


@register
class HighRiskDestination(Rule[HighRiskOptions]):
    rule_type = "high_risk_destination"
    options_model = HighRiskOptions

    def setup(self) -> None:
        self.windows = Windows(self.options.window)

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        if not call.risky:
            return []
        recent = self.windows.add(call.source, now, call)
        places = sorted({c.label() for c in recent})
        n = len(recent)
        what = "call" if n == 1 else "calls"
        reason = (
            f"{n} {what} to high-risk destinations within "
            f"{format_duration(self.options.window)}: {', '.join(places)}"
        )
        return [self.finding(now, call, [call], reason)]

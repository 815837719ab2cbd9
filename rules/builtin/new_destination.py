"""new_destination: a destination (or source/destination pair) not called within the period.

The PBX-level memory is the rule's own (a country not called in `baseline`, silent until
`min_history` of traffic is seen) joined with the site's learned baseline (rules.baseline): once
that has enough history, a destination it has not seen in its period is new from the first
call, even at the start of a scan. A new destination scores `score`, `high_risk_score` when it
is on the high-risk list; a destination the PBX knows but this source never called scores
`pair_score` (`pair_high_risk_score` if high-risk; the higher of the two applies, not both).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from tollwatch.config.types import Duration, format_duration
from tollwatch.rules.base import Rule, RuleOptions, register
from tollwatch.rules.model import Call, Finding


class NewDestinationOptions(RuleOptions):
    score: int = 20
    baseline: Duration = timedelta(days=30)
    min_history: Duration = timedelta(days=7)
    high_risk_score: int = Field(default=25, ge=0)  # a new destination on the high-risk list
    pair_score: int = Field(default=5, ge=0)  # known to the PBX, new for this source
    pair_high_risk_score: int = Field(default=10, ge=0)  # ... and on the high-risk list


@register
class NewDestination(Rule[NewDestinationOptions]):
    rule_type = "new_destination"
    options_model = NewDestinationOptions

    def setup(self) -> None:
        self.last_seen: dict[str, datetime] = {}
        self.history_start: datetime | None = None

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        region = call.dest.region
        if region is None:
            return []
        if self.history_start is None:
            self.history_start = now
        o = self.options
        previous = self.last_seen.get(region)
        self.last_seen[region] = now
        if call.allowlisted:
            return []
        learned = self.context.baseline
        ready = learned is not None and learned.ready(now)
        if not ready and now - self.history_start < o.min_history:
            return []
        seen_here = previous is not None and now - previous <= o.baseline
        if learned is not None and ready:
            if not seen_here and not learned.knows(call.dest, now):
                return [self._new(call, now, f"first call to {call.label()} in "
                                             f"{format_duration(learned.options.period)}")]
            pair = o.pair_high_risk_score if call.risky else o.pair_score
            if pair and not learned.knows(call.dest, now, call.source):
                reason = f"{call.source} never called {call.label()} before"
                return [self.finding(now, call, [call], reason, score=pair)]
            return []
        if seen_here:
            return []
        return [self._new(call, now, f"first call to {call.label()} in "
                                     f"{format_duration(o.baseline)}")]

    def _new(self, call: Call, now: datetime, reason: str) -> Finding:
        o = self.options
        score = max(o.score, o.high_risk_score) if call.risky else o.score
        if call.risky:
            reason += " (high-risk)"
        return self.finding(now, call, [call], reason, score=score)

"""new_destination: a country this PBX has not called within the baseline period.

The baseline is learned from the calls themselves (and, in the daemon, kept across restarts):
nothing fires until `min_history` of traffic has been seen, so a first scan is not all alarms.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from config.types import Duration, format_duration
from rules.base import Rule, RuleOptions, register
from rules.model import Call, Finding


class NewDestinationOptions(RuleOptions):
    score: int = 20
    baseline: Duration = timedelta(days=30)
    min_history: Duration = timedelta(days=7)


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
        if call.allowlisted or now - self.history_start < o.min_history:
            return []
        if previous is not None and now - previous <= o.baseline:
            return []
        span = format_duration(o.baseline)
        reason = f"first call to {call.label()} in {span}"
        return [self.finding(now, call, [call], reason)]

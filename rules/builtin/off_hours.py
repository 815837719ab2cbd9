"""off_hours: international calls outside business hours, at weekends, on holidays."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from tollwatch.config.types import Duration, format_duration
from tollwatch.rules.base import Rule, RuleOptions, register
from tollwatch.rules.builtin._learned import novel_high_risk
from tollwatch.rules.builtin._window import Windows
from tollwatch.rules.model import Call, Finding


class OffHoursOptions(RuleOptions):
    score: int = 30
    many: int = Field(default=5, ge=2)  # this many off-hours calls from one source ...
    many_window: Duration = timedelta(hours=6)  # ... within this span ...
    many_score: int = Field(default=60, ge=0)  # ... score this instead
    # A source that calls abroad at this hour on many days (a night-shift desk; rules.baseline)
    # is at work: its calls are not off-hours calls, unless to a non-routine high-risk place.
    usual_hours_exempt: bool = True


@register
class OffHours(Rule[OffHoursOptions]):
    rule_type = "off_hours"
    options_model = OffHoursOptions
    only_closed = True

    def setup(self) -> None:
        self.windows = Windows(self.options.many_window)

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        why = call.closed
        if why is None:
            return []
        o = self.options
        learned = self.context.baseline
        if (
            o.usual_hours_exempt
            and learned is not None
            and learned.usual_hour(call.source, now)
            and not novel_high_risk(learned, call, now)
        ):
            return []
        if self.windows.add(call.source, now, call) >= o.many:
            recent = self.windows.held(call.source)
            reason = (
                f"{len(recent)} international calls outside business hours within "
                f"{format_duration(o.many_window)} (latest {why})"
            )
            return [self.window_finding(now, call, recent, reason, score=o.many_score,
                                        source=call.source)]
        return [self.finding(now, call, (call,), f"international call on {why}",
                             source=call.source)]

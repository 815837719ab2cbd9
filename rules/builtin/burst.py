"""burst: at least N international or high-risk calls within a sliding window.

Sigma-correlation shape: group by (one source, or the whole PBX), a timespan, a count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from config.types import Duration, format_duration
from rules.base import Rule, RuleOptions, register
from rules.builtin._window import GroupBy, Windows, group_key
from rules.model import Call, Finding


class BurstOptions(RuleOptions):
    score: int = 60
    group_by: GroupBy = "source"
    count: int = Field(default=8, ge=2)
    window: Duration = timedelta(minutes=10)


@register
class Burst(Rule[BurstOptions]):
    rule_type = "burst"
    options_model = BurstOptions

    def setup(self) -> None:
        self.windows = Windows(self.options.window)

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        o = self.options
        key = group_key(call, o.group_by)
        if self.windows.add(key, now, call) < o.count:
            return []
        recent = self.windows.held(key)
        who = f"from {call.source}" if o.group_by == "source" else "PBX-wide"
        reason = (
            f"{len(recent)} international calls {who} within {format_duration(o.window)} "
            f"(threshold {o.count})"
        )
        return [self.finding(now, call, recent, reason, pbx_wide=o.group_by == "pbx")]

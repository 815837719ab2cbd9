"""burst: at least N international or high-risk calls within a sliding window.

Sigma-correlation shape: group by (one source, or the whole PBX), a timespan, a count.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from config.types import Duration, format_duration
from rules.base import Rule, RuleOptions, register
from rules.builtin._learned import novel_high_risk, threshold
from rules.builtin._window import GroupBy, Windows, group_key
from rules.model import Call, Finding


class BurstOptions(RuleOptions):
    score: int = 60
    group_by: GroupBy = "source"
    count: int = Field(default=8, ge=2)
    window: Duration = timedelta(minutes=10)
    # "high_risk": only high-risk calls to destinations the site does not call routinely.
    calls: Literal["international", "high_risk"] = "international"
    # PBX-wide, once the baseline has enough history: the threshold is
    # max(count, factor x the most such calls usually seen in `window` at this hour of week).
    factor: float = Field(default=0.0, ge=0)
    learned_only: bool = False  # silent until the baseline has its min_history


@register
class Burst(Rule[BurstOptions]):
    rule_type = "burst"
    options_model = BurstOptions

    def setup(self) -> None:
        self.windows = Windows(self.options.window)

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        o = self.options
        baseline = self.context.baseline
        if o.learned_only and (baseline is None or not baseline.ready(now)):
            return []
        if o.calls == "high_risk" and not novel_high_risk(baseline, call, now):
            return []
        key = group_key(call, o.group_by)
        n = self.windows.add(key, now, call)
        if n < o.count:
            return []
        factor = o.factor if o.group_by == "pbx" else 0.0
        limit, words = threshold(baseline, o.count, factor, o.calls, o.window, now)
        if n < limit:
            return []
        recent = self.windows.held(key)
        who = f"from {call.source}" if o.group_by == "source" else "PBX-wide"
        what = "international" if o.calls == "international" else "high-risk"
        reason = f"{n} {what} calls {who} within {format_duration(o.window)} ({words})"
        return [self.finding(now, call, recent, reason, pbx_wide=o.group_by == "pbx")]

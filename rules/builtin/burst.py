"""burst: at least N international or high-risk calls within a sliding window.

Sigma-correlation shape: group by (one source, the whole PBX, or one destination number or
number block called from any sources), a timespan, a count (and at least `min_sources`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from tollwatch.config.types import Duration, format_duration
from tollwatch.rules.base import Rule, RuleOptions, register
from tollwatch.rules.builtin._learned import learned_limit, limit_words, novel_high_risk
from tollwatch.rules.builtin._window import (
    PBX,
    GroupBy,
    Windows,
    group_key,
    incident_group,
    who,
)
from tollwatch.rules.model import Call, Finding, SparseGroup


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
    # ... from at least this many sources; above 1, the count must be reached even without the
    # busiest source's calls (many sources, not one source's burst with a few others around)
    min_sources: int = Field(default=1, ge=1)


@register
class Burst(Rule[BurstOptions]):
    rule_type = "burst"
    options_model = BurstOptions

    def setup(self) -> None:
        o = self.options
        # sources are counted where a finding needs them (min_sources, destination groups)
        self.windows = Windows(
            o.window, count_sources=o.min_sources > 1 or o.group_by in ("destination", "dest_block")
        )
        self.only_risky = self.options.calls == "high_risk"  # novel_high_risk needs it

    def sparse_group(self) -> SparseGroup | None:
        """Per source: nothing below `count` calls in the window (a learned threshold is never
        below it; min_sources only adds a condition)."""
        o = self.options
        return SparseGroup(o.window, o.count) if o.group_by == "source" else None

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        o = self.options
        baseline = self.context.baseline
        if o.learned_only and (baseline is None or not baseline.ready(now)):
            return []
        if o.calls == "high_risk" and not novel_high_risk(baseline, call, now):
            return []
        by = o.group_by
        key = call.source if by == "source" else PBX if by == "pbx" else group_key(call, by)
        n = self.windows.add(key, now, call)
        if n < o.count:
            return []
        factor = o.factor if o.group_by == "pbx" else 0.0
        limit, usual = learned_limit(baseline, o.count, factor, o.calls, o.window, now)
        if n < limit:
            return []
        recent = self.windows.held(key)
        sources = 1
        per_source = recent.sources
        if per_source is not None:
            sources = len(per_source)
            if sources < o.min_sources:
                return []
            if o.min_sources > 1 and n - max(per_source.values()) < limit:
                return []  # one source's burst with a few others around: per-source rules' case
        words = limit_words(limit, o.count, usual)
        what = "international" if o.calls == "international" else "high-risk"
        span = format_duration(o.window)
        reason = f"{n} {what} calls {who(call, key, o.group_by, sources)} within {span} ({words})"
        return [
            self.window_finding(
                now, call, recent, reason,
                pbx_wide=o.group_by != "source", group=incident_group(key, o.group_by),
                source=call.source if o.group_by == "source" else None,
            )
        ]

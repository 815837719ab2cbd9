"""concurrent: at least N international calls up at the same time."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from tollwatch.rules.base import Rule, RuleOptions, register
from tollwatch.rules.builtin._learned import learned_limit, limit_words
from tollwatch.rules.builtin._window import GroupBy, group_key, incident_group
from tollwatch.rules.model import Call, Finding


class ConcurrentOptions(RuleOptions):
    score: int = 40
    group_by: GroupBy = "pbx"
    count: int = Field(default=5, ge=2)
    # PBX-wide, once the baseline has enough history: the threshold is
    # max(count, factor x the most calls usually up at once at this hour of week).
    factor: float = Field(default=0.0, ge=0)


@register
class Concurrent(Rule[ConcurrentOptions]):
    rule_type = "concurrent"
    options_model = ConcurrentOptions

    def setup(self) -> None:
        self.active: dict[str, dict[str, Call]] = {}

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        o = self.options
        key = group_key(call, o.group_by)
        up = self.active.get(key)
        if up is None:
            up = self.active[key] = {}
        up[call.call_id] = call
        if len(up) < o.count:
            return []
        factor = o.factor if o.group_by == "pbx" else 0.0
        limit, usual = learned_limit(self.context.baseline, o.count, factor, "", None, now)
        if len(up) < limit:
            return []
        words = limit_words(limit, o.count, usual)
        calls = list(up.values())
        who = f"from {call.source}" if o.group_by == "source" else "PBX-wide"
        reason = f"{len(calls)} international calls up at once {who} ({words})"
        return [self.finding(now, call, calls, reason, pbx_wide=o.group_by != "source",
                             group=incident_group(key, o.group_by))]

    def on_end(self, call: Call, now: datetime) -> list[Finding]:
        key = group_key(call, self.options.group_by)
        up = self.active.get(key)
        if up is not None:
            up.pop(call.call_id, None)
            if not up:
                del self.active[key]
        return []

"""short_call_flood: many very short international calls (test calls before an attack)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from tollwatch.config.types import Duration, format_duration
from tollwatch.rules.base import Rule, RuleOptions, register
from tollwatch.rules.builtin._window import GroupBy, Windows, group_key, incident_group
from tollwatch.rules.model import Call, Finding, SparseGroup


class ShortCallOptions(RuleOptions):
    score: int = 40
    group_by: GroupBy = "source"
    shorter_than: Duration = timedelta(seconds=10)
    include_unanswered: bool = True
    count: int = Field(default=10, ge=2)
    window: Duration = timedelta(minutes=10)


@register
class ShortCallFlood(Rule[ShortCallOptions]):
    rule_type = "short_call_flood"
    options_model = ShortCallOptions

    def setup(self) -> None:
        self.windows = Windows(self.options.window)

    def sparse_group(self) -> SparseGroup | None:
        """Per source: on_end adds short calls to the window of their end event, and finds
        nothing below `count`."""
        o = self.options
        return SparseGroup(o.window, o.count, at_end=True) if o.group_by == "source" else None

    def on_end(self, call: Call, now: datetime) -> list[Finding]:
        o = self.options
        answer, end = call.answer, call.end
        if answer is None and not o.include_unanswered:
            return []
        talk = 0.0 if answer is None or end is None else (end - answer).total_seconds()
        if max(talk, 0.0) >= o.shorter_than.total_seconds():  # Call.billsec, inlined
            return []
        by = o.group_by
        key = call.source if by == "source" else group_key(call, by)
        if self.windows.add(key, now, call) < o.count:
            return []
        recent = self.windows.held(key)
        reason = (
            f"{len(recent)} international calls shorter than {format_duration(o.shorter_than)} "
            f"within {format_duration(o.window)} (threshold {o.count})"
        )
        return [self.window_finding(
            now, call, recent, reason, pbx_wide=o.group_by != "source",
            group=incident_group(key, o.group_by),
            source=call.source if o.group_by == "source" else None,
        )]

"""sequential_dialing: many numbers in one block that differ only in their last digits."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from tollwatch.config.types import Duration, format_duration
from tollwatch.rules.base import Rule, RuleOptions, register
from tollwatch.rules.builtin._window import GroupBy, Windows, group_key, incident_group
from tollwatch.rules.model import Call, Finding, SparseGroup


class SequentialOptions(RuleOptions):
    score: int = 60
    group_by: GroupBy = "source"
    varying_digits: int = Field(default=2, ge=1, le=4)
    count: int = Field(default=5, ge=2)  # distinct numbers in one block
    window: Duration = timedelta(hours=1)


@register
class SequentialDialing(Rule[SequentialOptions]):
    rule_type = "sequential_dialing"
    options_model = SequentialOptions

    def setup(self) -> None:
        self.windows = Windows(self.options.window)
        self._seen = 0

    def sparse_group(self) -> SparseGroup | None:
        """Per source and block: nothing below `count` calls (distinct numbers are fewer)."""
        o = self.options
        if o.group_by != "source":
            return None
        return SparseGroup(o.window, o.count, o.varying_digits)

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        o = self.options
        e164 = call.dest.e164
        if not e164 or len(e164) <= o.varying_digits + 4:
            return []
        block = e164[: -o.varying_digits]
        by = o.group_by
        key = f"{call.source if by == 'source' else group_key(call, by)}|{block}"
        n = self.windows.add(key, now, call)
        self._seen += 1
        if self._seen % 1024 == 0:
            self.windows.prune(now)  # other groups: this one is as of now already
        if n < o.count:
            return []  # fewer calls than numbers needed
        recent = self.windows.held(key)
        numbers = {c.dest.e164 for c in recent}
        if len(numbers) < o.count:
            return []
        mask = block + "x" * o.varying_digits
        reason = (
            f"{len(numbers)} different numbers in block {mask} dialed within "
            f"{format_duration(o.window)} (threshold {o.count})"
        )
        return [self.window_finding(
            now, call, recent, reason, pbx_wide=o.group_by != "source",
            group=incident_group(group_key(call, o.group_by), o.group_by),
            source=call.source if o.group_by == "source" else None,
        )]

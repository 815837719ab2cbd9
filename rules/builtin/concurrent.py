"""concurrent: at least N international calls up at the same time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from tollwatch.rules.base import Rule, RuleOptions, register
from tollwatch.rules.builtin._learned import learned_limit, limit_words
from tollwatch.rules.builtin._window import PBX, GroupBy, group_key, incident_group
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
        self.active: dict[str, Up] = {}

    def restore(self, state: dict[str, Any]) -> None:
        """Snapshots from before `Up`: a dict of calls per group."""
        active = state.get("active")
        if isinstance(active, dict):
            state = {**state, "active": {
                k: v if isinstance(v, Up) else Up.of(v) for k, v in active.items()
            }}
        super().restore(state)

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        o = self.options
        by = o.group_by
        key = PBX if by == "pbx" else call.source if by == "source" else group_key(call, by)
        up = self.active.get(key)
        if up is None:
            up = self.active[key] = Up()
        calls_up = up.up
        calls_up[call.call_id] = call
        up.added += 1
        if len(calls_up) < o.count:
            return []
        factor = o.factor if by == "pbx" else 0.0
        limit, usual = learned_limit(self.context.baseline, o.count, factor, "", None, now)
        if len(calls_up) < limit:
            return []
        words = limit_words(limit, o.count, usual)
        who = f"from {call.source}" if by == "source" else "PBX-wide"
        reason = f"{len(calls_up)} international calls up at once {who} ({words})"
        # the calls up, in the order they started; the tracker walks only those that started
        # since this group's last finding went to the same incident (`Finding.calls_new_to`)
        return [Finding(
            self.name, self.rule_type, now, call, list(calls_up.values()), o.score, reason,
            by != "source", incident_group(key, by), call.source if by == "source" else None,
            up,
        )]

    def on_end(self, call: Call, now: datetime) -> list[Finding]:
        by = self.options.group_by
        key = PBX if by == "pbx" else call.source if by == "source" else group_key(call, by)
        up = self.active.get(key)
        if up is not None:
            up.up.pop(call.call_id, None)
            if not up.up:
                del self.active[key]
        return []


class Up:
    """One group's calls up, in the order they started; `added` counts every call ever added
    (a `CallWindow` for `Finding.calls_new_to`: calls that ended only leave, new ones come
    last)."""

    __slots__ = ("added", "sent_at", "sent_to", "up")

    def __init__(self) -> None:
        self.up: dict[str, Call] = {}
        self.added = 0
        self.sent_to: object = None
        self.sent_at = 0

    @property
    def calls(self) -> list[Call]:
        return list(self.up.values())

    @classmethod
    def of(cls, calls: dict[str, Call]) -> Up:
        up = cls()
        up.up = dict(calls)
        up.added = len(calls)
        return up

"""The engine: feeds call events in event-time order to every rule, fires rule timers, and turns
findings into incident changes. Batch (`rules.batch`) and the live daemon both drive it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from tollwatch.config.schema import Settings
from tollwatch.rules.attempts import AttemptTracker
from tollwatch.rules.base import Rule, RuleContext, build_rules
from tollwatch.rules.baseline import Baseline
from tollwatch.rules.calendar import BusinessCalendar
from tollwatch.rules.incidents import IncidentChange, IncidentTracker
from tollwatch.rules.model import AuthEvent, Call, CallEvent, Finding, Kind


def relevant(call: Call) -> bool:
    """Rules look at international calls and at any call to a high-risk prefix."""
    return call.dest.dest_class == "international" or call.dest.high_risk


class Engine:
    def __init__(
        self,
        rules: list[Rule[Any]],
        tracker: IncidentTracker,
        calendar: BusinessCalendar,
        baseline: Baseline | None = None,
    ) -> None:
        self.rules = rules
        self.baseline = baseline
        self.tracker = tracker
        self.calendar = calendar
        self.clock: datetime | None = None
        self.attempts = AttemptTracker()
        # Each event goes only to the rules that have a hook for it (and want the call).
        self._start_rules = _dispatch(rules, "on_start")
        self._answer_rules = _dispatch(rules, "on_answer")
        self._end_rules = _dispatch(rules, "on_end")
        self._timed = [r for r in rules if _overrides(r, "next_wakeup")]
        self._auth_rules = [r for r in rules if _overrides(r, "on_auth")]

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        rule_specs: Mapping[str, Mapping[str, Any]] | None = None,
        baseline: Baseline | None = None,
    ) -> Engine:
        """An engine with the site's rules. `baseline`: what was learned before (from
        `tollwatch learn` or the state store); without one it starts empty and learns."""
        calendar = baseline.calendar if baseline is not None else BusinessCalendar(settings)
        if baseline is None:
            baseline = Baseline(settings.baseline, calendar)
        context = RuleContext(
            site=settings.site.name,
            calendar=calendar,
            currency=settings.rates.currency,
            baseline=baseline,
        )
        specs = rule_specs
        if specs is None:
            specs = {name: spec.model_dump() for name, spec in settings.rules.items()}
        inc = settings.incidents
        tracker = IncidentTracker(
            settings.site.name, inc.warning_score, inc.critical_score, inc.gap,
            (inc.keep_first_calls, inc.keep_last_calls),
        )
        return cls(build_rules(specs, context), tracker, context.calendar, baseline)

    def advance(self, now: datetime) -> list[IncidentChange]:
        """Fire every rule timer due at or before `now`, in time order."""
        changes: list[IncidentChange] = []
        clock = self.clock
        while True:
            due: datetime | None = None
            due_rule: Rule[Any] | None = None
            for rule in self._timed:
                at = rule.next_wakeup()
                if at is not None and at <= now and (due is None or at < due):
                    due, due_rule = at, rule
            if due is None or due_rule is None:
                break
            clock = due if clock is None or due > clock else clock
            self.clock = clock
            findings = due_rule.on_tick(due)
            if findings:
                changes.extend(self._apply(findings))
        self.clock = now if clock is None or now > clock else clock
        return changes

    def handle(self, event: CallEvent) -> list[IncidentChange]:
        changes = self.advance(event.at)
        call, now, kind = event.call, event.at, event.kind
        if kind == Kind.STARTED:
            call.closed = self.calendar.closed_reason(call.start)
            self.attempts.started(call, now)
            change = self.tracker.add_call(call, now)
            if change is not None:
                changes.append(change)
            self._dispatch(self._start_rules, call, now, changes, _START)
            if self.baseline is not None:  # learned after scoring: never its own normal
                self.baseline.observe_start(call)
        elif kind == Kind.ANSWERED:
            self.attempts.answered(call)
            self._dispatch(self._answer_rules, call, now, changes, _ANSWER)
        else:
            call.ended = True
            self.attempts.ended(call, now)
            if self.baseline is not None:
                self.baseline.observe_end(call)
            self._dispatch(self._end_rules, call, now, changes, _END)
        return changes

    def _dispatch(
        self, targets: list[_Target], call: Call, now: datetime,
        changes: list[IncidentChange], hook: int,
    ) -> None:
        repeat = call.repeat
        off_hours = call.closed is not None
        for rule, custom, counts_repeats, during, handlers in targets:
            if custom:
                if not rule.wants(call):
                    continue
            elif (repeat and not counts_repeats) or (during and during != off_hours + 1):
                continue
            findings = handlers[hook](call, now)
            if findings:
                changes.extend(self._apply(findings))

    def handle_auth(self, event: AuthEvent) -> list[IncidentChange]:
        changes = self.advance(event.at)
        for rule in self._auth_rules:
            changes.extend(self._apply(rule.on_auth(event)))
        return changes

    def _apply(self, findings: Iterable[Finding]) -> list[IncidentChange]:
        changes = []
        for finding in findings:
            change = self.tracker.add(finding)
            if change is not None:
                changes.append(change)
        return changes


def _overrides(rule: Rule[Any], method: str) -> bool:
    return getattr(type(rule), method) is not getattr(Rule, method)


_START, _ANSWER, _END = 0, 1, 2
_DURING = {"any": 0, "business_hours": 1, "off_hours": 2}  # off_hours + 1 must match
Handler = Callable[[Call, datetime], list[Finding]]
# (rule, has its own wants(), counts_repeats, during code, its on_start/on_answer/on_end)
_Target = tuple[Rule[Any], bool, bool, int, tuple[Handler, Handler, Handler]]


def _dispatch(rules: list[Rule[Any]], hook: str) -> list[_Target]:
    """The rules that override `hook`, with what Rule.wants looks at, precomputed."""
    return [
        (
            r,
            _overrides(r, "wants"),
            r.counts_repeats,
            _DURING[r.options.during],
            (r.on_start, r.on_answer, r.on_end),
        )
        for r in rules
        if _overrides(r, hook)
    ]


def events_for(call: Call) -> list[CallEvent]:
    """The events a finished call produces, as the live daemon would have seen them."""
    events = [CallEvent(call.start, Kind.STARTED, call)]
    last = call.start
    if call.answer is not None:
        answer = max(call.answer, call.start)
        events.append(CallEvent(answer, Kind.ANSWERED, call))
        last = answer
    end = call.end if call.end is not None else last
    kind = Kind.ENDED if end > last else Kind.ENDED_SAME_INSTANT
    events.append(CallEvent(max(end, last), kind, call))
    return events

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
from tollwatch.rules.model import MAX_SPARSE, AuthEvent, Call, CallEvent, Finding, Kind


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
        # Rules whose on_start (or on_end) a batch replay may spare calls that cannot matter
        # to them (rules.sparse; `Call.sparse` has a bit for each, in this order).
        self.sparse = [r for r in rules if r.sparse_group() is not None][:MAX_SPARSE]
        # Each event goes only to the rules that have a hook for it and can care about the call
        # (`_targets`: one list per kind of call); a custom `wants` is asked per call.
        self._start_rules = _targets(rules, "on_start", self.sparse)
        self._answer_rules = _targets(rules, "on_answer", self.sparse)
        self._end_rules = _targets(rules, "on_end", self.sparse)
        self._timed = [r for r in rules if _overrides(r, "next_wakeup")]
        self._auth_rules = [r for r in rules if _overrides(r, "on_auth")]
        # Each timed rule's next wakeup, asked again only once the rule was handed an event or
        # a tick since (Rule.next_wakeup moves only then); `_wake` is the earliest.
        self._wakes: list[datetime | None] = [None] * len(self._timed)
        self._stale: set[int] = set(range(len(self._timed)))
        self._wake: datetime | None = None

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

    def leave_out_idle(self, idle: bool) -> None:
        """With `idle`, on_start no longer goes to the rules that say it is idle until a
        security event (`Rule.start_idle`, asked now): for a batch replay, which hands none.
        Without: every rule again."""
        left_out = frozenset(id(r) for r in self.rules if r.start_idle()) if idle else None
        self._start_rules = _targets(self.rules, "on_start", self.sparse, left_out)

    def advance(self, now: datetime) -> list[IncidentChange]:
        """Fire every rule timer due at or before `now`, in time order."""
        stale = self._stale
        if stale:  # ask again only the timed rules that were handed something since
            wakes = self._wakes
            for i in stale:
                wakes[i] = self._timed[i].next_wakeup()
            stale.clear()
            wake = None
            for w in wakes:
                if w is not None and (wake is None or w < wake):
                    wake = w
            self._wake = wake
        wake = self._wake
        if wake is None or wake > now:
            clock = self.clock
            self.clock = now if clock is None or now > clock else clock
            return []
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
        stale.update(range(len(self._timed)))
        return changes

    def handle(self, event: CallEvent) -> list[IncidentChange]:
        now, kind, call = event
        if kind == _STARTED:
            return self.started(call, now)
        if kind == _ANSWERED:
            return self.answered(call, now)
        return self.ended(call, now)

    def _catch_up(self, now: datetime) -> list[IncidentChange]:
        """Before a call event: fire the timers due by `now` (none due: only the clock moves)."""
        wake = self._wake
        if self._stale or (wake is not None and wake <= now):
            return self.advance(now)
        clock = self.clock
        if clock is None or now > clock:
            self.clock = now
        return []

    def started(self, call: Call, now: datetime) -> list[IncidentChange]:
        """A call started (`handle` of a STARTED event; the batch replay calls it directly)."""
        changes = self._catch_up(now)
        call.closed = self.calendar.closed_reason(call.start)
        if call.lone:  # a batch knows no other leg of its attempt
            call.repeat = False
            self.attempts.skip(now)
        else:
            self.attempts.started(call, now)
        call.route = _route(call)
        change = self.tracker.add_call(call, now)
        if change is not None:
            changes.append(change)
        self._dispatch(self._start_rules, _START, call, now, changes)
        if self.baseline is not None:
            self.baseline.observe_start(call)  # learned after scoring: never its own normal
        return changes

    def answered(self, call: Call, now: datetime) -> list[IncidentChange]:
        changes = self._catch_up(now)
        if not call.lone:
            self.attempts.answered(call)
        return self._dispatch(self._answer_rules, _ANSWER, call, now, changes)

    def ended(self, call: Call, now: datetime) -> list[IncidentChange]:
        changes = self._catch_up(now)
        call.ended = True
        if not call.lone:
            self.attempts.ended(call, now)
        if self.baseline is not None:
            self.baseline.observe_end(call)
        return self._dispatch(self._end_rules, _END, call, now, changes)

    def _dispatch(
        self, targets: list[_Targets], hook: int, call: Call, now: datetime,
        changes: list[IncidentChange],
    ) -> list[IncidentChange]:
        route = call.route
        if route < 0:  # a call whose start this engine did not see (restored)
            route = call.route = _route(call)
        handlers, stale, asked = targets[route]
        if asked is not None:  # some rule of this list has its own `wants`
            return self._dispatch_asking(asked, hook, call, now, changes)
        if stale:  # the timed rules it goes to (none reads `_stale` meanwhile)
            self._stale.update(stale)
        add = self.tracker.add
        for handler in handlers[hook]:
            findings = handler(call, now)
            if findings:
                for finding in findings:
                    change = add(finding)
                    if change is not None:
                        changes.append(change)
        return changes

    def _dispatch_asking(
        self, asked: list[_Target], hook: int, call: Call, now: datetime,
        changes: list[IncidentChange],
    ) -> list[IncidentChange]:
        for timed, wants, handlers in asked:
            if wants is not None and not wants(call):
                continue
            if timed >= 0:
                self._stale.add(timed)
            findings = handlers[hook](call, now)
            if findings:
                changes.extend(self._apply(findings))
        return changes

    def handle_auth(self, event: AuthEvent) -> list[IncidentChange]:
        changes = self.advance(event.at)
        for rule in self._auth_rules:
            changes.extend(self._apply(rule.on_auth(event)))
        self._stale.update(range(len(self._timed)))
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
_STARTED, _ANSWERED = Kind.STARTED, Kind.ANSWERED
_ENDED, _ENDED_SAME_INSTANT = Kind.ENDED, Kind.ENDED_SAME_INSTANT
Handler = Callable[[Call, datetime], list[Finding]]


# (its index among the timed rules, -1 if it has no timers; its own `wants`, asked per call,
# or None; its on_start, on_answer, on_end)
_Target = tuple[int, Callable[[Call], bool] | None, tuple[Handler, Handler, Handler]]
# One kind of call's targets for one hook: (each hook's handlers, by hook (only the one the list
# is for is filled), in rule order; the timed rules among them; None, or when a rule asks
# `wants` per call, every target to ask)
_Targets = tuple[tuple[tuple[Handler, ...], ...], tuple[int, ...], list[_Target] | None]


def _route(call: Call) -> int:
    """Which list of targets a call's events go to (`_targets`): what the engine knows of the
    call once it started (repeat leg, started while closed, risky, rated), and the sparse
    rules a batch replay leaves it out of (`Call.sparse`, above those four bits)."""
    return (call.sparse << 4) | (call.repeat << 3) | ((call.closed is not None) << 2) | (
        call.risky << 1) | bool(call.dest.rate)


def _targets(
    rules: list[Rule[Any]], hook: str, sparse: list[Rule[Any]],
    left_out: frozenset[int] | None = None,
) -> list[_Targets]:
    """The rules that override `hook`, for each kind of call (`_route`); what Rule.wants
    looks at, and what a rule says it ignores (`Rule.only_risky`...), is decided here once.
    `left_out`: ids of rules to leave out."""
    during_ok = {"any": (True, True), "business_hours": (True, False),
                 "off_hours": (False, True)}
    timed = [r for r in rules if _overrides(r, "next_wakeup")]
    lists: list[_Targets] = []
    for index in range(16 << len(sparse)):
        repeat, closed = bool(index & 8), bool(index & 4)
        risky, rated = bool(index & 2), bool(index & 1)
        spared = {id(r) for i, r in enumerate(sparse)
                  if (index >> 4) & (1 << i) and _sparse_hook(r) == hook}
        found: list[_Target] = []
        for r in rules:
            if not _overrides(r, hook) or id(r) in spared:
                continue
            if left_out is not None and id(r) in left_out:
                continue
            which = next((i for i, t in enumerate(timed) if t is r), -1)
            if hook == "on_end" and r.end_defers_wakeup:
                which = -1  # its cached wakeup stays (too early at worst: `advance` asks)
            handlers = (r.on_start, r.on_answer, r.on_end)
            if _overrides(r, "wants"):
                found.append((which, r.wants, handlers))
                continue
            if (repeat and not r.counts_repeats) or not during_ok[r.options.during][closed]:
                continue
            if ((r.only_risky and not risky) or (r.only_closed and not closed)
                    or (r.only_rated and not rated)):
                continue
            found.append((which, None, handlers))
        position = _HOOKS.index(hook)
        plain = tuple(t[2][position] for t in found)
        by_hook = tuple(plain if i == position else () for i in range(len(_HOOKS)))
        stale = tuple(t[0] for t in found if t[0] >= 0)
        asked = found if any(t[1] is not None for t in found) else None
        lists.append((by_hook, stale, asked))
    return lists


_HOOKS = ("on_start", "on_answer", "on_end")


def _sparse_hook(rule: Rule[Any]) -> str:
    """The hook a batch may leave a sparse call out of (rules.sparse)."""
    group = rule.sparse_group()
    return "on_end" if group is not None and group.at_end else "on_start"


def events_for(call: Call) -> list[CallEvent]:
    """The events a finished call produces, as the live daemon would have seen them."""
    start = call.start
    events = [CallEvent(start, _STARTED, call)]
    last = start
    answer = call.answer
    if answer is not None:
        if answer < start:
            answer = start
        events.append(CallEvent(answer, _ANSWERED, call))
        last = answer
    end = call.end
    if end is None:
        end = last
    if end > last:
        events.append(CallEvent(end, _ENDED, call))
    else:  # the one of the two max() would give
        events.append(CallEvent(last if last > end else end, _ENDED_SAME_INSTANT, call))
    return events

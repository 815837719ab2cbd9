"""The rule seam: a rule is a small class with typed options, registered under its type name.

Every rule is incremental: it is fed call events in event-time order (started, answered,
ended) and clock ticks, and returns findings. The batch scan and the live daemon drive the same
rule objects the same way, so a replayed file scores exactly as live traffic would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tollwatch.config.load import format_validation_error
from tollwatch.rules.calendar import BusinessCalendar
from tollwatch.rules.model import AuthEvent, Call, Finding, SparseGroup

if TYPE_CHECKING:
    from tollwatch.rules.baseline import Baseline
    from tollwatch.rules.builtin._window import Window


class RuleOptions(BaseModel):
    """Options every rule has; each rule type extends this with its own."""

    model_config = ConfigDict(extra="forbid")
    type: str
    enabled: bool = True
    score: int = Field(default=50, ge=0, le=1000)
    # Only look at calls started outside business hours, or only within them.
    during: Literal["any", "off_hours", "business_hours"] = "any"


@dataclass(frozen=True)
class RuleContext:
    site: str
    calendar: BusinessCalendar
    currency: str = "USD"
    # What the site normally does (rules.baseline), learned by the engine as calls go by.
    baseline: Baseline | None = field(default=None, compare=False)


OptionsT = TypeVar("OptionsT", bound=RuleOptions)


class PlainOptions:
    """Validated rule options as plain attributes (`plain_options`)."""

    def __repr__(self) -> str:
        return f"PlainOptions({vars(self)!r})"


def plain_options(options: OptionsT) -> OptionsT:
    """The same option values as plain instance attributes. Rules read their options on every
    call, and a pydantic model's class defines `__getattr__`, which sends every attribute read
    down CPython's slower lookup path (~2.5x a plain read); rules only read them."""
    plain = PlainOptions()
    vars(plain).update(vars(options))
    return cast(OptionsT, plain)


class Rule(Generic[OptionsT]):
    """Base class. Override the hooks you need; each returns the findings it makes."""

    rule_type: ClassVar[str]
    options_model: ClassVar[type[RuleOptions]]
    # Whether the rule sees failover legs and forks of an attempt it saw already (rules.attempts):
    # volume rules count an attempt once; rules about talk time and cost see every leg.
    counts_repeats: ClassVar[bool] = False
    # The engine does not call the hooks of a rule that provably ignores a call: `only_risky`,
    # calls that are not risky (high-risk, not allowlisted); `only_closed`, calls that started
    # during business hours. A rule sets them (class or instance, in setup) when it returns []
    # for such calls without changing its state.
    only_risky: bool = False
    only_closed: bool = False
    only_rated: bool = False  # calls to destinations without a rate ([rates])
    # on_end never brings next_wakeup forward (it may only drop timers): the engine keeps the
    # wakeup it has, which is then at worst too early, and `advance` asks the rule again
    end_defers_wakeup: ClassVar[bool] = False

    def __init__(self, name: str, options: OptionsT, context: RuleContext) -> None:
        self.name = name
        self.options = plain_options(options)
        self.context = context
        self.setup()

    def setup(self) -> None:
        """Create the rule's state (windows, timers) from its options."""

    def wants(self, call: Call) -> bool:
        """Whether this rule looks at the call at all (its `during` option, repeat legs)."""
        if call.repeat and not self.counts_repeats:
            return False
        during = self.options.during
        if during == "any":
            return True
        return (call.closed is not None) == (during == "off_hours")

    def sparse_group(self) -> SparseGroup | None:
        """What lets a batch replay leave calls out of on_start (rules.sparse): given only when
        on_start does nothing but add the call to a window of its group within the span, and
        finds nothing while that window holds fewer than the count (its other hooks ignore
        the calls; the live daemon still hands every call)."""
        return None

    def start_idle(self) -> bool:
        """Whether on_start finds nothing and changes no state until on_auth is called again:
        a batch replay (CDRs have no security events) then leaves the rule out of on_start."""
        return False

    def on_start(self, call: Call, now: datetime) -> list[Finding]:
        return []

    def on_answer(self, call: Call, now: datetime) -> list[Finding]:
        return []

    def on_end(self, call: Call, now: datetime) -> list[Finding]:
        return []

    def next_wakeup(self) -> datetime | None:
        """When this rule next needs on_tick (timers such as long_call); None for never.

        The engine asks again only after it handed the rule an event, a tick or a security
        event: the answer may change only then (a rule that keeps calls sees their ends)."""
        return None

    def on_tick(self, now: datetime) -> list[Finding]:
        return []

    def on_auth(self, event: AuthEvent) -> list[Finding]:
        """A security event (live only: CDRs have none)."""
        return []

    def snapshot(self) -> dict[str, Any]:
        """The rule's state, to survive a daemon restart (pickled together with incidents)."""
        return {k: v for k, v in vars(self).items() if k not in _NOT_STATE}

    def restore(self, state: dict[str, Any]) -> None:
        vars(self).update(state)

    def finding(
        self,
        now: datetime,
        trigger: Call | None,
        calls: tuple[Call, ...] | list[Call],
        reason: str,
        score: int | None = None,
        pbx_wide: bool = False,
        group: str | None = None,
        source: str | None = None,
    ) -> Finding:
        """`source`: the one source of all the calls, when the rule knows it."""
        return Finding(
            self.name, self.rule_type, now, trigger, tuple(calls),
            self.options.score if score is None else score, reason, pbx_wide, group, source,
        )

    def window_finding(
        self,
        now: datetime,
        trigger: Call,
        window: Window,
        reason: str,
        score: int | None = None,
        pbx_wide: bool = False,
        group: str | None = None,
        source: str | None = None,
    ) -> Finding:
        """A finding whose calls are a window's (not copied: the tracker takes only the calls
        it has not seen from that window, `Finding.calls_new_to`)."""
        sources = window.sources
        if source is None and sources is not None and len(sources) == 1:
            source = next(iter(sources))
        return Finding(
            self.name, self.rule_type, now, trigger, window.calls,
            self.options.score if score is None else score, reason, pbx_wide, group, source,
            window,
        )


_NOT_STATE = frozenset(("name", "options", "context", "only_risky", "only_closed", "only_rated"))

REGISTRY: dict[str, type[Rule[Any]]] = {}

R = TypeVar("R", bound=type[Rule[Any]])


def register(cls: R) -> R:
    REGISTRY[cls.rule_type] = cls
    return cls


def check_rules(specs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Validate every rule's options by its type; list every problem."""
    _load_builtin()
    errors: list[str] = []
    for name, body in specs.items():
        rtype = body.get("type")
        if rtype not in REGISTRY:
            known = ", ".join(sorted(REGISTRY))
            errors.append(f"rules.{name}.type: {rtype!r} is not a rule type (known: {known})")
            continue
        try:
            REGISTRY[rtype].options_model.model_validate(dict(body))
        except ValidationError as exc:
            errors.extend(format_validation_error(exc, f"rules.{name}.", "unknown option"))
    return errors


def build_rules(
    specs: Mapping[str, Mapping[str, Any]], context: RuleContext
) -> list[Rule[Any]]:
    """Instantiate the enabled rules (specs already checked)."""
    _load_builtin()
    rules: list[Rule[Any]] = []
    for name, body in specs.items():
        cls = REGISTRY[str(body["type"])]
        options = cls.options_model.model_validate(dict(body))
        if options.enabled:
            rules.append(cls(name, options, context))
    return rules


def _load_builtin() -> None:
    from tollwatch.rules import builtin  # noqa: F401  (registers the shipped rule types)


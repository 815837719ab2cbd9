"""Build settings, calls and engines for rule tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tollwatch.config import Settings, load_settings
from tollwatch.rules.base import check_rules
from tollwatch.rules.batch import replay
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.engine import Engine, relevant
from tollwatch.rules.incidents import Incident
from tollwatch.rules.model import Call

UTC = ZoneInfo("UTC")


def settings(country: str = "JP", tz: str = "UTC", **extra: Any) -> Settings:
    over: dict[str, Any] = {"site": {"country": country, "timezone": tz}}
    for key, value in extra.items():
        over[key] = value
    return load_settings(None, over, rule_checks=check_rules)


class Traffic:
    """Make calls the way a CDR would describe them, then replay them through an engine."""

    def __init__(self, s: Settings) -> None:
        self.settings = s
        self.classifier = Classifier(s)
        self.calls: list[Call] = []
        self._n = 0

    def call(
        self,
        source: str,
        dialed: str,
        start: datetime,
        talk: float = 60.0,
        ring: float = 0.0,
        answered: bool = True,
        account: str = "acme",
    ) -> Call:
        self._n += 1
        answer = start + timedelta(seconds=ring) if answered else None
        end = (answer or start) + timedelta(seconds=talk if answered else ring)
        c = Call(
            call_id=f"c{self._n}",
            source=source,
            account=account,
            dest=self.classifier.classify(dialed),
            start=start,
            answer=answer,
            end=end,
            origin=f"test:{self._n}",
        )
        allow = self.settings.allowlist.sources.get(source, [])
        c.allowlisted = c.dest.allowlisted or self.classifier.source_allowlisted(allow, c.dest.e164)
        self.calls.append(c)
        return c

    def run(self, only: list[str] | None = None) -> list[Incident]:
        specs = {k: v.model_dump() for k, v in self.settings.rules.items()}
        if only is not None:
            specs = {k: v for k, v in specs.items() if k in only}
        engine = Engine.from_settings(self.settings, specs)
        ordered = sorted(filter(relevant, self.calls), key=lambda c: c.start)
        return replay(engine, ordered)


def at(text: str, tz: str = "UTC") -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz))

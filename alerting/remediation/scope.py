"""What an incident asks to block: only its fraudulent destinations, as narrowly as the calls allow.

A call's destination is *fraudulent* when it is international, not allowlisted (site-wide or
for the calling source), not a destination the site calls routinely, and either on the
high-risk list or new for the site. "Routinely" and "new" come from the site's baseline, a
`SiteProfile` injected by the daemon; without one nothing is routine and nothing is known to
be new, so only high-risk destinations are blocked.

Prefix per calling code (NANP: 1 + area code) among the fraudulent numbers, by
`remediation.prefix`:
  * "range" (default): the longest prefix all of them share (a number range: +232 7654 3...),
    capped at 8 digits and never shorter than the calling code; one number alone gives its
    range of 100 (the number without its last two digits);
  * "calling_code": the calling code;
  * "risk_prefix": the high-risk list entry that matched, else the calling code.
A source block (`remediation.block = "source"` or "both") is asked only when the incident has
fraudulent calls; the dialplan then refuses that source's international calls only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from tollwatch.alerting.remediation.policy import Target
from tollwatch.alerting.remediation.prefixes import MAX_PREFIX
from tollwatch.config.schema import Settings
from tollwatch.config.types import parse_prefix
from tollwatch.rules.destinations import Classifier, Destination

_RANGE_DROP = 2  # one number alone: its block of 100


class SiteProfile(Protocol):
    """The site's baseline as the policy sees it (the detection baselines provide it)."""

    def is_routine(self, dest: Destination) -> bool: ...

    def is_new(self, dest: Destination) -> bool: ...


class NoBaseline:
    """No baseline known: nothing is routine, nothing is known to be new."""

    def is_routine(self, dest: Destination) -> bool:
        return False

    def is_new(self, dest: Destination) -> bool:
        return False


class Profile:
    """A SiteProfile from two plain functions (either may be left out)."""

    def __init__(
        self,
        routine: Callable[[Destination], bool] | None = None,
        new: Callable[[Destination], bool] | None = None,
    ) -> None:
        self._routine = routine
        self._new = new

    def is_routine(self, dest: Destination) -> bool:
        return bool(self._routine(dest)) if self._routine is not None else False

    def is_new(self, dest: Destination) -> bool:
        return bool(self._new(dest)) if self._new is not None else False


class Scope:
    """The block policy's choice of targets for one site."""

    def __init__(
        self,
        settings: Settings,
        classifier: Classifier,
        profile: SiteProfile | Mapping[str, SiteProfile] | None = None,
    ) -> None:
        """`profile`: the site's baseline, or one per PBX name (a view's "pbx")."""
        self.settings = settings
        self.classifier = classifier
        self.profiles: Mapping[str, SiteProfile] = {}
        self.profile: SiteProfile = NoBaseline()
        if isinstance(profile, Mapping):
            self.profiles = profile
        elif profile is not None:
            self.profile = profile

    def destination(self, number: str) -> Destination:
        return self.classifier.classify(number if number.startswith("+") else "+" + number)

    def fraudulent(self, dest: Destination, source: str, pbx: str = "") -> bool:
        if dest.dest_class != "international" or not dest.e164:
            return False
        allow = self.settings.allowlist.sources.get(source, [])
        if dest.allowlisted or self.classifier.source_allowlisted(allow, dest.e164):
            return False
        profile = self.profiles.get(pbx, self.profile)
        if profile.is_routine(dest):
            return False
        return dest.high_risk or profile.is_new(dest)

    def fraudulent_numbers(self, view: Mapping[str, Any]) -> list[str]:
        """The E.164 digits (no "+") of the incident's fraudulent destinations."""
        source = str(view.get("source", ""))
        pbx = str(view.get("pbx", ""))
        out = []
        for number in view.get("numbers") or []:
            dest = self.destination(str(number))
            if self.fraudulent(dest, source, pbx) and dest.e164:
                out.append(dest.e164.lstrip("+"))
        return sorted(set(out))

    def targets(self, view: Mapping[str, Any]) -> list[Target]:
        rem = self.settings.remediation
        numbers = self.fraudulent_numbers(view)
        if not numbers:
            return []
        out: list[Target] = []
        if rem.block in ("prefix", "both"):
            groups: dict[str, list[str]] = {}
            for digits in numbers:
                groups.setdefault(self._group(digits), []).append(digits)
            prefixes = {self._prefix(key, group, rem.prefix) for key, group in groups.items()}
            out.extend(Target("prefix", p) for p in sorted(prefixes))
        if rem.block in ("source", "both"):
            out.append(Target("source", str(view.get("source", ""))))
        return out

    def covers(self, target: Target, number: str, source: str) -> bool:
        """Whether a block applies to a call from `source` to this E.164 number."""
        dest = self.destination(number)
        if target.kind == "source":
            return target.value == source and dest.dest_class == "international"
        return bool(dest.e164) and str(dest.e164).lstrip("+").startswith(target.value)

    # ---- helpers ----------------------------------------------------------------------
    def _group(self, digits: str) -> str:
        dest = self.destination(digits)
        code = dest.calling_code or digits[:1]
        return digits[:4] if code == "1" else code

    def _prefix(self, key: str, numbers: list[str], mode: str) -> str:
        if mode == "calling_code":
            return key
        if mode == "risk_prefix":
            risks = {self.destination(n).risk_prefix for n in numbers}
            risk = risks.pop() if len(risks) == 1 else None
            return parse_prefix(risk) if risk else key
        if len(numbers) == 1:
            common = numbers[0][: len(numbers[0]) - _RANGE_DROP]
        else:
            common = _common_prefix(numbers)
        return common[:MAX_PREFIX] if len(common) > len(key) else key


def _common_prefix(items: Iterable[str]) -> str:
    values = list(items)
    first, last = min(values), max(values)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]

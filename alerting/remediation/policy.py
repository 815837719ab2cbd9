"""What may be blocked, and what an incident asks to block.

Safety first: `Guard.check_prefix` / `Guard.check_source` return a refusal reason (a sentence
for people) or None. Never blocked: emergency and service numbers, allowlisted prefixes (or a
prefix that would cover one), the home country as a whole, the PBX-wide incident key "*".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config.schema import Settings
from config.types import parse_prefix
from rules.destinations import Classifier

MAX_PREFIX = 8  # the dialplan looks up prefixes of 1..8 digits
_SOURCE = re.compile(r"^[A-Za-z0-9_.+@-]{1,40}$")
_CODE_IN_LABEL = re.compile(r"\(\+(\d{1,4})\)$")  # "Sierra Leone (+232)"
_SEVERITY = {"none": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class Target:
    kind: str  # "prefix" | "source"
    value: str

    @property
    def lift(self) -> str:
        """The command that lifts it."""
        if self.kind == "source":
            return f"tollwatch unblock --source {self.value}"
        return f"tollwatch unblock {self.value}"

    def __str__(self) -> str:
        return f"+{self.value}" if self.kind == "prefix" else f"source {self.value}"


class Guard:
    """Refusals, with the site's classifier (the same one the rules use)."""

    def __init__(self, settings: Settings, classifier: Classifier | None = None) -> None:
        self.settings = settings
        self.classifier = classifier or Classifier(settings)
        self.emergency = set(self.classifier.emergency)
        self.allow = sorted(set(settings.allowlist.prefixes))
        self.home = self.classifier.cc

    def check_prefix(self, prefix: str) -> str | None:
        if not prefix.isdigit():
            return f"{prefix!r} is not an E.164 prefix (digits only, like 232 or 1876)"
        if len(prefix) > MAX_PREFIX:
            return f"{prefix} is longer than {MAX_PREFIX} digits (the dialplan checks 1..8)"
        if prefix in self.emergency:
            return f"{prefix} is an emergency number here; emergency numbers are never blocked"
        kind = self.classifier.classify(prefix).dest_class
        if kind in ("emergency", "service"):
            return f"{prefix} is a {kind} number here; {kind} numbers are never blocked"
        if self.home.startswith(prefix):
            return (f"+{prefix} would block every call to the home country (+{self.home}); "
                    "block a longer prefix")  # fmt: skip
        for allowed in self.allow:
            if prefix.startswith(allowed):
                return f"+{prefix} is allowlisted (allowlist prefix +{allowed})"
            if allowed.startswith(prefix):
                return f"+{prefix} would also block the allowlisted prefix +{allowed}"
        return None

    def check_source(self, source: str) -> str | None:
        if source in ("", "*"):
            return "a PBX-wide incident has no single source to block"
        if not _SOURCE.match(source):
            return f"{source!r} is not an extension (letters, digits, _.+@- only)"
        if source in self.emergency:
            return f"{source} is an emergency number, not an extension"
        return None

    def check(self, target: Target) -> str | None:
        if target.kind == "source":
            return self.check_source(target.value)
        return self.check_prefix(target.value)


def qualifies(settings: Settings, view: Mapping[str, Any]) -> bool:
    """Whether an incident is severe enough (and, if `rules` is set, one of them fired)."""
    rem = settings.remediation
    if _SEVERITY.get(str(view.get("severity", "")), 0) < _SEVERITY[rem.severity]:
        return False
    return not rem.rules or bool(set(rem.rules) & set(view.get("rules") or []))


def prefix_of(classifier: Classifier, number: str, mode: str) -> str | None:
    """The prefix to block for one E.164 number: the high-risk entry's prefix (mode
    "risk_prefix", when the number is on the list), else its calling code; NANP (+1) numbers
    use 1 + area code, since +1 alone is the whole of North America."""
    dest = classifier.classify(number if number.startswith("+") else "+" + number)
    if dest.dest_class != "international" or not dest.e164:
        return None
    if mode == "risk_prefix" and dest.risk_prefix:
        return parse_prefix(dest.risk_prefix)
    code = dest.calling_code
    if not code:
        return None
    if code == "1":
        return dest.e164.lstrip("+")[:4]
    return code


def targets(settings: Settings, classifier: Classifier, view: Mapping[str, Any]) -> list[Target]:
    """What the policy says to block for an incident view.

    Numbers come from `view["numbers"]` (the E.164 numbers its calls dialed); without it, the
    calling codes shown in `view["destinations"]` ("Sierra Leone (+232)") are used.
    """
    rem = settings.remediation
    out: list[Target] = []
    if rem.block in ("prefix", "both"):
        prefixes: list[str] = []
        numbers = view.get("numbers")
        if numbers:
            for number in numbers:
                p = prefix_of(classifier, str(number), rem.prefix)
                if p:
                    prefixes.append(p)
        else:
            for label in view.get("destinations") or []:
                label = str(label)
                m = _CODE_IN_LABEL.search(label)
                if m and m.group(1) != "1":
                    prefixes.append(m.group(1))
                elif label.startswith("+"):
                    p = prefix_of(classifier, label, rem.prefix)
                    if p:
                        prefixes.append(p)
        for p in sorted(set(prefixes)):
            out.append(Target("prefix", p))
    if rem.block in ("source", "both"):
        out.append(Target("source", str(view.get("source", ""))))
    return out

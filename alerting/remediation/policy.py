"""What may be blocked (`Guard`), and when an incident is severe enough (`qualifies`).

Safety first: `Guard.check_prefix` / `Guard.check_source` return a refusal reason (a sentence
for people) or None. Never blocked: anything but an E.164 prefix at least a calling code long
(`prefixes.read_prefix`), emergency and service numbers, allowlisted prefixes (or a prefix that
would cover one), the home country as a whole, the PBX-wide incident key "*". What an incident
asks to block is `scope.targets`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tollwatch.alerting.remediation.prefixes import PrefixError, describe, read_prefix
from tollwatch.config.schema import Settings
from tollwatch.rules.destinations import Classifier

_SOURCE = re.compile(r"^[A-Za-z0-9_.+@-]{1,40}\Z")  # \Z: "209\n" is not an extension
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

    @property
    def what(self) -> str:
        """In words: "the whole of Sierra Leone (+232)", "international calls from 209"."""
        if self.kind == "source":
            return f"international calls from {self.value}"
        return describe(self.value)


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
        try:
            read_prefix(prefix, self.classifier)
        except PrefixError as exc:
            return str(exc)
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

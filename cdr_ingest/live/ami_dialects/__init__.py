"""AMI dialects: how each Asterisk generation reports calls, turned into one vocabulary.

The call tracker (``cdr_ingest.live.ami_calls``) understands the events of Asterisk 12 and
later: ``DialBegin``, ``DialEnd``, ``Hangup``, ``Rename``. A dialect is a small class that
says which AMI protocol versions it covers (the login banner ``Asterisk Call Manager/X.Y.Z``
tells them apart), which events carry calls in it, and how to translate one of them into
zero or more events of that vocabulary (keeping what state it needs, per connection).
Dialects register themselves like rule types (``@register``); Issabel, Elastix and old
FreePBX (Asterisk 11 and older) need ``asterisk11``, everything newer ``asterisk12``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar, TypeVar

Msg = Mapping[str, str]

# The vocabulary the tracker understands (Asterisk 12+ event names).
CALL_VOCABULARY = frozenset({"DialBegin", "DialEnd", "Hangup", "Rename"})


class AmiDialect:
    """One generation of AMI. Subclass, fill in the class attributes, ``@register`` it."""

    name: ClassVar[str]
    description: ClassVar[str]
    # AMI protocol major versions (the banner's X) this dialect covers, inclusive.
    protocol: ClassVar[tuple[int, int]]
    # The events that carry calls in this dialect (what a client must subscribe to).
    events: ClassVar[frozenset[str]]

    def translate(self, msg: Msg) -> list[Msg]:
        """A call event of this dialect -> events of CALL_VOCABULARY (maybe none)."""
        raise NotImplementedError

    def release(self, version: str) -> str:
        """The Asterisk release a banner version means, in words."""
        return self.description


REGISTRY: dict[str, type[AmiDialect]] = {}

D = TypeVar("D", bound=type[AmiDialect])
_VERSION = re.compile(r"(\d+)\.(\d+)")


def register(cls: D) -> D:
    REGISTRY[cls.name] = cls
    return cls


def protocol_major(version: str) -> int | None:
    m = _VERSION.match(version.strip())
    return int(m.group(1)) if m else None


def for_version(version: str) -> AmiDialect | None:
    """A new dialect instance for a banner version ("11.0.0", "1.3"); None if none covers it."""
    _load_builtin()
    major = protocol_major(version)
    if major is None:
        return None
    for cls in REGISTRY.values():
        low, high = cls.protocol
        if low <= major <= high:
            return cls()
    return None


def by_name(name: str) -> AmiDialect:
    _load_builtin()
    return REGISTRY[name]()


def all_events() -> frozenset[str]:
    """Every event some dialect turns into calls."""
    _load_builtin()
    out: frozenset[str] = frozenset()
    for cls in REGISTRY.values():
        out |= cls.events
    return out


def _load_builtin() -> None:
    from tollwatch.cdr_ingest.live.ami_dialects import (  # noqa: F401  (registers the shipped dialects)
        asterisk11,
        asterisk12,
    )


__all__ = [
    "CALL_VOCABULARY",
    "AmiDialect",
    "Msg",
    "all_events",
    "by_name",
    "for_version",
    "protocol_major",
    "register",
]

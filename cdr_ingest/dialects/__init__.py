"""CDR dialects: one small declarative class per way a PBX writes its call records.

A dialect says which columns a file has (in order, for headerless files) or which header it
writes, how to recognize it, and its quirks (strings meaning "no value", such as ``NULL``).
Dialects register themselves like rule types do (``@register``); the reader
(``cdr_ingest._scan``) only asks this registry which dialect a file is, so supporting the next
system (Issabel, 3CX, a custom template) means adding a module here and importing it in
``_load_builtin``, and nothing else.

Public helpers also used by other CDR sources (a database table, for instance):

* ``canonical_columns(names)``: each column name of a header or table mapped to the canonical
  CDR column it holds (``calldate`` -> ``start``), or None for a column tollwatch does not use;
* ``header_dialect(names)`` / ``headerless_dialect(rows)``: which registered dialect a file is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import ClassVar, TypeVar

# Every column tollwatch knows, by its canonical name (Asterisk's CDR variable names, with the
# cdr_csv names start/answer/end for the three times).
CANONICAL: tuple[str, ...] = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
    "uniqueid", "userfield", "peeraccount", "linkedid", "sequence", "did", "recordingfile",
    "cnum", "cnam", "outbound_cnum", "outbound_cnam", "dst_cnam",
)  # fmt: skip

# Header / table column names (lower case) other than the canonical ones.
ALIASES: dict[str, str] = {
    "calldate": "start", "call_date": "start", "starttime": "start", "start_time": "start",
    "answertime": "answer", "answer_time": "answer", "endtime": "end", "end_time": "end",
    "account": "accountcode", "account_code": "accountcode", "source": "src",
    "destination": "dst", "context": "dcontext", "destination_context": "dcontext",
    "callerid": "clid", "caller_id": "clid", "dst_channel": "dstchannel",
    "destination_channel": "dstchannel", "last_app": "lastapp", "lastapplication": "lastapp",
    "last_data": "lastdata", "billable_seconds": "billsec", "unique_id": "uniqueid",
    "user_field": "userfield", "linked_id": "linkedid",
}  # fmt: skip


def canonical_column(name: str) -> str | None:
    """The canonical column a header/table column name holds, None if tollwatch has no use."""
    key = name.strip().strip('"').strip().lower()
    if key in CANONICAL:
        return key
    return ALIASES.get(key)


def canonical_columns(names: Sequence[str]) -> list[str | None]:
    """Map each column name to its canonical column; a repeated one counts only the first time.

    >>> canonical_columns(["calldate", "clid", "src", "dst", "recordingfile", "foo"])
    ['start', 'clid', 'src', 'dst', 'recordingfile', None]
    """
    seen: set[str] = set()
    out: list[str | None] = []
    for name in names:
        col = canonical_column(name)
        out.append(col if col is not None and col not in seen else None)
        if col is not None:
            seen.add(col)
    return out


# -- content checks used to recognize headerless files ------------------------------------

_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")
_UNIQUEID = re.compile(r"[0-9A-Za-z_-]*\d{6,}\.\d+")
DISPOSITIONS = frozenset({"ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"})
AMAFLAGS = frozenset({"DOCUMENTATION", "BILLING", "OMIT", "DEFAULT"})

# column -> check of one value: True fits, False does not, None says nothing (e.g. empty).
Check = Callable[[str], bool | None]
CHECKS: dict[str, Check] = {
    "start": lambda v: bool(_TIME.match(v)),
    "end": lambda v: bool(_TIME.match(v)),
    "answer": lambda v: None if v == "" else bool(_TIME.match(v)),
    "duration": lambda v: v.strip().isdigit(),
    "billsec": lambda v: v.strip().isdigit(),
    "disposition": lambda v: v.strip().upper() in DISPOSITIONS,
    "amaflags": lambda v: v.strip().upper() in AMAFLAGS or v.strip().isdigit(),
    "uniqueid": lambda v: None if v == "" else bool(_UNIQUEID.fullmatch(v)),
    "sequence": lambda v: None if v == "" else v.strip().isdigit(),
}


class CdrDialect:
    """One way of writing CDRs. Subclass, fill in the class attributes, ``@register`` it.

    Headerless dialects set ``columns``; header dialects set ``header`` (the header as that
    system writes it; ``exact_header`` True when only that exact header is this dialect,
    False when any header holding those columns is).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    columns: ClassVar[tuple[str, ...]] = ()
    header: ClassVar[tuple[str, ...]] = ()
    exact_header: ClassVar[bool] = True
    # Field values that mean "no value" (a database's NULL), read as "".
    null_values: ClassVar[tuple[str, ...]] = ()
    # Tried first at equal fit (lower first).
    order: ClassVar[int] = 100

    @classmethod
    def header_fit(cls, names: Sequence[str]) -> int:
        """2: this dialect's exact header, 1: a header it accepts, 0: not this dialect."""
        if not cls.header:
            return 0
        lowered = tuple(n.strip().strip('"').strip().lower() for n in names)
        if lowered == cls.header:
            return 2
        if not cls.exact_header and set(cls.header) <= set(canonical_columns(lowered)):
            return 1
        return 0

    @classmethod
    def content_fit(cls, rows: Sequence[Sequence[str]]) -> tuple[int, int, int]:
        """(rows with this column count, checks passed, checks made) over the sample rows."""
        n = len(cls.columns)
        fitting = [r for r in rows if len(r) == n]
        passed = made = 0
        for row in fitting:
            for value, col in zip(row, cls.columns, strict=True):
                check = CHECKS.get(col)
                ok = check(value) if check is not None else None
                if ok is not None:
                    made += 1
                    passed += ok
        return len(fitting), passed, made


REGISTRY: dict[str, type[CdrDialect]] = {}

D = TypeVar("D", bound=type[CdrDialect])


def register(cls: D) -> D:
    REGISTRY[cls.name] = cls
    return cls


def dialects() -> list[type[CdrDialect]]:
    _load_builtin()
    return sorted(REGISTRY.values(), key=lambda d: d.order)


def get(name: str) -> type[CdrDialect]:
    _load_builtin()
    return REGISTRY[name]


def header_dialect(names: Sequence[str]) -> type[CdrDialect] | None:
    """The dialect of a header row, None if it is not a CDR header (needs src and dst)."""
    cols = set(canonical_columns(names))
    if not {"src", "dst"} <= cols:
        return None
    best = max(dialects(), key=lambda d: d.header_fit(names))
    return best if best.header_fit(names) else None


def headerless_dialect(
    rows: Sequence[Sequence[str]], prefer: str = "auto", minimum: float = 0.8
) -> type[CdrDialect] | None:
    """The headerless dialect the sample rows fit best, None if none fits.

    Best = most rows with its column count, then the largest share of content checks passed
    (times where times go, integers, dispositions, uniqueids ...), then the most checks passed
    (a uniqueid column that holds uniqueids beats a free-text userfield there), then `prefer`,
    then registration order. At least `minimum` of the checks must pass.
    """

    def key(d: type[CdrDialect]) -> tuple[int, float, int, bool]:
        fitting, passed, made = d.content_fit(rows)
        return fitting, passed / made if made else 0.0, passed, d.name == prefer

    candidates = [d for d in dialects() if d.columns]
    ranked = sorted(candidates, key=key, reverse=True)  # stable: ties keep registration order
    if not ranked:
        return None
    fitting, share, _, _ = key(ranked[0])
    return ranked[0] if fitting and share >= minimum else None


def custom_dialect(columns: Sequence[str], description: str) -> type[CdrDialect]:
    """A dialect for columns an administrator configured (``[cdr] columns``), not registered."""
    unknown = [c for c in columns if canonical_column(c) is None and c != ""]
    if unknown:
        raise ValueError(f"unknown CDR column(s) {', '.join(map(repr, unknown))}")
    cols = tuple(canonical_column(c) or "" for c in columns)
    return type(
        "ConfiguredDialect",
        (CdrDialect,),
        {"name": "configured", "description": description, "columns": cols},
    )


def _load_builtin() -> None:
    from tollwatch.cdr_ingest.dialects import (  # noqa: F401  (registers the shipped dialects)
        asteriskcdrdb,
        cdr_csv,
        cdr_custom,
        freepbx,
        header_csv,
    )


__all__ = [
    "ALIASES",
    "CANONICAL",
    "CdrDialect",
    "canonical_column",
    "canonical_columns",
    "custom_dialect",
    "dialects",
    "get",
    "header_dialect",
    "headerless_dialect",
    "register",
]

"""Column layouts of Asterisk cdr_csv Master.csv and their detection."""

from __future__ import annotations

import re
from collections import Counter

BASE = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
)
NEW = ("peeraccount", "linkedid", "sequence")

LAYOUTS: dict[str, tuple[str, ...]] = {
    "base": BASE,
    "uniqueid": (*BASE, "uniqueid"),
    "userfield": (*BASE, "userfield"),
    "uniqueid+userfield": (*BASE, "uniqueid", "userfield"),
    "newcdrcolumns": (*BASE, *NEW),
    "uniqueid+newcdrcolumns": (*BASE, "uniqueid", *NEW),
    "userfield+newcdrcolumns": (*BASE, "userfield", *NEW),
    "uniqueid+userfield+newcdrcolumns": (*BASE, "uniqueid", "userfield", *NEW),
}

# The layout chosen for each column count; 17 and 20 are ambiguous (see resolve_layout).
BY_COUNT = {
    16: "base",
    17: "uniqueid",
    18: "uniqueid+userfield",
    19: "newcdrcolumns",
    20: "uniqueid+newcdrcolumns",
    21: "uniqueid+userfield+newcdrcolumns",
}
ALTERNATIVE = {17: "userfield", 20: "userfield+newcdrcolumns"}
MIN_COLUMNS, MAX_COLUMNS = 16, 21

_UNIQUEID = re.compile(r"\d{6,}\.\d+")


def resolve_layout(rows: list[list[str]], fallback: str) -> str | None:
    """Pick the layout of a headerless file from its first parsed rows; None if not CDR."""
    counts = Counter(len(r) for r in rows if MIN_COLUMNS <= len(r) <= MAX_COLUMNS)
    if not counts:
        return None
    count = counts.most_common(1)[0][0]
    if count not in ALTERNATIVE:
        return BY_COUNT[count]
    # Column 17 is uniqueid or userfield: a uniqueid looks like 1795527074.58.
    values = [r[16] for r in rows if len(r) == count and r[16] != ""]
    if values:
        if all(_UNIQUEID.fullmatch(v) for v in values):
            return BY_COUNT[count]
        return ALTERNATIVE[count]
    if fallback in (BY_COUNT[count], ALTERNATIVE[count]):
        return fallback
    return BY_COUNT[count]

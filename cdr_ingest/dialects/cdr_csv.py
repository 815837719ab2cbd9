"""cdr_csv: Asterisk's Master.csv, no header, in each of its column sets.

cdr.conf/cdr_csv.conf options add columns after the 16 base ones: ``loguniqueid`` (uniqueid),
``loguserfield`` (userfield), ``newcdrcolumns`` (peeraccount, linkedid, sequence). Strings are
quoted (``""`` escapes a quote), integers bare, an unanswered call's answer time empty.
17 and 20 columns are ambiguous (uniqueid or userfield): the content decides (a uniqueid looks
like 1795527074.58), else ``[cdr] layout``.
"""

from __future__ import annotations

from tollwatch.cdr_ingest.dialects import CdrDialect, register

BASE = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
    "lastdata", "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
)  # fmt: skip
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


class CdrCsv(CdrDialect):
    """Base of the cdr_csv column sets (not registered itself)."""

    order = 10


def _layout(layout: str, rank: int) -> type[CdrDialect]:
    cls = type(
        f"CdrCsv_{layout.replace('+', '_')}",
        (CdrCsv,),
        {
            "name": layout,
            "description": f"{len(LAYOUTS[layout])} columns ({layout})",
            "columns": LAYOUTS[layout],
            "order": 10 + rank,
        },
    )
    return register(cls)


for _rank, _name in enumerate(LAYOUTS):
    _layout(_name, _rank)

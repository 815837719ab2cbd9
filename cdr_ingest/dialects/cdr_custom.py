"""cdr_custom with the stock mapping of Asterisk's ``cdr_custom.conf.sample``.

    Master.csv => ${CSV_QUOTE(${CDR(clid)})},${CSV_QUOTE(${CDR(src)})},...,${CDR(sequence)}

19 fields, clid first, every value quoted except the sequence. Same count as cdr_csv with
``newcdrcolumns``; told apart by content (the times are in columns 9-11, not 10-12).
Other mappings: set ``[cdr] columns`` (or ``[cdr] custom_conf`` to read the mapping).
"""

from __future__ import annotations

import re
from pathlib import Path

from tollwatch.cdr_ingest.dialects import CdrDialect, canonical_column, register


@register
class CdrCustomStock(CdrDialect):
    name = "cdr_custom"
    description = "19 columns (cdr_custom.conf.sample mapping)"
    columns = (
        "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp", "lastdata",
        "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
        "accountcode", "uniqueid", "userfield", "sequence",
    )  # fmt: skip
    order = 30


_MAPPING = re.compile(r"^\s*[^;\[\s][^=]*=>(.*)$")
_FIELD = re.compile(r"CDR\(([A-Za-z_]+)(?:,[^)]*)?\)")


def columns_from_conf(path: Path) -> list[str]:
    """The columns of the first mapping of a cdr_custom.conf (``file => ${CDR(x)},...``).

    Each comma-separated part names the CDR variable it writes; a part with none (a literal)
    is an ignored column (""). Raises ValueError when the file has no mapping.
    """
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _MAPPING.match(line)
        if m is None:
            continue
        cols: list[str] = []
        depth = 0
        part = ""
        for ch in m.group(1).strip() + ",":
            depth += ch == "{"
            depth -= ch == "}"
            if ch == "," and depth == 0:
                found = _FIELD.search(part)
                name = found.group(1).lower() if found else ""
                cols.append(name if canonical_column(name) else "")
                part = ""
            else:
                part += ch
        return cols
    raise ValueError(f"{path}: no mapping line (file => ${{CDR(...)}},...) found")

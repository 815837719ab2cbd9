"""An export of FreePBX's MySQL/MariaDB ``asteriskcdrdb.cdr`` table (cdr_adaptive_odbc).

Columns in table order: calldate, clid, src, dst, dcontext, channel, dstchannel, lastapp,
lastdata, duration, billsec, disposition, amaflags, accountcode, uniqueid, userfield, did,
recordingfile, cnum, cnam, outbound_cnum, outbound_cnam, dst_cnam, linkedid, peeraccount,
sequence (older installs stop earlier). Exports from the mysql client, phpMyAdmin or
HeidiSQL write a header, ``NULL`` (or ``\\N``) for missing values, and wrap values in quotes
without doubling inner ones: the clid ``"Name" <1115>`` comes out as ``""Name" <1115>"``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tollwatch.cdr_ingest.dialects import CdrDialect, register

TABLE = (
    "calldate", "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp",
    "lastdata", "duration", "billsec", "disposition", "amaflags", "accountcode", "uniqueid",
    "userfield", "did", "recordingfile", "cnum", "cnam", "outbound_cnum", "outbound_cnam",
    "dst_cnam", "linkedid", "peeraccount", "sequence",
)  # fmt: skip


@register
class AsteriskCdrDb(CdrDialect):
    name = "asteriskcdrdb"
    description = "asteriskcdrdb cdr table export"
    header = TABLE
    null_values = ("NULL", "\\N")
    order = 50

    @classmethod
    def header_fit(cls, names: Sequence[str]) -> int:
        """The table's columns in its order, possibly without the later ones (older schema)."""
        lowered = tuple(n.strip().strip('"').strip().lower() for n in names)
        if len(lowered) >= 16 and lowered == TABLE[: len(lowered)]:
            return 2
        return 0

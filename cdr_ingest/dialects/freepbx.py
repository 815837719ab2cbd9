"""FreePBX's CDR report "CSV export" (Reports > CDR Reports, cdr module).

Header ``calldate,clid,src,...,userfield`` (16 columns; newer modules add did, cnum, cnam,
outbound_cnum, outbound_cnam, dst_cnam, recordingfile, linkedid, peeraccount, sequence).
Older modules wrap a value in quotes only when it holds a comma and never double inner quotes,
so a caller id is written bare as ``"User 10" <114>`` and one with a comma as
``""Smith, J" <114>"``; the reader's lenient quoting takes such fields as written.
amaflags are numbers (3 = DOCUMENTATION); there is no end or answer time (from duration).
"""

from __future__ import annotations

from tollwatch.cdr_ingest.dialects import CdrDialect, register

_BASE = (
    "calldate", "clid", "src", "dst", "dcontext", "channel", "dstchannel", "lastapp",
    "lastdata", "duration", "billsec", "disposition", "amaflags", "accountcode", "uniqueid",
    "userfield",
)  # fmt: skip


@register
class FreePbxReport(CdrDialect):
    name = "freepbx_report"
    description = "FreePBX CDR report export"
    header = _BASE
    null_values = ("NULL",)
    order = 40


@register
class FreePbxReportNew(CdrDialect):
    name = "freepbx_report_26"
    description = "FreePBX CDR report export"
    header = (
        *_BASE, "did", "cnum", "cnam", "outbound_cnum", "outbound_cnam", "dst_cnam",
        "recordingfile", "linkedid", "peeraccount", "sequence",
    )  # fmt: skip
    null_values = ("NULL",)
    order = 41

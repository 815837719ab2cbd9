"""Any CSV with a header row naming at least src and dst (cdr_custom with a header line,
a spreadsheet, a database export of another schema). Columns are found by name
(``canonical_columns``: calldate, start, answer, end, ...); others are ignored."""

from __future__ import annotations

from tollwatch.cdr_ingest.dialects import CdrDialect, register


@register
class HeaderCsv(CdrDialect):
    name = "header"
    description = "CSV with header"
    header = ("src", "dst")
    exact_header = False
    null_values = ("NULL",)
    order = 90

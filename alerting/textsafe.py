"""One place that makes attacker-controlled text safe for where it is shown.

Every string from a CDR or AMI (caller names, numbers, channel names, file names) may hold rich
markup (`[/bold]`, `[link=…]`), terminal escape sequences or spreadsheet formulas. Use:

- `plain(s)`    for log lines and any terminal text not parsed as markup: control characters
                (C0 except tab, DEL, C1, ESC) become visible `\\xNN` escapes;
- `markup(s)`   for text inside rich markup (tables, console.print): `plain` + rich's escape;
- `csv_cell(s)` for CSV cells: `plain` + a leading `'` on cells a spreadsheet would run as a
                formula (`=`, `+`, `-`, `@`, tab, CR);
- `clip(s, n)`  for a field quoted inside a one-line message: at most n characters (a CDR or AMI
                field may be thousands long).
Slack (mrkdwn) and HTML keep their own escapers (alerting/blockkit.py, the report's html).
"""

from __future__ import annotations

import re

from rich.markup import escape as _rich_escape

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group(0)):02x}"


def plain(text: object) -> str:
    """`text` as a string with every control character shown as `\\xNN` (tab kept)."""
    s = str(text)
    return _CONTROL.sub(_visible, s) if _CONTROL.search(s) else s


def markup(text: object) -> str:
    """`text` safe to put inside rich markup: no control characters, no live tags."""
    return _rich_escape(plain(text))


def csv_cell(text: object) -> str:
    """`text` safe for a CSV cell opened in a spreadsheet (formula injection escaped)."""
    s = plain(text)
    return "'" + s if s.startswith(_FORMULA_START) else s


def clip(text: str, most: int = 80) -> str:
    """`text`, cut to `most` characters with "..." when longer."""
    return text if len(text) <= most else text[: most - 3] + "..."


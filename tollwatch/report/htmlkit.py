"""The report page's pieces: CSS (phone first), escaped cells, tables that stack on a phone."""

from __future__ import annotations

import base64
import html
from typing import Any

from tollwatch.alerting.textsafe import plain
from tollwatch.report_format import human_minutes

CSS = """
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{font:15px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
 color:#1d1d1f;background:#f5f5f7;overflow-wrap:anywhere;word-break:break-word}
main{max-width:960px;margin:0 auto;padding:12px}
h1{font-size:1.35em;margin:.4em 0}h2{font-size:1.1em;margin:1.2em 0 .4em}
h3{font-size:1em;margin:0 0 .3em}
section{background:#fff;border-radius:10px;padding:10px 14px;margin:10px 0;
 box-shadow:0 1px 2px rgba(0,0,0,.08)}
table{border-collapse:collapse;width:100%;font-size:.92em;table-layout:auto}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e5ea;vertical-align:top}
th{background:#fafafa;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;display:block;margin:6px auto}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:8px}
.card{background:#fafafa;border-radius:8px;padding:8px;min-width:0}
.card b{display:block;font-size:1.35em}
.card small{color:#6e6e73}
.incidents{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:10px}
.incident{border:1px solid #e5e5ea;border-left:5px solid #b25000;border-radius:8px;
 padding:8px 10px;min-width:0}
.incident.critical{border-left-color:#c00}
.incident dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:.3em 0}
.incident dt{color:#6e6e73}.incident dd{margin:0;min-width:0}
.bad{color:#c00;font-weight:600}.ok{color:#1a7f37}.warn{color:#b25000}
.banner{border-left:5px solid #c00;background:#fff0f0}
.banner.note{border-left-color:#b25000;background:#fff8ec}
.banner ul{list-style:none;padding:0}.banner li{margin:.25em 0}
.muted{color:#6e6e73}
.missing{color:#b25000;font-style:italic}
.days{list-style:none;padding:0}.days li{margin:.15em 0}
ul{padding-left:1.2em;margin:.3em 0}
@media (max-width:600px){
 body{font-size:14px}main{padding:6px}section{padding:8px 10px}
 table.stack,table.stack tbody,table.stack tr,table.stack td{display:block;width:100%}
 table.stack thead{display:none}
 table.stack tr{border-bottom:1px solid #e5e5ea;padding:4px 0}
 table.stack td{border:0;padding:1px 0;text-align:left}
 table.stack td::before{content:attr(data-label) ": ";color:#6e6e73}
}
"""

def escape(value: object, quote: bool = True) -> str:
    """Text that may come from a CDR, for HTML: markup escaped, control characters shown as
    \\xNN (textsafe.plain), so nothing in a caller name or file name is run or hidden."""
    return html.escape(plain(value), quote)


TOTAL_LABELS = (
    ("calls", "outbound calls"),
    ("answered", "answered"),
    ("international", "international"),
    ("high_risk", "high-risk"),
    ("off_hours_international", "off-hours international"),
    ("minutes", "talk time"),
    ("spend", "estimated spend"),
)


def talk(minutes: Any) -> str:
    """Talk time for people: m:ss under an hour ("1:12"), whole minutes above ("1,234 min")."""
    if minutes is None:
        return "–"
    if float(minutes) < 60:
        return human_minutes(float(minutes))
    return f"{round(float(minutes)):,} min"


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(head: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    """A table that stacks into one labelled line per cell on a phone (no sideways scroll)."""
    numeric = numeric or set()
    th = "".join(
        f'<th class="n">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>"
        for i, h in enumerate(head)
    )
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            cls = ' class="n"' if i in numeric else ""
            text = v if isinstance(v, Markup) else escape(fmt(v))
            cells.append(f'<td{cls} data-label="{escape(head[i])}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="stack"><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


class Markup(str):
    """Already-escaped HTML."""


def delta(now: Any, avg: Any) -> Markup:
    if now is None or avg is None:
        return Markup("–")
    if avg == 0:
        return Markup('<span class="warn">new</span>' if now else "=")
    pct = (now - avg) / avg * 100.0
    cls = "bad" if pct >= 50 else ("ok" if pct <= 0 else "")
    return Markup(f'<span class="{cls}">{pct:+.0f}%</span>')


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'

"""The report as one self-contained HTML page (inline CSS, charts as data: URIs)."""

from __future__ import annotations

import base64
from html import escape
from typing import Any

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 -apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
 color:#1d1d1f;background:#f5f5f7}
main{max-width:960px;margin:0 auto;padding:12px}
h1{font-size:1.35em;margin:.4em 0}h2{font-size:1.1em;margin:1.2em 0 .4em}
section{background:#fff;border-radius:10px;padding:10px 14px;margin:10px 0;
 box-shadow:0 1px 2px rgba(0,0,0,.08)}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e5ea;vertical-align:top}
th{background:#fafafa;font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
img{max-width:100%;height:auto;display:block;margin:6px auto}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:8px}
.card{background:#fafafa;border-radius:8px;padding:8px}
.card b{display:block;font-size:1.35em}
.card small{color:#6e6e73}
.bad{color:#c00;font-weight:600}.ok{color:#1a7f37}.warn{color:#b25000}
.banner{border-left:5px solid #c00;background:#fff0f0}
.muted{color:#6e6e73}
ul{padding-left:1.2em;margin:.3em 0}
@media (max-width:600px){body{font-size:14px}main{padding:6px}th,td{padding:4px 5px}}
"""

TOTAL_LABELS = (
    ("calls", "outbound calls"),
    ("answered", "answered"),
    ("international", "international"),
    ("high_risk", "high-risk"),
    ("off_hours_international", "off-hours international"),
    ("minutes", "minutes"),
    ("spend", "estimated spend"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
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
            text = v if isinstance(v, Markup) else escape(_fmt(v))
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


class Markup(str):
    """Already-escaped HTML."""


def _delta(now: Any, avg: Any) -> Markup:
    if now is None or avg is None:
        return Markup("–")
    if avg == 0:
        return Markup('<span class="warn">new</span>' if now else "=")
    pct = (now - avg) / avg * 100.0
    cls = "bad" if pct >= 50 else ("ok" if pct <= 0 else "")
    return Markup(f'<span class="{cls}">{pct:+.0f}%</span>')


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def render(doc: dict[str, Any], charts: dict[str, bytes]) -> str:
    """`doc` is the content of figures.json; `charts` maps a title to PNG bytes."""
    p = doc["period"]
    t = doc["totals"]
    cur = doc.get("currency") or ""
    parts: list[str] = []
    title = f"tollwatch report — {doc['site']} — {p['title']}"
    parts.append(f"<h1>{escape(title)}</h1>")
    parts.append(
        f'<p class="muted">{escape(p["start"])} to {escape(p["end"])} ({escape(p["timezone"])}); '
        f"generated {escape(doc['generated_at'])}</p>"
    )
    rec = doc["reconciliation"]
    crit = [i for i in doc["incidents"] if i["severity"] == "critical"]
    alerts: list[str] = []
    if rec["available"] and rec["unseen"]:
        alerts.append(f"{len(rec['unseen'])} flagged call(s) were NOT alerted on live")
    if crit:
        alerts.append(f"{len(crit)} critical incident(s)")
    if alerts:
        parts.append(
            '<section class="banner"><b class="bad">' + escape("; ".join(alerts)) + "</b></section>"
        )
    # Totals.
    base = doc.get("baseline")
    avg = base["average"] if base else None
    cards = []
    for key, label in TOTAL_LABELS:
        value = t.get(key)
        shown = _fmt(value) + (f" {cur}" if key == "spend" and value is not None else "")
        cmp = ""
        if avg is not None:
            mine = (doc.get("per_day") or t).get(key)
            cmp = (
                f"<small>7-day avg {escape(_fmt(avg.get(key)))} "
                f"{_delta(mine, avg.get(key))}</small>"
            )
        cards.append(
            f'<div class="card"><small>{escape(label)}</small><b>{escape(shown)}</b>{cmp}</div>'
        )
    sec = ["<h2>Totals</h2>"]
    if doc["no_calls"]:
        sec.append('<p class="warn">No outbound calls in this period.</p>')
    sec.append(f'<div class="cards">{"".join(cards)}</div>')
    if base:
        per = " per day" if doc["period"]["days"] != 1 else ""
        sec.append(
            f'<p class="muted">Compared with the daily average of the {base["days"]} previous '
            f"day(s) in the CDRs{per}.</p>"
        )
    else:
        sec.append('<p class="muted">No earlier days in the CDRs to compare with.</p>')
    parts.append("<section>" + "".join(sec) + "</section>")
    # Incidents.
    sec = [f"<h2>Incidents ({len(doc['incidents'])})</h2>"]
    if doc["incidents"]:
        rows = []
        for i in doc["incidents"]:
            reasons = Markup(
                "<ul>" + "".join(f"<li>{escape(r)}</li>" for r in i["reasons"]) + "</ul>"
            )
            live = i.get("live", "")
            live_html = Markup(
                f'<span class="{"bad" if live.startswith("NOT") else ""}">{escape(live)}</span>'
            )
            rows.append([
                i["severity"], i["score"], i["source"], ", ".join(i["destinations"]), i["calls"],
                i["first_call_at"][11:19] if i["first_call_at"] else "", live_html,
                i.get("blocked") or "–", reasons,
            ])
        sec.append(_table(
            ["severity", "score", "source", "destinations", "calls", "first call",
             "live alert", "blocked", "reasons"], rows, {1, 4},
        ))
    else:
        sec.append('<p class="ok">No incidents.</p>')
    parts.append("<section>" + "".join(sec) + "</section>")
    # Reconciliation.
    sec = ["<h2>Reconciliation with the live monitor</h2>"]
    note_cls = "muted" if not rec["available"] else ("bad" if rec["unseen"] else "ok")
    sec.append(f'<p class="{note_cls}">{escape(rec["note"])}</p>')
    if rec["available"]:
        sec.append(
            f'<p class="muted">{rec["live_incidents"]} live incident(s) in the period; '
            f"{doc['flagged_calls']} flagged call(s) in the CDRs.</p>"
        )
    if rec["unseen"]:
        sec.append(_table(
            ["time", "source", "dialed", "destination", "billsec", "incident", "reason"],
            [[u["start"][11:19], u["source"], u["dialed"], u["destination"], u["billsec"],
              u["incident_id"] or "–", "; ".join(u["reasons"])] for u in rec["unseen"][:200]],
            {4},
        ))
        if len(rec["unseen"]) > 200:
            sec.append(f"<p>… and {len(rec['unseen']) - 200} more (see flagged.csv)</p>")
    if rec.get("live_only"):
        ids = ", ".join(rec["live_only"][:20])
        sec.append(
            f'<p class="muted">Alerted live without a flagged call in these CDRs: '
            f"{escape(ids)}</p>"
        )
    parts.append("<section>" + "".join(sec) + "</section>")
    # Charts.
    if charts:
        parts.append(
            "<section><h2>Charts</h2>"
            + "".join(_img(png, alt) for alt, png in charts.items())
            + "</section>"
        )
    # Countries, first-time countries, sources.
    money = f"spend ({cur})" if cur else "spend"
    sec = ["<h2>Top destination countries</h2>"]
    if doc["top_countries"]:
        sec.append(_table(
            ["country", "code", "calls", "answered", "minutes", money, "high-risk"],
            [[c["name"], f"+{c['calling_code']}" if c["calling_code"] else "", c["calls"],
              c["answered"], c["minutes"], c["spend"], c["high_risk"]]
             for c in doc["top_countries"]],
            {2, 3, 4, 5, 6},
        ))
    else:
        sec.append('<p class="muted">No international calls.</p>')
    sec.append("<h2>Countries called for the first time</h2>")
    ft = doc["first_time_countries"]
    if ft:
        sec.append(_table(
            ["country", "code", "calls", "high-risk"],
            [[c["name"], f"+{c['calling_code']}", c["calls"], c["high_risk"]] for c in ft],
            {2, 3},
        ))
        sec.append(
            f'<p class="muted">Not called in the {doc["first_time_window_days"]} days before '
            "(in the CDRs available).</p>"
        )
    else:
        sec.append('<p class="muted">None.</p>')
    parts.append("<section>" + "".join(sec) + "</section>")
    sec = ["<h2>Top sources</h2>"]
    if doc["top_sources"]:
        sec.append(_table(
            ["source", "calls", "international", "high-risk", "minutes", money],
            [[s["source"], s["calls"], s["international"], s["high_risk"], s["minutes"],
              s["spend"]] for s in doc["top_sources"]],
            {1, 2, 3, 4, 5},
        ))
    else:
        sec.append('<p class="muted">No outbound calls.</p>')
    parts.append("<section>" + "".join(sec) + "</section>")
    # Data quality.
    mal = doc["malformed"]
    sec = ["<h2>Data quality</h2>"]
    if mal.get("unreadable_files"):
        sec.append(f'<p class="warn">{len(mal["unreadable_files"])} CDR file(s) could not be '
                   "(all) read: the figures below leave out what they hold.</p>")
        sec.append(_table(["file: why"], [[line] for line in mal["unreadable_files"]]))
    if mal["rows"]:
        sec.append(
            f'<p class="warn">{mal["rows"]:,} malformed CDR row(s) skipped in the files read.</p>'
        )
        sec.append(_table(["file", "rows skipped"],
                          [[f, n] for f, n in mal.get("by_file", {}).items()], {1}))
        sec.append(_table(["row", "problem"], [list(x) for x in mal["examples"]]))
    else:
        sec.append('<p class="ok">No malformed CDR rows.</p>')
    if mal.get("replaced_bytes"):
        sec.append(
            f'<p class="warn">{mal["replaced_bytes"]:,} byte(s) that are not UTF-8 (cut or '
            "Latin-1 caller names) were replaced; those rows were read.</p>"
        )
        sec.append(_table(["file", "bytes replaced"],
                          [[f, n] for f, n in mal.get("replaced_by_file", {}).items()], {1}))
    else:
        sec.append('<p class="ok">No bytes needed replacing (all UTF-8).</p>')
    sec.append(
        '<p class="muted">Files: ' + escape(", ".join(doc["files"]) or "none") + "</p>"
    )
    parts.append("<section>" + "".join(sec) + "</section>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(parts)}</main></body></html>\n"
    )

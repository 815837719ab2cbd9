"""The report as one self-contained HTML page (inline CSS, charts as data: URIs) that reads on
a 390 px phone without sideways scrolling: incidents as cards, tables that stack, long strings
wrapped. Every string from a CDR is escaped."""

from __future__ import annotations

from typing import Any

from tollwatch.report.html_incidents import (
    banner,
    compared_with,
    incident_cards,
    previous_days,
    refused_line,
)
from tollwatch.report.htmlkit import CSS, TOTAL_LABELS, delta, escape, fmt, img, table, talk


def _local(iso: str) -> str:
    """"2026-10-20T00:00:00+09:00" -> "2026-10-20 00:00" (the zone is named beside it)."""
    return iso[:16].replace("T", " ")


def render(doc: dict[str, Any], charts: dict[str, bytes]) -> str:
    """`doc` is the content of figures.json; `charts` maps a title to PNG bytes."""
    p = doc["period"]
    t = doc["totals"]
    cur = doc.get("currency") or ""
    parts: list[str] = []
    title = f"tollwatch report — {doc['site']} — {p['title']}"
    parts.append(f"<h1>{escape(title)}</h1>")
    kind = f"{p['what']} ({p['kind']}); " if p.get("what") else ""
    zone = doc.get("timezone_label") or p["timezone"]
    parts.append(
        f'<p class="muted">{escape(kind)}{escape(_local(p["start"]))} to '
        f'{escape(_local(p["end"]))} {escape(zone)}; generated '
        f'{escape(_local(doc["generated_at"]))}</p>'
    )
    rec = doc["reconciliation"]
    parts.append(banner(doc))
    # Totals.
    base = doc.get("baseline")
    avg = base["average"] if base else None
    cards = []
    for key, label in TOTAL_LABELS:
        value = t.get(key)
        show = talk if key == "minutes" else fmt
        shown = show(value) + (f" {cur}" if key == "spend" and value is not None else "")
        cmp = ""
        if avg is not None:
            mine = (doc.get("per_day") or t).get(key)
            cmp = (
                f"<small>like-day avg {escape(show(avg.get(key)))} "
                f"{delta(mine, avg.get(key))}</small>"
            )
        cards.append(
            f'<div class="card"><small>{escape(label)}</small><b>{escape(shown)}</b>{cmp}</div>'
        )
    sec = ["<h2>Totals</h2>"]
    if doc["no_calls"]:
        sec.append('<p class="warn">No outbound calls in this period.</p>')
    sec.append(f'<div class="cards">{"".join(cards)}</div>')
    sec.append(refused_line(doc))
    sec.append(compared_with(doc))
    sec.append(previous_days(doc))
    parts.append("<section>" + "".join(sec) + "</section>")
    parts.append(incident_cards(doc))
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
        sec.append(table(
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
            + "".join(img(png, alt) for alt, png in charts.items())
            + "</section>"
        )
    # Countries, first-time countries, sources.
    money = f"spend ({cur})" if cur else "spend"
    sec = ["<h2>Top destination countries</h2>"]
    if doc["top_countries"]:
        sec.append(table(
            ["country", "code", "calls", "answered", "talk time", money, "high-risk"],
            [[c["name"], f"+{c['calling_code']}" if c["calling_code"] else "", c["calls"],
              c["answered"], talk(c["minutes"]), c["spend"], c["high_risk"]]
             for c in doc["top_countries"]],
            {2, 3, 4, 5, 6},
        ))
    else:
        sec.append('<p class="muted">No international calls.</p>')
    sec.append("<h2>Countries called for the first time</h2>")
    ft = doc["first_time_countries"]
    if ft:
        sec.append(table(
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
        sec.append(table(
            ["source", "calls", "international", "high-risk", "talk time", money],
            [[s["source"], s["calls"], s["international"], s["high_risk"], talk(s["minutes"]),
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
        sec.append(table(["file: why"], [[line] for line in mal["unreadable_files"]]))
    if mal["rows"]:
        sec.append(
            f'<p class="warn">{mal["rows"]:,} malformed CDR row(s) skipped in the files read.</p>'
        )
        sec.append(table(["file", "rows skipped"],
                          [[f, n] for f, n in mal.get("by_file", {}).items()], {1}))
        sec.append(table(["row", "problem"], [list(x) for x in mal["examples"]]))
    else:
        sec.append('<p class="ok">No malformed CDR rows.</p>')
    if mal.get("replaced_bytes"):
        sec.append(
            f'<p class="warn">{mal["replaced_bytes"]:,} byte(s) that are not UTF-8 (cut or '
            "Latin-1 caller names) were replaced; those rows were read.</p>"
        )
        sec.append(table(["file", "bytes replaced"],
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

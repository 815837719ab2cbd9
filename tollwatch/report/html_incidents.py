"""The report page's banner (who, where to, how much, when, blocked or not), the incident cards
and the days compared with, missing days included. Every CDR string is escaped here."""

from __future__ import annotations

from typing import Any

from tollwatch.report.htmlkit import escape, fmt, talk
from tollwatch.report.words import incident_line

BANNER_MAX = 5
_BLOCK_CLASS = {"blocked": "ok", "not blocked": "bad", "block NOT applied": "bad"}


def banner(doc: dict[str, Any]) -> str:
    """What needs reading first: the critical incidents in one line each, calls the live monitor
    missed, data that is missing or doubtful."""
    dated = doc["period"]["days"] > 1
    lines: list[str] = []
    crit = [i for i in doc["incidents"] if i["severity"] == "critical"]
    for view in crit[:BANNER_MAX]:
        lines.append(f'<li><b class="bad">{escape(incident_line(view, dated))}</b></li>')
    if len(crit) > BANNER_MAX:
        lines.append(f"<li>… and {len(crit) - BANNER_MAX} more critical incident(s) below</li>")
    rec = doc["reconciliation"]
    if rec["available"] and rec["unseen"]:
        lines.append(f'<li><b class="bad">{len(rec["unseen"])} flagged call(s) were NOT alerted '
                     "on live</b></li>")
    notes = [n for n in (doc.get("coverage_note"), doc.get("validity")) if n]
    unreadable = (doc.get("malformed") or {}).get("unreadable_files") or []
    if unreadable:
        notes.insert(0, f"{len(unreadable)} CDR file(s) could not be (all) read: the figures "
                        "leave out what they hold (see Data quality)")
    out = []
    if lines:
        out.append('<section class="banner"><ul>' + "".join(lines) + "</ul></section>")
    if notes:
        out.append('<section class="banner note"><ul>'
                   + "".join(f'<li class="warn">{escape(str(n))}</li>' for n in notes)
                   + "</ul></section>")
    return "".join(out)


def _when(view: dict[str, Any], dated: bool) -> str:
    first, last = view.get("first_call_at") or "", view.get("last_call_at") or ""
    cut = slice(0, 19) if dated else slice(11, 19)
    a, b = first[cut].replace("T", " "), last[cut].replace("T", " ")
    return a if a == b else f"{a} – {b}"


def incident_cards(doc: dict[str, Any]) -> str:
    """One card per incident (most severe first): readable at any width, unlike a wide table."""
    views = doc["incidents"]
    head = f"<h2>Incidents ({len(views)})</h2>"
    if not views:
        return f'<section>{head}<p class="ok">No incidents.</p></section>'
    dated = doc["period"]["days"] > 1
    tz = doc["period"]["timezone"]
    cur = doc.get("currency") or ""
    cards = []
    for v in views:
        sev = str(v.get("severity", ""))
        who = "all sources (PBX-wide)" if v.get("source") == "*" else f"ext {v.get('source')}"
        dests = ", ".join(str(d) for d in v.get("destinations") or []) or "–"
        live = str(v.get("live") or "")
        block = str(v.get("block") or "unknown")
        what = v.get("blocked")
        rows = [
            ("score", fmt(v.get("score"))),
            ("calls", fmt(v.get("calls"))),
            ("talk time", talk(v.get("minutes"))),
            ("when", f"{_when(v, dated)} ({tz})"),
        ]
        if v.get("spend") is not None:
            rows.append(("spend", f"≈ {fmt(v.get('spend'))} {cur}".rstrip()))
        dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(x)}</dd>" for k, x in rows)
        live_cls = "bad" if live.startswith("NOT") else ""
        dl += f'<dt>live alert</dt><dd class="{live_cls}">{escape(live or "–")}</dd>'
        shown = f"{block}: {what}" if what and block != "not blocked" else block
        dl += (f'<dt>block</dt><dd class="{_BLOCK_CLASS.get(block, "")}">'
               f"{escape(shown)}</dd>")
        refused = int(v.get("attempts_refused") or 0)
        if refused:
            dl += f"<dt>refused</dt><dd>{refused} attempt(s) refused by the block</dd>"
        reasons = "".join(f"<li>{escape(str(r))}</li>" for r in v.get("reasons") or [])
        cards.append(
            f'<div class="incident {escape(sev)}"><h3>{escape(sev.upper())}: {escape(who)} → '
            f"{escape(dests)}</h3><dl>{dl}</dl><ul>{reasons}</ul>"
            f'<small class="muted">{escape(str(v.get("id", "")))}</small></div>'
        )
    return f'<section>{head}<div class="incidents">{"".join(cards)}</div></section>'


def compared_with(doc: dict[str, Any]) -> str:
    """A sentence on what the day is compared with, and which like days had no CDRs."""
    base = doc.get("baseline")
    p = doc["period"]
    kind = f"{p['what']}, a {p['kind']}: " if p.get("what") else ""
    missing = doc.get("compare_missing") or []
    gone = (f' <span class="missing">No CDRs on {escape(", ".join(missing))}: missing, left '
            "out (not counted as 0).</span>") if missing else ""
    if not base:
        return f'<p class="muted">{escape(kind)}no earlier like days in the CDRs to compare ' \
               f"with.{gone}</p>"
    per = " per day" if p["days"] != 1 else ""
    dates = ", ".join(base.get("dates") or [])
    return (f'<p class="muted">{escape(kind)}compared with the daily average of the '
            f"{escape(base['words'])}{per} ({escape(dates)}).{gone}</p>")


def previous_days(doc: dict[str, Any]) -> str:
    """The days before the period, one short line each with its kind; a day without any CDR
    says "no CDRs (missing)" instead of showing 0."""
    lines = []
    for d in doc.get("daily") or []:
        day = f"{d['weekday']} {d['date']}"
        what = str(d.get("what") or "")
        if what.startswith(("public holiday", "closure")):
            kind = what
        else:
            kind = "weekend" if d.get("kind") == "weekend or holiday" else "working day"
        if d.get("missing"):
            figs = '<span class="missing">no CDRs (missing)</span>'
        else:
            figs = escape(f"{fmt(d.get('calls'))} calls, {fmt(d.get('international'))} "
                          f"international, {fmt(d.get('high_risk'))} high-risk")
        lines.append(f"<li><b>{escape(day)}</b> <small class=\"muted\">{escape(kind)}</small>"
                     f" — {figs}</li>")
    if not lines:
        return ""
    return "<h2>The days before</h2><ul class=\"days\">" + "".join(lines) + "</ul>"


def refused_line(doc: dict[str, Any]) -> str:
    """Call attempts tollwatch's blocks refused (from the CDRs' userfield), by block."""
    ref = doc.get("refused") or {}
    if not ref.get("attempts"):
        return ""
    blocks = ", ".join(f"{'from ' + b[4:] if b.startswith('src:') else '+' + b} ×{n}"
                       for b, n in (ref.get("by_block") or {}).items())
    return (f'<p class="ok">{ref["attempts"]:,} call attempt(s) refused by tollwatch blocks '
            f"({escape(blocks)}).</p>")

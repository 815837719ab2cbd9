"""Slack Block Kit messages for incidents: pure functions from incident views to messages.

Every message is a dict `{"text": ..., "blocks": [...]}`: `text` is the plain fallback that
notifications, screen readers and incoming webhooks without blocks show. Views are the dicts of
`tollwatch.report_format.incident_dict` (plus `pbx`, maybe `currency`, and for block changes a
`blocks` list of `{"kind", "value", "expires_at", "lift", "dry_run"}`).

Slack's limits are respected: header text 150 characters, a section's text 3000, 10 fields a
section, 50 blocks a message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from tollwatch.alerting.base import pending_note

Message = dict[str, Any]
View = dict[str, Any]

HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
SUMMARY_LINES_MAX = 40

_SEVERITY = {
    "critical": (":rotating_light:", "CRITICAL"),
    "warning": (":warning:", "WARNING"),
}


# ---- small helpers ---------------------------------------------------------------------------
def escape(text: object) -> str:
    """Escape Slack mrkdwn control characters (&, <, >) in text from the outside."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def severity_label(view: View) -> str:
    emoji, name = _SEVERITY.get(str(view.get("severity")), (":grey_question:", ""))
    name = name or str(view.get("severity", "")).upper()
    return f"{emoji} {name}"


def _severity_word(view: View) -> str:
    return str(view.get("severity", "")).upper()


def when(iso: str | None) -> str:
    """An ISO time as "2024-05-01 02:13:05 +02:00" (the site's time, as the view has it)."""
    if not iso:
        return "-"
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    text = at.strftime("%Y-%m-%d %H:%M:%S")
    offset = at.strftime("%z")
    if offset:
        text += f" {offset[:3]}:{offset[3:]}"
    return text


def slack_date(iso: str | None) -> str:
    """A Slack date token: every reader sees the time in their own zone; the fallback (for
    clients that cannot) is the site's time with its offset."""
    if not iso:
        return "-"
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return escape(iso)
    if at.tzinfo is None:
        return when(iso)
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time_secs}}|{when(iso)}>"


def minutes_text(value: Any) -> str:
    """Minutes as m:ss for people."""
    try:
        seconds = round(float(value) * 60)
    except (TypeError, ValueError):
        return "-"
    return f"{seconds // 60}:{seconds % 60:02d}"


def mention_token(mention: str) -> str:
    """`@here`/`@channel` as Slack's special mentions; user groups and users as written."""
    return {"@here": "<!here>", "@channel": "<!channel>"}.get(mention, mention)


def block_command(block: dict[str, Any]) -> str:
    """The command that applies this block by hand (for a dry run)."""
    value = str(block.get("value", "?"))
    target = f"--source {value}" if block.get("kind") == "source" else value
    pbx = f" --pbx {block['pbx']}" if block.get("pbx") else ""
    return f"tollwatch block {target}{pbx}"


def money(view: View) -> str:
    spend = view.get("spend")
    if spend is None:
        return "unknown (no rate)"
    currency = view.get("currency")
    return f"≈ {spend:,.2f} {currency}" if currency else f"≈ {spend:,.2f}"


def source_text(view: View) -> str:
    source = str(view.get("source", "?"))
    text = "all sources (PBX-wide)" if source == "*" else source
    account = view.get("account")
    if account:
        text += f" (account {account})"
    return text


def destinations_text(view: View, limit: int = 6) -> str:
    dests = [str(d) for d in view.get("destinations") or []]
    if not dests:
        return "-"
    shown = ", ".join(dests[:limit])
    if len(dests) > limit:
        shown += f" and {len(dests) - limit} more"
    return shown


def where_text(view: View) -> str:
    site, pbx = view.get("site"), view.get("pbx")
    if site and pbx and site != pbx:
        return f"{site} / {pbx}"
    return str(site or pbx or "-")


def figures(view: View) -> str:
    refused = int(view.get("attempts_refused") or 0)
    stopped = f", {refused} attempt(s) refused" if refused else ""
    return (f"{view.get('calls', 0)} call(s){stopped}, {minutes_text(view.get('minutes', 0))} min, "
            f"spend {money(view)}")


def reasons_lines(view: View) -> list[str]:
    """The rules that fired, each with its reason in words (strongest first)."""
    rules = [str(r) for r in view.get("rules") or []]
    reasons = [str(r) for r in view.get("reasons") or []]
    if len(rules) == len(reasons):
        return [f"• *{escape(rule)}*: {escape(reason)}" for rule, reason in zip(rules, reasons,
                                                                                 strict=True)]
    lines = [f"• {escape(reason)}" for reason in reasons]
    if rules:
        lines.append("Rules: " + ", ".join(f"*{escape(r)}*" for r in rules))
    return lines


def block_line(block: dict[str, Any], *, lifted: bool = False, now: datetime | None = None,
               tokens: bool = False) -> str:
    """One block in words. `tokens`: times as Slack date tokens (in blocks, not in `text`)."""
    kind = "prefix" if block.get("kind") == "prefix" else "source"
    value = escape(block.get("value", "?"))
    target = f"calls to +{value}" if kind == "prefix" else f"calls from {value}"
    if lifted:
        expired = False
        expires = block.get("expires_at")
        if now is not None and expires:
            try:
                expired = datetime.fromisoformat(str(expires)) <= now
            except (TypeError, ValueError):
                expired = False
        return f"{target}: block {'expired' if expired else 'lifted'}"
    until = slack_date(block.get("expires_at")) if tokens else when(block.get("expires_at"))
    lift = block.get("lift")
    if block.get("dry_run"):
        return (f"{target}: WOULD BLOCK (dry run) until {until}; to block now: "
                f"`{escape(block_command(block))}`")
    if block.get("failed"):
        return (f"{target}: block NOT applied yet ({escape(block['failed'])}); "
                f"{pending_note(block['failed'])}")
    text = f"{target}: blocked until {until}"
    if lift:
        text += f"; lift with `{escape(lift)}`"
    return text


def block_state(blocks: Sequence[dict[str, Any]]) -> str:
    """What the blocks of one change amount to: "blocked" only when one really is in force."""
    if any(not b.get("dry_run") and not b.get("failed") for b in blocks):
        return "blocked"
    if any(b.get("dry_run") for b in blocks):
        return "WOULD BLOCK (dry run)"
    return "block NOT applied yet" if blocks else "not blocked"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, SECTION_MAX)}}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": _cut(text, HEADER_MAX),
                                       "emoji": True}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(text, SECTION_MAX)}]}


def _field(label: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(f"*{label}*\n{value}", FIELD_MAX)}


def headline(view: View) -> str:
    """One line: severity, source and destinations."""
    return (f"{_severity_word(view)} toll fraud at {where_text(view)}: "
            f"{source_text(view)} → {destinations_text(view, 3)}")


# ---- the parent message ----------------------------------------------------------------------
def notification(view: View, blocks: Sequence[dict[str, Any]] = ()) -> str:
    """The short text a phone notification shows: who, where to, how many, blocked or not."""
    spend = f", {money(view)}" if view.get("spend") is not None else ""
    text = (f"[{_severity_word(view)}] {source_text(view)} → {destinations_text(view, 2)} "
            f"at {where_text(view)}, {view.get('calls', 0)} call(s){spend}")
    if blocks:
        text += "; " + block_state(blocks)
    return f"{text} [{view.get('id', '?')}]"


def _mention(view: View, mention: str) -> str:
    return mention_token(mention) if mention and view.get("severity") == "critical" else ""


def parent_message(view: View, blocks: Sequence[dict[str, Any]] = (), *,
                   mention: str = "") -> Message:
    """The incident's own message (a thread's parent): everything known now.

    `blocks`: the remediation blocks in force for this incident (empty: none applied).
    `mention`: who to notify when it is critical ("@here", "<!subteam^ID>", "<@U..>")."""
    emoji, _ = _SEVERITY.get(str(view.get("severity")), (":grey_question:", ""))
    fields = [
        _field("Severity", f"{severity_label(view)} (score {view.get('score', '?')})"),
        _field("Site / PBX", escape(where_text(view))),
        _field("Source", escape(source_text(view))),
        _field("Destinations", escape(destinations_text(view, 10))),
        _field("Calls", str(view.get("calls", 0))),
        _field("Minutes", minutes_text(view.get("minutes", 0))),
        _field("Estimated spend", escape(money(view))),
        _field("First call", slack_date(view.get("first_call_at"))),
    ]
    out: list[dict[str, Any]] = [
        _header(f"{emoji} {headline(view)}"),
        {"type": "section", "fields": fields},
    ]
    who = _mention(view, mention)
    if who:
        out.insert(1, _section(f"{who} critical toll-fraud incident"))
    why = reasons_lines(view)
    if why:
        out.append(_section("*Why*\n" + "\n".join(why)))
    if blocks:
        state = block_state(blocks)
        out.append(_section(f"*{state[0].upper()}{state[1:]}*\n"
                            + "\n".join(f"• {block_line(b, tokens=True)}" for b in blocks)))
    else:
        out.append(_context("No block applied."))
    out.append(_context(
        f"Incident `{escape(view.get('id', '?'))}` · last call "
        f"{slack_date(view.get('last_call_at'))} · detected {slack_date(view.get('detected_at'))}"
    ))
    text = escape(notification(view, blocks))
    return {"text": f"{who} {text}" if who else text, "blocks": out}


# ---- thread replies --------------------------------------------------------------------------
def reply_message(kind: str, view: View, *, now: datetime | None = None,
                  mention: str = "") -> Message:
    """A reply in the incident's thread: grew, severity raised, block applied or lifted."""
    iid = view.get("id", "?")
    who = _mention(view, mention) if kind == "escalated" else ""
    if kind == "escalated":
        head = (f":arrow_double_up: Severity raised to *{_severity_word(view)}* "
                f"(score {view.get('score', '?')})")
        lines = [f"{who} {head}" if who else head, figures(view), *reasons_lines(view)]
        text = (f"[{iid}] severity raised to {_severity_word(view)} "
                f"(score {view.get('score', '?')}): {figures(view)}")
    elif kind == "blocked":
        blocks = view.get("blocks") or []
        state = block_state(blocks)
        head = {"blocked": ":no_entry: Block applied",
                "WOULD BLOCK (dry run)": ":test_tube: Block *not* applied: WOULD BLOCK (dry run)",
                }.get(state, f":warning: Block *not* applied ({state})")
        lines = [head, *(f"• {block_line(b, tokens=True)}" for b in blocks)]
        text = f"[{iid}] {state}: " + "; ".join(block_line(b) for b in blocks)
    elif kind == "unblocked":
        blocks = view.get("blocks") or []
        lines = [":white_check_mark: Block ended",
                 *(f"• {block_line(b, lifted=True, now=now)}" for b in blocks)]
        text = f"[{iid}] " + "; ".join(block_line(b, lifted=True, now=now) for b in blocks)
    else:  # updated
        lines = [f":chart_with_upwards_trend: Now {figures(view)}",
                 f"Destinations: {escape(destinations_text(view, 10))}",
                 f"Last call {slack_date(view.get('last_call_at'))}"]
        rules = view.get("rules") or []
        if rules:
            lines.append("Rules: " + ", ".join(f"*{escape(r)}*" for r in rules))
        text = f"[{iid}] now {figures(view)}"
    text = escape(text)
    return {"text": f"{who} {text}" if who else text, "blocks": [_section("\n".join(lines))]}


def flood_reply(kind: str, view: View, *, now: datetime | None = None,
                mention: str = "") -> Message:
    """A reply in a flood summary's thread: like `reply_message`, naming the incident."""
    msg = reply_message(kind, view, now=now, mention=mention)
    name = f"`{escape(view.get('id', '?'))}` {escape(source_text(view))} → " \
           f"{escape(destinations_text(view, 3))}"
    if kind == "opened":
        return {"text": escape(f"[{view.get('id', '?')}] {headline(view)}: {figures(view)}"),
                "blocks": [_section(f"{severity_label(view)} {name}\n{figures(view)}")]}
    first = msg["blocks"][0]["text"]["text"]
    msg["blocks"] = [_section(f"{name}\n{first}")]
    return msg


# ---- flood summary ---------------------------------------------------------------------------
def summary_line(view: View) -> str:
    return (f"• {severity_label(view)} {escape(source_text(view))} → "
            f"{escape(destinations_text(view, 2))}: {view.get('calls', 0)} call(s) "
            f"`{escape(view.get('id', '?'))}`")


def summary_message(views: Sequence[View], window: str | None = None) -> Message:
    """One message for many new incidents at once (a flood): a compact list."""
    n = len(views)
    crit = sum(1 for v in views if v.get("severity") == "critical")
    sites = sorted({where_text(v) for v in views})
    span = f" within {window}" if window else ""
    head = f":rotating_light: {n} new toll-fraud incidents{span}"
    lines = [summary_line(v) for v in views[:SUMMARY_LINES_MAX]]
    if n > SUMMARY_LINES_MAX:
        lines.append(f"… and {n - SUMMARY_LINES_MAX} more")
    out: list[dict[str, Any]] = [
        _header(head),
        _section(f"*{crit} critical*, {n - crit} warning · at {escape(', '.join(sites))}"),
    ]
    chunk: list[str] = []
    for line in lines:  # several sections, each within Slack's limit
        if chunk and len("\n".join([*chunk, line])) > SECTION_MAX:
            out.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        out.append(_section("\n".join(chunk)))
    out = out[:49]
    out.append(_context("Too many incidents at once for one message each: "
                        "their updates follow in this thread."))
    ids = ", ".join(str(v.get("id", "?")) for v in views)
    text = f"{n} new toll-fraud incidents{span} ({crit} critical): {ids}"
    return {"text": escape(text), "blocks": out}

"""The report page for people: like-day comparison, missing days, the real block state in the
banner, refused attempts, escaping of CDR strings."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.test_report import (
    ATTACK_SOURCE,
    DAY,
    TZ,
    Built,
    Cdr,
    attack_rows,
    build,
    live_view,
    traffic,
)
from tollwatch.alerting.remediation.store import BlockStore
from tollwatch.report import summary_text
from tollwatch.state import StateStore

SATURDAY = date(2026, 10, 24)
SPORTS_DAY = date(2026, 10, 12)  # a public holiday in Japan (a Monday)


def weekly(skip: set[date] | None = None, day: date = SATURDAY) -> Cdr:
    """4 weeks of history: 12 domestic calls on working days, 2 on weekends and holidays."""
    cdr = Cdr()
    for back in range(0, 29):
        d = day - timedelta(days=back)
        if d in (skip or set()):
            continue
        closed = d.weekday() >= 5 or d == SPORTS_DAY
        for i in range(2 if closed else 12):
            cdr.add("201", f"03{1000_0000 + back * 100 + i}", _at(d, 10, i))
    return cdr


def _at(d: date, h: int, m: int) -> Any:
    from tests.test_report import at
    return at(d, h, m)


def test_a_saturday_is_compared_with_weekends_and_holidays(tmp_path: Path) -> None:
    doc = build(tmp_path, None, weekly(), day=SATURDAY).result.figures
    assert (doc["period"]["kind"], doc["period"]["what"]) == ("weekend or holiday", "Saturday")
    base = doc["baseline"]
    assert base["kind"] == "weekend or holiday"
    assert base["dates"] == ["2026-10-18", "2026-10-17", "2026-10-12", "2026-10-11",
                             "2026-10-10", "2026-10-04", "2026-10-03"]
    assert base["average"]["calls"] == 2.0  # against the weekdays it would be ~9
    assert doc["totals"]["calls"] == 2


def test_a_day_without_cdrs_is_missing_not_zero(tmp_path: Path) -> None:
    gap = date(2026, 10, 17)
    b = build(tmp_path, None, weekly(skip={gap}), day=SATURDAY)
    doc = b.result.figures
    assert gap.isoformat() not in doc["baseline"]["dates"]
    assert doc["compare_missing"] == ["2026-10-17"]
    assert doc["baseline"]["average"]["calls"] == 2.0  # not pulled down by a 0
    day = next(d for d in doc["daily"] if d["date"] == "2026-10-17")
    assert day["missing"] is True and "calls" not in day
    page = b.result.html.read_text(encoding="utf-8")
    assert "no CDRs (missing)" in page and "No CDRs on 2026-10-17" in page
    # a report on the missing day itself says so instead of showing a quiet day
    (tmp_path / "gap").mkdir()
    gone = build(tmp_path / "gap", None, weekly(skip={gap}), day=gap).result
    assert "no CDR row at all on 2026-10-17" in (gone.figures["coverage_note"] or "")
    assert "no CDR row at all on 2026-10-17" in gone.html.read_text(encoding="utf-8")
    assert gone.summary["missing_days"] == ["2026-10-17"]


# ---- the block state, from the daemon's records --------------------------------------------
def with_blocks(tmp: Path, dry_run: bool | None, applied: bool = True, **live: Any) -> Built:
    """The golden day with the live incident stored, and (unless None) a block record for it
    in blocks.sqlite3 beside the state file, as the daemon writes them."""
    cdr = traffic()
    state = tmp / "state"
    state.mkdir()
    store = StateStore(state / "tollwatch.sqlite3")
    view = live_view(cdr, [cdr.call_id(r) for r in attack_rows(cdr)])
    view.pop("blocks")
    view.update(live)
    store.save_incident("pbx", view, is_open=False)
    if dry_run is not None:
        blocks = BlockStore(state / "blocks.sqlite3")
        blocks.add("prefix", "23276543", "pbx", "incident pbx:209:live critical", "pbx:209:live",
                   "auto", 1_792_000_000, 1_792_086_400, dry_run,
                   1_792_000_000 if applied and not dry_run else None)
        blocks.close()
    try:
        return build(tmp, store, cdr)
    finally:
        store.close()


def banner_text(b: Built) -> str:
    page = b.result.html.read_text(encoding="utf-8")
    start = page.index('<section class="banner">')
    return page[start:page.index("</section>", start)]


def test_a_real_block_is_blocked(tmp_path: Path) -> None:
    b = with_blocks(tmp_path, dry_run=False)
    inc = b.result.figures["incidents"][0]
    assert inc["block"] == "blocked"
    assert inc["blocked"] == "numbers starting +232 76543 (Sierra Leone)"
    assert ("CRITICAL: ext 209 → Sierra Leone (+232), 12 calls, ≈ 6.00 JPY, 03:00–03:00, "
            "blocked</b>") in banner_text(b)


def test_a_block_asterisk_never_held_is_not_called_blocked(tmp_path: Path) -> None:
    b = with_blocks(tmp_path, dry_run=False, applied=False)  # AstDB refused, or no AMI
    assert b.result.figures["incidents"][0]["block"] == "block NOT applied"
    assert "03:00–03:00, block NOT applied</b>" in banner_text(b)


def test_a_dry_run_block_would_block(tmp_path: Path) -> None:
    b = with_blocks(tmp_path, dry_run=True)
    assert b.result.figures["incidents"][0]["block"] == "WOULD BLOCK (dry run)"
    assert banner_text(b).endswith("03:00–03:00, WOULD BLOCK (dry run)</b></li></ul>")
    assert "blocked" not in banner_text(b)
    assert "WOULD BLOCK (dry run)" in summary_text(b.result.summary)


@pytest.mark.slow
def test_no_block_is_not_blocked_and_unknown_says_nothing(tmp_path: Path) -> None:
    b = with_blocks(tmp_path, dry_run=None)
    assert b.result.figures["incidents"][0]["block"] == "not blocked"
    assert "03:00–03:00, not blocked</b>" in banner_text(b)
    (tmp_path / "none").mkdir()
    unknown = build(tmp_path / "none", None)  # no live monitor state: not known
    assert unknown.result.figures["incidents"][0]["block"] == "unknown"
    assert "03:00–03:00, NOT alerted live" not in banner_text(unknown)
    assert "03:00–03:00</b>" in banner_text(unknown)


def test_refused_attempts_are_shown(tmp_path: Path) -> None:
    b = with_blocks(tmp_path, dry_run=False, attempts_refused=7)
    assert b.result.figures["incidents"][0]["attempts_refused"] == 7
    assert b.result.summary["attempts_refused"] == 7
    assert "blocked, 7 attempt(s) refused" in banner_text(b)
    assert "7 attempt(s) refused by the block" in b.result.html.read_text(encoding="utf-8")


def test_cdr_strings_are_escaped_in_the_page(tmp_path: Path) -> None:
    evil = "<img src=x onerror=alert(1)>\x1b[31m"
    cdr = traffic()
    for r in cdr.rows:
        if r.src == ATTACK_SOURCE:
            r.src = evil
    b = build(tmp_path, None, cdr)
    page = b.result.html.read_text(encoding="utf-8")
    assert b.result.figures["incidents"][0]["source"] == evil
    assert evil not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;\\x1b[31m" in page and "\x1b" not in page
    assert TZ.key in page
    assert DAY.isoformat() in page


def refused_line(n: int, second: int) -> str:
    """A call the dialplan snippet refused (CDR userfield tollwatch-blocked:...)."""
    when = f"{DAY.isoformat()} 03:05:{second:02d}"
    return (f'"acme","{ATTACK_SOURCE}","01023276543{n:02d}","from-internal",'
            f'"""Desk 209"" <209>","PJSIP/209-000002{n:02d}","","Hangup","21","{when}",,'
            f'"{when}",0,0,"NO ANSWER","DOCUMENTATION","1792440000.{n}",'
            '"tollwatch-blocked:23276543"')


def test_attempts_refused_in_the_cdrs_are_shown(tmp_path: Path) -> None:
    cdr = traffic()
    cdr.bad_lines += [refused_line(n, n) for n in range(3)]  # raw lines appended to the file
    b = build(tmp_path, None, cdr)
    doc = b.result.figures
    assert doc["refused"] == {"attempts": 3, "by_source": {ATTACK_SOURCE: 3},
                              "by_block": {"23276543": 3}}
    assert doc["totals"]["calls"] == 45  # a refused attempt is not a call out
    assert doc["incidents"][0]["attempts_refused"] == 3
    page = b.result.html.read_text(encoding="utf-8")
    assert "3 call attempt(s) refused by tollwatch blocks (+23276543 ×3)" in page
    assert "12 calls, ≈ 6.00 JPY, 03:00–03:00, 3 attempt(s) refused" in banner_text(b)


def test_an_unreadable_file_is_said_at_the_top(tmp_path: Path) -> None:
    from tests.test_report import site
    from tollwatch.report import build_report

    path = traffic().write(tmp_path / "Master.csv")
    result = build_report(site(), [path, tmp_path / "Master.csv.1"], DAY, tmp_path / "out", None)
    page = result.html.read_text(encoding="utf-8")
    start = page.index('<section class="banner note">')
    note = page[start:page.index("</section>", start)]
    assert "1 CDR file(s) could not be (all) read" in note

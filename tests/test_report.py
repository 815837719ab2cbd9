"""The daily report: golden figures on a generated day, outputs, reconciliation, scheduling."""

from __future__ import annotations

import asyncio
import csv
import json
import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import settings as make_settings
from tollwatch.config import Settings
from tollwatch.report import ReportResult, build_report, summary_text
from tollwatch.report.build import folder_date, prune
from tollwatch.report.period import Period
from tollwatch.report.schedule import ReportScheduler
from tollwatch.state import StateStore

TZ = ZoneInfo("Asia/Tokyo")
DAY = date(2026, 10, 20)  # a Tuesday, not a holiday in Japan
ATTACK_SOURCE = "209"
ATTACK_CALLS = 12


# ---- a generated Master.csv ---------------------------------------------------------------
@dataclass
class Row:
    src: str
    dst: str
    start: datetime  # local wall clock (Asia/Tokyo)
    billsec: int = 60
    answered: bool = True
    ring: int = 5
    trunk: bool = True


class Cdr:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.bad_lines: list[str] = []

    def add(self, src: str, dst: str, start: datetime, **kw: Any) -> None:
        self.rows.append(Row(src, dst, start, **kw))

    def line(self, n: int, r: Row) -> str:
        fmt = "%Y-%m-%d %H:%M:%S"
        answer = r.start + timedelta(seconds=r.ring) if r.answered else None
        end = (answer or r.start) + timedelta(seconds=r.billsec if r.answered else r.ring)
        dstchan = f"PJSIP/carrier-{n:08x}" if r.trunk else f"PJSIP/{r.dst}-{n:08x}"
        lastdata = f"PJSIP/{r.dst}@carrier,60" if r.trunk else f"PJSIP/{r.dst},30"
        duration = int((end - r.start).total_seconds())
        epoch = int(r.start.replace(tzinfo=TZ).timestamp())
        return ",".join([
            '"acme"', f'"{r.src}"', f'"{r.dst}"', '"from-internal"',
            f'"""Desk {r.src}"" <{r.src}>"', f'"PJSIP/{r.src}-{n:08x}"', f'"{dstchan}"',
            '"Dial"', f'"{lastdata}"', f'"{r.start.strftime(fmt)}"',
            f'"{answer.strftime(fmt)}"' if answer else "",
            f'"{end.strftime(fmt)}"', str(duration), str(r.billsec if r.answered else 0),
            '"ANSWERED"' if r.answered else '"NO ANSWER"', '"DOCUMENTATION"',
            f'"{epoch}.{n}"', '""',
        ])

    def write(self, path: Path) -> Path:
        lines = [self.line(n, r) for n, r in enumerate(self.rows)]
        path.write_text("\n".join(lines + self.bad_lines) + "\n", encoding="utf-8")
        return path

    def call_id(self, r: Row) -> str:
        n = self.rows.index(r)
        return f"{int(r.start.replace(tzinfo=TZ).timestamp())}.{n}"


def at(d: date, h: int, m: int = 0, s: int = 0) -> datetime:
    return datetime(d.year, d.month, d.day, h, m, s)


def traffic() -> Cdr:
    cdr = Cdr()
    # 30+ days of history: domestic and US every day of the week before, GB and CN earlier,
    # France only 40 days before (outside the 30-day window: France is new on the day).
    for back in range(1, 8):
        d = DAY - timedelta(days=back)
        for i in range(10):
            cdr.add("201", f"03{1000_0000 + back * 100 + i}", at(d, 9, i))
        cdr.add("202", f"0101212555{back:04d}", at(d, 10), billsec=120)
        cdr.add("202", f"0101212556{back:04d}", at(d, 10, 30), billsec=120)
    cdr.add("203", "01044207946000", at(DAY - timedelta(days=25), 11))  # GB
    cdr.add("203", "0108610555000", at(DAY - timedelta(days=20), 11))  # CN
    cdr.add("203", "01033145678900", at(DAY - timedelta(days=40), 11))  # FR, long ago
    # The day: 3 domestic calls an hour 09-17, one unanswered at 12:45, US at 10 and 14,
    # France at 11, an internal call, and the attack at 03:00 (12 Sierra Leone numbers).
    for h in range(9, 18):
        for m in (10, 20, 30):
            cdr.add(f"3{h:02d}", f"03{5000_0000 + h * 100 + m}", at(DAY, h, m))
    cdr.add("230", "0612345678", at(DAY, 12, 45), answered=False, ring=25)
    for h in (10, 14):
        for m in (0, 5):
            cdr.add("240", f"010121255{h:02d}{m:03d}", at(DAY, h, m), billsec=120)
    cdr.add("241", "01033145678901", at(DAY, 11), billsec=30)
    cdr.add("201", "202", at(DAY, 13), trunk=False)
    for i in range(ATTACK_CALLS):
        cdr.add(ATTACK_SOURCE, f"01023276543{i:02d}", at(DAY, 3, 0, 5 * i), billsec=20)
    # The next day: outside the period.
    cdr.add("201", "0104930123456", at(DAY + timedelta(days=1), 0, 30))
    cdr.bad_lines = [
        "this is not a CDR line",
        cdr.line(9999, Row("201", "0312345678", at(DAY, 9))).replace("2026-10-20 09:00:00",
                                                                     "2026-13-45 99:00"),
    ]
    return cdr


def site() -> Settings:
    return make_settings("JP", "Asia/Tokyo", rates={"per_minute": {"232": 1.5}, "currency": "JPY"})


@dataclass
class Built:
    result: ReportResult
    cdr: Cdr
    path: Path


def build(tmp: Path, store: StateStore | None, cdr: Cdr | None = None, **kw: Any) -> Built:
    cdr = cdr or traffic()
    path = cdr.write(tmp / "Master.csv")
    result = build_report(site(), [path], kw.pop("day", DAY), tmp / "out", store, **kw)
    return Built(result, cdr, path)


def attack_rows(cdr: Cdr) -> list[Row]:
    return [r for r in cdr.rows if r.src == ATTACK_SOURCE]


def live_view(cdr: Cdr, ids: list[str]) -> dict[str, Any]:
    first = attack_rows(cdr)[0].start.replace(tzinfo=TZ)
    last = attack_rows(cdr)[-1].start.replace(tzinfo=TZ)
    return {
        "id": "pbx:209:live", "site": "pbx", "severity": "critical", "score": 250,
        "source": ATTACK_SOURCE, "sources": [ATTACK_SOURCE], "account": "acme",
        "rules": ["high_risk_destination"], "regions": ["SL"],
        "destinations": ["Sierra Leone (+232)"], "calls": len(ids), "minutes": 4.0,
        "spend": None, "first_call_at": first.isoformat(), "last_call_at": last.isoformat(),
        "detected_at": first.isoformat(), "call_ids": ids, "reasons": ["x"],
        "blocks": [{"kind": "prefix", "value": "232", "what": "the whole of Sierra Leone (+232)",
                    "dry_run": False}],
    }


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Built:
    tmp = tmp_path_factory.mktemp("golden")
    cdr = traffic()
    store = StateStore(tmp / "state" / "tollwatch.sqlite3")
    ids = [cdr.call_id(r) for r in attack_rows(cdr)]
    store.save_incident("pbx", live_view(cdr, ids), is_open=False)
    old = tmp / "out" / (DAY - timedelta(days=100)).isoformat()
    old.mkdir(parents=True)
    (tmp / "out" / "notes").mkdir()
    try:
        return build(tmp, store, cdr, keep_days=30)
    finally:
        store.close()


# ---- golden figures -----------------------------------------------------------------------
def test_totals_are_exact(golden: Built) -> None:
    doc = golden.result.figures
    assert doc["totals"] == {
        "calls": 45,
        "answered": 44,
        "international": 17,
        "high_risk": 12,
        "off_hours_international": 12,
        "minutes": 39.5,  # (27*60 + 4*120 + 30 + 12*20) / 60
        "spend": 6.0,  # 12 calls * 20 s * 1.5 / min
        "rated_calls": 12,
    }
    assert doc["no_calls"] is False
    assert doc["period"]["day"] == "2026-10-20"
    assert doc["period"]["start"] == "2026-10-20T00:00:00+09:00"


def test_calls_per_hour_by_class(golden: Built) -> None:
    hourly = golden.result.figures["hourly"]
    assert hourly["high-risk"][3] == ATTACK_CALLS and sum(hourly["high-risk"]) == ATTACK_CALLS
    assert [hourly["domestic"][h] for h in range(24)] == (
        [0] * 9 + [3, 3, 3, 4, 3, 3, 3, 3, 3] + [0] * 6
    )
    assert hourly["international"][10] == 2 and hourly["international"][11] == 1
    assert hourly["international"][14] == 2 and sum(hourly["international"]) == 5
    assert sum(hourly["other"]) == 0


def test_compared_with_previous_working_days(golden: Built) -> None:
    """A Tuesday is compared with working days: not the weekend (17th, 18th), not the Sports
    Day holiday (12th); the 9th and 8th have no CDR at all: missing, left out, not 0."""
    doc = golden.result.figures
    assert doc["period"]["kind"] == "working day" and doc["period"]["what"] == "Tuesday"
    base = doc["baseline"]
    assert base["kind"] == "working day"
    assert base["dates"] == ["2026-10-19", "2026-10-16", "2026-10-15", "2026-10-14",
                             "2026-10-13"]
    assert doc["compare_missing"] == ["2026-10-09", "2026-10-08"]
    assert base["days"] == 5 and base["total"]["calls"] == 5 * 12
    assert base["average"]["calls"] == 12.0
    assert base["average"]["international"] == 2.0
    assert base["average"]["minutes"] == round((10 * 60 + 2 * 120) / 60, 2)
    assert golden.result.summary["compared"]["calls"] == 12.0
    assert [d["date"] for d in doc["daily"]] == [
        (DAY - timedelta(days=b)).isoformat() for b in range(7, 0, -1)
    ]
    assert [d["kind"] for d in doc["daily"]][4:6] == ["weekend or holiday"] * 2
    assert not any(d["missing"] for d in doc["daily"]) and doc["missing_days"] == []


def test_first_time_countries_against_thirty_days(golden: Built) -> None:
    regions = [c["region"] for c in golden.result.figures["first_time_countries"]]
    assert regions == ["SL", "FR"]  # US called every day, France only 40 days ago


def test_top_countries_and_sources(golden: Built) -> None:
    doc = golden.result.figures
    top = [(c["region"], c["calls"], c["high_risk"]) for c in doc["top_countries"]]
    assert top == [("SL", 12, 12), ("US", 4, 0), ("FR", 1, 0)]
    assert doc["top_countries"][0]["spend"] == 6.0
    first = doc["top_sources"][0]
    assert (first["source"], first["calls"], first["high_risk"]) == (ATTACK_SOURCE, 12, 12)


def test_the_attack_is_an_incident_alerted_live(golden: Built) -> None:
    incs = golden.result.figures["incidents"]
    assert len(incs) == 1
    inc = incs[0]
    assert inc["severity"] == "critical" and inc["source"] == ATTACK_SOURCE
    assert inc["calls"] == ATTACK_CALLS
    assert inc["first_call_at"] == "2026-10-20T03:00:00+09:00"
    assert "high_risk_destination" in inc["rules"]
    assert inc["live"] == "alerted"
    assert inc["live_ids"] == ["pbx:209:live"]
    assert inc["block"] == "blocked"
    assert inc["blocked"] == "the whole of Sierra Leone (+232)"
    rec = golden.result.figures["reconciliation"]
    assert rec["available"] and rec["unseen"] == [] and rec["live_only"] == []
    assert golden.result.summary["not_alerted_live"] == 0
    assert golden.result.summary["critical"] == 1
    text = summary_text(golden.result.summary)
    assert "2026-10-20 (Tuesday): 45 outbound calls (avg of the 5 previous working days: 12)" \
        in text and "1 critical" in text
    assert ("CRITICAL: ext 209 → Sierra Leone (+232), 12 calls, ≈ 6.00 JPY, 03:00–03:00, "
            "blocked") in text
    assert "first-time countries: SL, FR" in text


def test_flagged_csv_rows(golden: Built) -> None:
    with golden.result.flagged_csv.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == ATTACK_CALLS
    incident = golden.result.figures["incidents"][0]["id"]
    for i, row in enumerate(rows):
        assert row["source"] == ATTACK_SOURCE
        assert row["dialed"] == f"01023276543{i:02d}"
        assert row["e164"] == f"+23276543{i:02d}"
        assert row["region"] == "SL" and row["high_risk"] == "True"
        assert row["start"] == f"2026-10-20T03:00:{5 * i:02d}+09:00"
        assert row["billsec"] == "20" and row["spend"] == "0.5"
        assert row["incident_id"] == incident and row["severity"] == "critical"
        assert row["live"] == "alerted"
        assert "high-risk" in row["reasons"]
        assert "outside business hours" in row["off_hours"]
    assert golden.result.figures["flagged_calls"] == ATTACK_CALLS


def test_malformed_rows_are_counted_and_shown(golden: Built) -> None:
    mal = golden.result.figures["malformed"]
    assert mal["rows"] == 2
    problems = [p for _, p in mal["examples"]]
    assert "bad start time '2026-13-45 99:00'" in problems
    assert golden.result.summary["malformed_rows"] == 2
    assert mal["by_file"] == {str(golden.path): 2}
    assert mal["replaced_bytes"] == 0
    html = golden.result.html.read_text(encoding="utf-8")
    assert "rows skipped" in html and "No bytes needed replacing" in html


@pytest.mark.slow
def test_replaced_bytes_are_shown_and_their_rows_counted(tmp_path: Path) -> None:
    cdr = traffic()
    cdr.bad_lines = []
    path = cdr.write(tmp_path / "Master.csv")
    data = path.read_bytes().replace(b"Desk 240", b"Desk \xe6\x97", 1)  # a name cut mid-char
    path.write_bytes(data)
    result = build_report(site(), [path], DAY, tmp_path / "out", None)
    mal = result.figures["malformed"]
    assert (mal["rows"], mal["replaced_bytes"], mal["replaced_by_file"]) == (0, 2, {str(path): 2})
    assert "2 byte(s) that are not UTF-8" in result.html.read_text(encoding="utf-8")
    clean = build_report(site(), [cdr.write(tmp_path / "clean.csv")], DAY, tmp_path / "o2", None)
    assert result.figures["totals"] == clean.figures["totals"]  # the row with it still counts


def test_outputs_in_a_dated_folder_and_old_ones_pruned(golden: Built) -> None:
    r = golden.result
    out = r.folder.parent
    assert r.folder == out / "2026-10-20"
    for p in (r.html, r.flagged_csv, r.figures_json, r.chart_png):
        assert p.is_file() and p.parent == r.folder
    assert json.loads(r.figures_json.read_text(encoding="utf-8"))["totals"]["calls"] == 45
    assert r.pruned == [out / (DAY - timedelta(days=100)).isoformat()]
    assert (out / "notes").is_dir()  # not a report folder: left alone
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp folder left


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.imgs: list[str] = []
        self.tags: list[str] = []
        self.meta: list[dict[str, str | None]] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag == "meta":
            self.meta.append(a)
        if tag in ("link", "script") or (a.get("src") or "").startswith("http"):
            self.external.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_parses_and_shows_the_figures(golden: Built) -> None:
    page = _Page()
    page.feed(golden.result.html.read_text(encoding="utf-8"))
    page.close()
    text = " ".join(page.text)
    for needle in ("45", "Sierra Leone", "critical", "France", "alerted",
                   "blocked: the whole of Sierra Leone (+232)",
                   "every flagged call was alerted on by the live monitor",
                   "2 malformed CDR row(s)", "6.00 JPY", "12.00",
                   "talk time", "39:30"):  # 39.5 minutes, for people
        assert needle in text, needle
    assert any(m.get("name") == "viewport" for m in page.meta)
    assert page.external == []
    assert len(page.imgs) == 2 and all(s.startswith("data:image/png;base64,") for s in page.imgs)


def test_talk_time_for_people() -> None:
    from tollwatch.report.htmlkit import talk

    assert [talk(None), talk(1.2), talk(39.5), talk(59.999), talk(1234.4)] == [
        "–", "1:12", "39:30", "60:00", "1,234 min"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_charts_are_valid_pngs_of_sane_size(golden: Built) -> None:
    import base64

    page = _Page()
    page.feed(golden.result.html.read_text(encoding="utf-8"))
    images = [base64.b64decode(s.split(",", 1)[1]) for s in page.imgs]
    images.append(golden.result.chart_png.read_bytes())
    for png in images:
        w, h = _png_size(png)
        assert 300 <= w <= 2000 and 150 <= h <= 1200, (w, h)


# ---- reconciliation variants --------------------------------------------------------------
def test_reconciliation_lists_calls_the_live_monitor_missed(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    cdr = traffic()
    half = [cdr.call_id(r) for r in attack_rows(cdr)[:6]]
    other = live_view(cdr, ["nope"])
    other["id"], other["source"], other["sources"] = "pbx:999:live", "999", ["999"]
    store.save_incident("pbx", other, is_open=False)  # another source: matches nothing here
    sixth = attack_rows(cdr)[5].start.replace(tzinfo=TZ).isoformat()  # 03:00:25
    store.save_incident("pbx", {**live_view(cdr, half), "last_call_at": sixth}, is_open=False)
    try:
        b = build(tmp_path, store, cdr)
    finally:
        store.close()
    rec = b.result.figures["reconciliation"]
    # 6 calls by id; 2 more within 10 s of the live incident's span (same source).
    assert rec["available"] and len(rec["unseen"]) == 12 - 6 - 2
    assert [u["start"][17:19] for u in rec["unseen"]] == ["40", "45", "50", "55"]
    assert {u["live"] for u in rec["unseen"]} == {"NOT alerted"}
    assert rec["live_only"] == ["pbx:999:live"]
    assert b.result.figures["incidents"][0]["live"] == "alerted"
    assert b.result.summary["not_alerted_live"] == 4


def test_reconciliation_with_an_empty_store(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite3")
    try:
        b = build(tmp_path, store)
    finally:
        store.close()
    rec = b.result.figures["reconciliation"]
    assert len(rec["unseen"]) == ATTACK_CALLS
    assert b.result.figures["incidents"][0]["live"] == "NOT alerted"
    assert "12 flagged call(s) were NOT alerted" in b.result.html.read_text(encoding="utf-8")


def test_reconciliation_without_a_store(tmp_path: Path) -> None:
    b = build(tmp_path, None)
    rec = b.result.figures["reconciliation"]
    assert rec["available"] is False and rec["note"] == "live monitor state not available"
    assert b.result.summary["not_alerted_live"] is None
    assert "live monitor state not available" in b.result.html.read_text(encoding="utf-8")


# ---- other periods ------------------------------------------------------------------------
def test_a_day_without_calls(tmp_path: Path) -> None:
    b = build(tmp_path, None, day=DAY + timedelta(days=5))
    doc = b.result.figures
    assert doc["no_calls"] is True and doc["totals"]["calls"] == 0
    assert doc["incidents"] == [] and doc["top_countries"] == []
    assert "No outbound calls in this period." in b.result.html.read_text(encoding="utf-8")
    _png_size(b.result.chart_png.read_bytes())
    with b.result.flagged_csv.open(encoding="utf-8") as fh:
        assert len(list(csv.reader(fh))) == 1  # header only


def test_default_is_the_previous_local_day(tmp_path: Path) -> None:
    cdr = traffic()
    path = cdr.write(tmp_path / "Master.csv")
    s = site().model_copy(update={"cdr": site().cdr.model_copy(update={"files": [path]})})
    now = datetime(2026, 10, 20, 16, 30, tzinfo=UTC)  # 01:30 on the 21st in Tokyo
    r = build_report(s, None, None, tmp_path / "out", None, now=now)
    assert r.period.day == DAY and r.figures["totals"]["calls"] == 45


def test_a_range(tmp_path: Path) -> None:
    since = datetime(2026, 10, 20, 2, 0, tzinfo=TZ)
    b = build(tmp_path, None, day=(since, since + timedelta(hours=2)))
    doc = b.result.figures
    assert b.result.folder.name == "2026-10-20"
    assert doc["period"]["day"] is None
    assert doc["totals"]["calls"] == ATTACK_CALLS and len(doc["incidents"]) == 1
    assert Period.between(
        datetime(2026, 10, 20), datetime(2026, 10, 21), TZ
    ) == Period.for_day(DAY, TZ)


def test_prune_by_folder_name(tmp_path: Path) -> None:
    for name in ("2026-01-01", "2026-01-01--2026-03-01", "2026-02-27", "x"):
        (tmp_path / name).mkdir()
    gone = prune(tmp_path, date(2026, 3, 30), keep_days=30)
    assert [p.name for p in gone] == ["2026-01-01", "2026-02-27"]
    assert folder_date("2026-01-01--2026-03-01") == date(2026, 3, 1)
    assert folder_date("notes") is None


# ---- scheduling ---------------------------------------------------------------------------
class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _scheduler(tmp: Path, clock: Clock, ran: list[date], at: time = time(6, 0)) -> ReportScheduler:
    async def run(day: date) -> None:
        ran.append(day)
        (tmp / day.isoformat()).mkdir(parents=True, exist_ok=True)

    return ReportScheduler(run, "Asia/Tokyo", tmp, at=at, clock=clock)


def test_scheduler_fires_at_the_configured_local_time(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 10, 20, 12, 0, tzinfo=UTC))  # 21:00 in Tokyo
    ran: list[date] = []
    sched = _scheduler(tmp_path, clock, ran)
    nxt = sched.next_run_time()
    assert nxt == datetime(2026, 10, 21, 6, 0, tzinfo=TZ)
    clock.now = nxt
    asyncio.run(sched.fire())
    assert ran == [DAY]  # 06:00 on the 21st reports on the 20th
    asyncio.run(sched.fire())  # a duplicate fire does nothing
    assert ran == [DAY] and sched.last_done() == DAY
    assert sched.next_run_time() == datetime(2026, 10, 22, 6, 0, tzinfo=TZ)


def test_scheduler_catches_up_once_after_downtime(tmp_path: Path) -> None:
    ran: list[date] = []
    clock = Clock(datetime(2026, 10, 20, 6, 0, tzinfo=TZ))
    sched = _scheduler(tmp_path, clock, ran)
    asyncio.run(sched.fire())
    assert ran == [DAY - timedelta(days=1)]
    # Down from 05:00 on the 21st to 09:30: the 06:00 run was missed.
    clock.now = datetime(2026, 10, 21, 9, 30, tzinfo=TZ)
    again = _scheduler(tmp_path, clock, ran)
    assert asyncio.run(again.catch_up()) == DAY
    assert asyncio.run(again.catch_up()) is None
    third = _scheduler(tmp_path, clock, ran)  # another restart the same morning
    assert asyncio.run(third.catch_up()) is None
    assert ran == [DAY - timedelta(days=1), DAY]
    # Back before 06:00: yesterday's run has not been missed; the day before was done.
    clock.now = datetime(2026, 10, 22, 5, 0, tzinfo=TZ)
    assert asyncio.run(_scheduler(tmp_path, clock, ran).catch_up()) is None
    assert ran == [DAY - timedelta(days=1), DAY]


def test_scheduler_does_not_redo_a_day_made_by_hand(tmp_path: Path) -> None:
    ran: list[date] = []
    (tmp_path / DAY.isoformat()).mkdir()
    clock = Clock(datetime(2026, 10, 21, 7, 0, tzinfo=TZ))
    assert asyncio.run(_scheduler(tmp_path, clock, ran).catch_up()) is None
    assert ran == []


@pytest.mark.slow
def test_scheduler_runs_the_job_through_apscheduler(tmp_path: Path) -> None:
    ran: list[date] = []

    async def main() -> ReportScheduler:
        real = datetime.now(TZ).replace(microsecond=0) + timedelta(seconds=2)
        clock = Clock(real)
        sched = _scheduler(tmp_path, clock, ran, at=real.time())
        sched.start(catch_up=False)
        assert sched.scheduled_at() == real
        for _ in range(50):
            if ran:
                break
            await asyncio.sleep(0.1)
        await sched.stop()
        return sched

    sched = asyncio.run(main())
    local = sched.clock().astimezone(TZ)
    assert ran == [local.date() - timedelta(days=1)]

"""`build_report`: one pass over the CDRs, the engine over the kept calls, then the files."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tollwatch.alerting.remediation.store import FILENAME as BLOCKS_FILE
from tollwatch.alerting.remediation.store import BlockStore
from tollwatch.alerting.textsafe import csv_cell
from tollwatch.cdr_ingest import IngestError
from tollwatch.cdr_ingest.database import CdrDatabase
from tollwatch.config import Settings
from tollwatch.report.coverage import day_range, days_in_words, file_span
from tollwatch.report.figures import KINDS, Country, Figures, Totals, collect
from tollwatch.report.flagged import FlaggedCall, flagged_calls, period_incidents
from tollwatch.report.html import render
from tollwatch.report.likedays import compare, daily_rows, day_kind, per_day
from tollwatch.report.period import Period, previous_day
from tollwatch.report.reconcile import UNKNOWN, reconcile
from tollwatch.report.summary import summarize
from tollwatch.report.words import sort_views
from tollwatch.report_format import incident_dict
from tollwatch.rules.calendar import BusinessCalendar
from tollwatch.rules.destinations import Classifier
from tollwatch.rules.validity import check_numbers
from tollwatch.state import StateStore

HTML_NAME, CSV_NAME, JSON_NAME = "report.html", "flagged.csv", "figures.json"
HOURLY_PNG, DAILY_PNG = "calls-per-hour.png", "calls-per-day.png"
TOP = 10
COMPARE_DAYS = 7
FIRST_TIME_DAYS = 30

CSV_FIELDS = (
    "start", "call_id", "source", "account", "dialed", "e164", "destination", "region",
    "dest_class", "high_risk", "answered", "billsec", "spend", "off_hours", "incident_id",
    "severity", "live", "reasons",
)


@dataclass
class ReportResult:
    period: Period
    folder: Path
    html: Path
    flagged_csv: Path
    figures_json: Path
    chart_png: Path  # calls per hour by class
    summary: dict[str, Any]  # compact, for a Slack message
    figures: dict[str, Any] = field(repr=False)  # the content of figures.json
    pruned: list[Path] = field(default_factory=list)


def build_report(
    settings: Settings,
    files: Sequence[Path] | None,
    day_or_range: date | tuple[datetime, datetime] | None,
    out_dir: Path,
    store: StateStore | None,
    *,
    keep_days: int | None = None,
    now: datetime | None = None,
    database: CdrDatabase | None = None,
) -> ReportResult:
    """Write `<out_dir>/<label>/{report.html, flagged.csv, figures.json, *.png}`.

    `day_or_range`: a local date, a (since, until) pair (naive times are site time), or None
    for the previous calendar day (site time zone) before `now`. `files` None or empty: the
    settings' `cdr.files`. `keep_days`: remove dated report folders older than this many days
    before the report's day (None: keep all). A file that cannot be read (missing, truncated gzip,
    permission denied, a directory) is named in the report ("unreadable_files") and the others
    are read; IngestError when nothing could be read at all (every file named, no row read).
    """
    tz = ZoneInfo(settings.site.timezone)
    now = now or datetime.now(UTC)
    period = _period(day_or_range, tz, now)
    paths = [Path(f) for f in (files or settings.cdr.files)]
    if database is None and not paths and settings.cdr.database:
        from tollwatch.dbsource import settings_database

        database = settings_database(settings)
    classifier = Classifier(settings)
    calendar = BusinessCalendar(settings)
    figs = collect(
        paths, settings, period, classifier, calendar,
        history=timedelta(days=FIRST_TIME_DAYS), database=database,
    )
    if paths and len(figs.unreadable) >= len(paths) and not (figs.last_seen or figs.malformed):
        raise IngestError("; ".join(figs.unreadable))  # nothing could be read at all
    coverage = None if (figs.totals.calls and figs.last_seen) or database is not None or not \
        paths else file_span(paths, settings)
    validity = check_numbers(settings, sorted(figs.numbers), classifier=classifier)
    incidents = period_incidents(settings, figs, classifier)
    flagged = flagged_calls(figs, incidents, calendar)
    blocks = _block_store(store)
    try:
        rec = reconcile(flagged, incidents, store, period, blocks)
    finally:
        if blocks is not None:
            blocks.close()

    views = []
    for inc in incidents:
        view = incident_dict(inc, tz)
        status = rec.incidents.get(inc.id)
        view["live"] = status.live if status else ""
        view["live_ids"] = status.live_ids if status else []
        view["blocked"] = status.blocked if status else None  # what, in words
        view["block"] = status.block if status else UNKNOWN  # blocked / WOULD BLOCK / not
        from_cdrs = sum(figs.refused.get(str(src), 0)
                        for src in view.get("sources") or [view.get("source")])
        view["attempts_refused"] = max(status.refused if status else 0, from_cdrs)
        view.setdefault("currency", settings.rates.currency)
        views.append(view)
    read: list[Path | str] = [database.shown] if database is not None else list(paths)
    doc = _document(settings, period, figs, calendar, sort_views(views), flagged, rec_dict(rec),
                    read, now)
    doc["coverage_note"] = coverage.note(period) if coverage is not None else None
    if doc["coverage_note"] is None and doc["missing_days"] and figs.cdr_days:
        doc["coverage_note"] = (
            "no CDR row at all on " + days_in_words(doc["missing_days"]) + ": missing data, not a "
            "quiet day (was the PBX, its CDR logging or the file copy down?)")
    doc["validity"] = validity.warning(settings)
    doc["timezone_label"] = settings.site.zone_label

    from tollwatch.report import charts  # matplotlib: only when a report is drawn (~0.7 s)

    png_hourly = charts.hourly_chart(
        figs.hourly, f"Outbound calls per hour — {period.label}"
    )
    png_daily = charts.daily_chart(_daily_series(figs), "Outbound calls per day (× = no CDRs)")
    folder = out_dir / period.label
    tmp = Path(tempfile.mkdtemp(prefix=f".{period.label}.", dir=_ensure(out_dir)))
    try:
        (tmp / HOURLY_PNG).write_bytes(png_hourly)
        (tmp / DAILY_PNG).write_bytes(png_daily)
        (tmp / JSON_NAME).write_text(
            json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _write_csv(tmp / CSV_NAME, flagged, tz)
        page = render(doc, {
            f"Outbound calls per hour by class, {period.label}": png_hourly,
            "Outbound calls per day (× = no CDRs)": png_daily,
        })
        (tmp / HTML_NAME).write_text(page, encoding="utf-8")
        os.chmod(tmp, 0o755)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)  # the folder appears complete, or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pruned = prune(out_dir, period.last_date, keep_days) if keep_days is not None else []
    summary = summarize(doc, folder / HTML_NAME)
    return ReportResult(
        period=period,
        folder=folder,
        html=folder / HTML_NAME,
        flagged_csv=folder / CSV_NAME,
        figures_json=folder / JSON_NAME,
        chart_png=folder / HOURLY_PNG,
        summary=summary,
        figures=doc,
        pruned=pruned,
    )


def _block_store(store: StateStore | None) -> BlockStore | None:
    """The daemon's block records beside its state file, when there are any."""
    if store is None:
        return None
    path = Path(store.path).parent / BLOCKS_FILE
    return BlockStore(path) if path.is_file() else None


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _period(
    day_or_range: date | tuple[datetime, datetime] | None, tz: ZoneInfo, now: datetime
) -> Period:
    if day_or_range is None:
        return Period.for_day(previous_day(now, tz), tz)
    if isinstance(day_or_range, tuple):
        return Period.between(day_or_range[0], day_or_range[1], tz)
    if isinstance(day_or_range, datetime):
        raise TypeError("pass a date, or a (since, until) pair")
    return Period.for_day(day_or_range, tz)


def _country(c: Country) -> dict[str, Any]:
    d = asdict(c)
    d["minutes"] = round(c.minutes, 2)
    d["spend"] = round(c.spend, 2) if c.spend else None
    return d


def _flagged_dict(fc: FlaggedCall, tz: ZoneInfo) -> dict[str, Any]:
    d = asdict(fc)
    d["start"] = fc.start.astimezone(tz).isoformat()
    return d


def rec_dict(rec: Any) -> dict[str, Any]:
    return {
        "available": rec.available,
        "note": rec.note,
        "live_incidents": rec.live_incidents,
        "unseen": rec.unseen,  # FlaggedCall objects; converted in _document
        "live_only": [str(v.get("id")) for v in rec.live_only],
    }


def _document(
    settings: Settings,
    period: Period,
    figs: Figures,
    calendar: BusinessCalendar,
    incidents: list[dict[str, Any]],
    flagged: list[FlaggedCall],
    rec: dict[str, Any],
    paths: list[Path | str],
    now: datetime,
) -> dict[str, Any]:
    tz = period.tz
    like = compare(figs, calendar)
    kind, what = day_kind(calendar, period.first_date)
    rec = dict(rec)
    rec["unseen"] = [_flagged_dict(fc, tz) for fc in rec["unseen"]]
    countries = sorted(figs.countries.values(), key=lambda c: (-c.calls, -c.minutes, c.region))
    sources = sorted(figs.sources.values(), key=lambda s: (-s.international, -s.calls, s.source))
    totals = figs.totals.as_dict()
    return {
        "site": settings.site.name,
        "period": {
            "label": period.label,
            "title": period.title,
            "day": period.day.isoformat() if period.day else None,
            "start": period.start.astimezone(tz).isoformat(),
            "end": period.end.astimezone(tz).isoformat(),
            "timezone": str(tz),
            "days": round(period.days, 4),
            "kind": kind if period.day else None,  # working day / weekend or holiday
            "what": what if period.day else None,  # "Saturday", "public holiday (...)"
        },
        "generated_at": now.astimezone(tz).isoformat(timespec="seconds"),
        "currency": settings.rates.currency,
        "no_calls": figs.totals.calls == 0,
        "totals": totals,
        "per_day": per_day(figs.totals, period.days) if period.day is None else None,
        "baseline": {**like.as_dict(), "words": like.words()} if like.days else None,
        "compare_missing": [d.isoformat() for d in like.missing],
        "refused": {"attempts": sum(figs.refused.values()),
                    "by_source": dict(sorted(figs.refused.items())),
                    "by_block": dict(sorted(figs.refused_by_block.items()))},
        "missing_days": [d.isoformat() for d in day_range(period.first_date, period.last_date)
                         if d not in figs.cdr_days],
        "incidents": incidents,
        "flagged_calls": len(flagged),
        "top_countries": [_country(c) for c in countries[:TOP]],
        "top_sources": [
            {**asdict(s), "minutes": round(s.minutes, 2),
             "spend": round(s.spend, 2) if s.spend else None}
            for s in sources[:TOP]
        ],
        "first_time_countries": [_country(c) for c in figs.first_time_countries()],
        "first_time_window_days": FIRST_TIME_DAYS,
        "hourly": {k: [figs.hourly.get((h, k), 0) for h in range(24)] for k in KINDS},
        "daily": daily_rows(figs, calendar, COMPARE_DAYS),
        "reconciliation": rec,
        "malformed": {"rows": figs.malformed, "examples": [list(p) for p in figs.problems],
                      "by_file": dict(sorted(figs.malformed_by_file.items())),
                      "replaced_bytes": figs.replaced,
                      "replaced_by_file": dict(sorted(figs.replaced_by_file.items())),
                      "unreadable_files": list(figs.unreadable)},
        "files": [str(p) for p in paths],
    }


def _daily_series(figs: Figures) -> list[tuple[date, int | None, int | None]]:
    """Calls and international calls per day; None for a day with no CDR row (missing)."""
    p = figs.period
    out: list[tuple[date, int | None, int | None]] = []
    for d in day_range(p.first_date - timedelta(days=COMPARE_DAYS), p.last_date):
        if d not in figs.cdr_days:
            out.append((d, None, None))
            continue
        t = figs.daily.get(d, Totals())
        out.append((d, t.calls, t.international))
    return out


_OURS = ("e164",)  # "+232…" is ours (normalized digits); every other text cell may be input


def _write_csv(path: Path, flagged: list[FlaggedCall], tz: ZoneInfo) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for fc in flagged:
            row = _flagged_dict(fc, tz)
            row["reasons"] = "; ".join(fc.reasons)
            row["off_hours"] = fc.off_hours or ""
            row["spend"] = "" if fc.spend is None else fc.spend
            writer.writerow({k: csv_cell(v) if isinstance(v, str) and k not in _OURS else v
                             for k, v in row.items()})


def prune(out_dir: Path, today: date, keep_days: int) -> list[Path]:
    """Remove report folders (named YYYY-MM-DD or YYYY-MM-DD--YYYY-MM-DD) whose last day is
    more than `keep_days` before `today`. Other files and folders are left alone."""
    removed: list[Path] = []
    if not out_dir.is_dir():
        return removed
    limit = today - timedelta(days=keep_days)
    for child in out_dir.iterdir():
        if not child.is_dir():
            continue
        last = folder_date(child.name)
        if last is not None and last < limit:
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return sorted(removed)


def folder_date(name: str) -> date | None:
    """The last date a report folder covers, from its name; None if it is not one."""
    part = name.rpartition("--")[2]
    if len(part) != 10:
        return None
    try:
        return date.fromisoformat(part)
    except ValueError:
        return None

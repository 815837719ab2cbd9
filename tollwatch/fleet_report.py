"""The nightly report for a fleet: each PBX's report as one task, then one fleet summary.

Each PBX's report is the single-site `build_report` on its own settings, written to
OUT/<pbx>/<period>/ (its day in its own time zone). The fleet summary goes to
OUT/fleet/<period>/ (`index.html` linking every PBX's report, `fleet.json`) and, when the
shared (top-level) `[slack]` is enabled, is posted as one message.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from html import escape
from pathlib import Path
from typing import Any

from tollwatch.config import Settings
from tollwatch.config.fleet import Fleet
from tollwatch.fleet_exec import PbxError, run_tasks, worker_name
from tollwatch.fleet_scan import expand_files
from tollwatch.report.build import build_report

Span = date | tuple[datetime, datetime] | None
SUMS = ("calls", "international", "high_risk", "off_hours_international", "incidents",
        "critical")


def report_pbx(
    pbx: str, settings: Settings, span: Span, out_dir: Path, keep_days: int | None
) -> dict[str, Any]:
    """One PBX's report (its `[cdr] files`, globs expanded, or its `[cdr] database` table when
    it has no files); its summary."""
    files, missing = expand_files(list(settings.cdr.files))
    database = None
    if not settings.cdr.files and settings.cdr.database:
        from tollwatch.dbsource import settings_database

        database = settings_database(settings)
    elif not files:
        raise PbxError("; ".join(missing) or "no CDR files ([cdr] files)")
    result = build_report(settings, files, span, out_dir / pbx, None, keep_days=keep_days,
                          database=database)
    return {"pbx": pbx, **result.summary, "folder": str(result.folder),
            "problems": missing + list(result.summary.get("unreadable_files") or []),
            "worker": worker_name()}


@dataclass
class FleetReport:
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    folder: Path | None = None
    text: str = ""
    seconds: float = 0.0


def run_fleet_report(
    fleet: Fleet,
    span: Span,
    out_dir: Path,
    *,
    keep_days: int | None = 90,
    workers: int = 2,
    scheduler: str | None = None,
    progress: Callable[[str, dict[str, Any] | None, str | None], None] | None = None,
) -> FleetReport:
    """Every PBX's report (PBXes with bad settings are failed), then the fleet summary."""
    started = time.perf_counter()
    report = FleetReport()
    for name, errors in fleet.errors.items():
        report.failed[name] = "; ".join(errors)

    def done(name: str, summary: Any, error: str | None, running: int) -> None:
        if summary is not None:
            report.summaries[name] = summary
        else:
            report.failed[name] = error or "failed"
        if progress is not None:
            progress(name, summary, error)

    tasks = [(name, report_pbx, (name, fleet.settings[name], span, out_dir, keep_days))
             for name in fleet.order if name in fleet.settings]
    run_tasks(tasks, done, workers=workers, scheduler=scheduler, label="tollwatch-report")
    report.folder, report.text = write_summary(out_dir, fleet.order, report)
    report.seconds = time.perf_counter() - started
    return report


def _label(report: FleetReport) -> str:
    periods = Counter(str(s["period"]) for s in report.summaries.values())
    return periods.most_common(1)[0][0] if periods else date.today().isoformat()


def summary_text(order: list[str], report: FleetReport, label: str) -> str:
    s = report.summaries
    total = {k: sum(int(v.get(k) or 0) for v in s.values()) for k in SUMS}
    lines = [
        f"tollwatch fleet report {label}: {len(s)}/{len(order)} PBXes, {total['calls']} "
        f"outbound calls, {total['international']} international, {total['high_risk']} "
        f"high-risk, {total['off_hours_international']} international off hours",
        f"{total['incidents']} incident(s), {total['critical']} critical",
    ]
    hot = [n for n in order if n in s and s[n].get("incidents")]
    for name in hot[:20]:
        v = s[name]
        lines.append(f"• {name}: {v['incidents']} incident(s), {v['critical']} critical")
    if len(hot) > 20:
        lines.append(f"… and {len(hot) - 20} more PBXes with incidents")
    if report.failed:
        lines.append(f"{len(report.failed)} PBX(es) without a report: "
                     + ", ".join(sorted(report.failed)))
    return "\n".join(lines)


def write_summary(out_dir: Path, order: list[str], report: FleetReport) -> tuple[Path, str]:
    """OUT/fleet/<period>/index.html and fleet.json; returns the folder and the text."""
    label = _label(report)
    folder = out_dir / "fleet" / label
    folder.mkdir(parents=True, exist_ok=True)
    text = summary_text(order, report, label)
    doc = {"period": label, "pbxes": [report.summaries[n] for n in order
                                      if n in report.summaries],
           "failed": report.failed, "text": text}
    (folder / "fleet.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
                                       encoding="utf-8")
    (folder / "index.html").write_text(_html(folder, order, report, label, text),
                                       encoding="utf-8")
    return folder, text


def _html(folder: Path, order: list[str], report: FleetReport, label: str, text: str) -> str:
    """The fleet summary page: one row per PBX, a table that stacks on a phone (htmlkit)."""
    from tollwatch.report.htmlkit import CSS, Markup, table

    head = ["pbx", "site", "period", "calls", "international", "high-risk",
            "intl. off hours", "incidents", "critical", "first-time countries"]
    rows: list[list[object]] = []
    for name in order:
        v = report.summaries.get(name)
        if v is None:
            why = report.failed.get(name, "")
            rows.append([name, Markup(f'<span class="bad">no report: {escape(why)}</span>'),
                         *["–"] * (len(head) - 2)])
            continue
        link = os.path.relpath(v["report"], folder)
        crit = int(v.get("critical") or 0)
        rows.append([
            Markup(f'<a href="{escape(link)}">{escape(name)}</a>'), str(v["site"]),
            str(v["period"]),
            *[int(v.get(k) or 0) for k in ("calls", "international", "high_risk",
                                            "off_hours_international", "incidents")],
            Markup(f'<span class="bad">{crit}</span>') if crit else 0,
            ", ".join(v.get("first_time_countries") or []),
        ])
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>tollwatch fleet report {escape(label)}</title><style>{CSS}"
        "pre{white-space:pre-wrap}</style></head><body><main>"
        f"<h1>Fleet report {escape(label)}</h1><section><pre>{escape(text)}</pre></section>"
        f"<section>{table(head, rows, {3, 4, 5, 6, 7, 8})}</section></main></body></html>\n"
    )

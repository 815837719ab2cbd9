"""Fleet scan output: every PBX's incidents (with a `pbx` field), progress and summary lines."""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console

from tollwatch import report_format
from tollwatch.alerting.textsafe import csv_cell, markup
from tollwatch.fleet_scan import FleetResult, PbxScan, Progress

FLEET_CSV_FIELDS = ("pbx", *report_format.CSV_FIELDS)


def incident_rows(result: FleetResult, order: list[str]) -> list[dict[str, Any]]:
    """Incidents of every scanned PBX in fleet order, each as data with its `pbx` first."""
    rows: list[dict[str, Any]] = []
    for name in order:
        scan = result.scans.get(name)
        if scan is None:
            continue
        zone = ZoneInfo(scan.timezone)
        rows.extend({"pbx": name, **report_format.incident_dict(inc, zone)}
                    for inc in scan.incidents)
    return rows


def to_jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FLEET_CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        for key in ("rules", "regions", "destinations", "call_ids"):
            flat[key] = " ".join(flat[key])
        flat["reasons"] = "; ".join(flat["reasons"])
        writer.writerow({k: csv_cell(v) if isinstance(v, str) else v for k, v in flat.items()})
    return out.getvalue()


def print_tables(console: Console, result: FleetResult, order: list[str]) -> None:
    """Per PBX with incidents: a heading, then the single-PBX table."""
    shown = 0
    for name in order:
        scan = result.scans.get(name)
        if scan is None or not scan.incidents:
            continue
        shown += 1
        console.print(f"[bold]pbx {markup(name)}[/bold] ({markup(scan.timezone)})")
        report_format.print_table(console, scan.incidents, ZoneInfo(scan.timezone))
    if not shown:
        console.print("[green]No incidents.[/green]")


def _pbx_line(scan: PbxScan) -> str:
    crit = sum(1 for i in scan.incidents if i.severity.label == "critical")
    s = scan.stats
    return (f"{s.rows:,} rows, {s.skipped:,} skipped, {len(scan.incidents)} incident(s) "
            f"({crit} critical) in {s.seconds:.2f}s on {markup(scan.worker)}")


def progress_line(p: Progress) -> str:
    head = f"[{p.done}/{p.total}]"
    rate = f"fleet {p.rows:,} rows, {p.rows_per_second:,.0f} rows/s, {p.elapsed:.1f}s"
    if p.pbx is None:
        return f"{head} {p.running} PBX(es) running; {rate}"
    name = markup(p.pbx)
    if p.scan is None:
        return f"{head} [red]pbx {name} FAILED[/red]: {markup(p.error or '')}"
    problems = "".join(f"\n      [red]error:[/red] {markup(f)}" for f in p.scan.stats.file_problems)
    return f"{head} pbx {name}: {_pbx_line(p.scan)}; {rate}{problems}"


def summary_line(result: FleetResult, total: int, incidents: int) -> str:
    rate = result.rows / result.seconds if result.seconds > 0 else 0.0
    failed = f", [red]{len(result.failed)} failed[/red]" if result.failed else ""
    return (f"fleet: {len(result.scans)}/{total} PBXes scanned{failed}; {result.rows:,} rows, "
            f"{incidents} incident(s) in {result.seconds:.2f}s ({rate:,.0f} rows/s)")

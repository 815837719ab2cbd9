"""Fleet scans: each PBX scanned as one task finds what scanning it alone finds."""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from typer.testing import CliRunner

from tests.conftest import ROOT
from tollwatch import report_format
from tollwatch.cli import app
from tollwatch.config import Settings
from tollwatch.config.fleet import Fleet, load_fleet
from tollwatch.fleet_output import incident_rows
from tollwatch.fleet_scan import FleetResult, expand_files, run_fleet
from tollwatch.rules.base import check_rules
from tollwatch.scan import run_scan


def alone(settings: Settings) -> tuple[list[dict[str, Any]], tuple[int, int, dict[str, int]]]:
    """The single-PBX scan of one PBX's files: its incidents as data, and its counts."""
    files, _ = expand_files(list(settings.cdr.files))
    result = run_scan(files, settings)
    zone = ZoneInfo(settings.site.timezone)
    stats = result.stats
    return ([report_format.incident_dict(i, zone) for i in result.incidents],
            (stats.rows, stats.outbound, stats.by_class))


def by_pbx(result: FleetResult, fleet: Fleet) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in result.scans}
    for row in incident_rows(result, fleet.order):
        out[row.pop("pbx")].append(row)
    return out


def assert_same_as_alone(result: FleetResult, fleet: Fleet) -> None:
    fleet_incidents = by_pbx(result, fleet)
    for name, scan in result.scans.items():
        incidents, counts = alone(fleet.settings[name])
        assert fleet_incidents[name] == incidents, name
        assert (scan.stats.rows, scan.stats.outbound, scan.stats.by_class) == counts, name


def small_fleet(tmp_path: Path, fixtures: Path) -> Path:
    """Three copies of the recorded attack under different sites, a directory given as a CDR
    file, and a PBX with bad settings."""
    for name in ("tokyo", "london", "chicago"):
        (tmp_path / name).mkdir()
        shutil.copy(fixtures / "Master-attack.csv", tmp_path / name / "Master.csv")
    (tmp_path / "broken").mkdir()
    text = """
[site]
country = "JP"
timezone = "Asia/Tokyo"

[[pbx]]
name = "tokyo"
cdr = { files = ["tokyo/Master.csv*"] }

[[pbx]]
name = "london"
site = { country = "GB", timezone = "Europe/London" }
cdr = { files = ["london/Master.csv"] }

[[pbx]]
name = "broken"
cdr = { files = ["broken"] }

[[pbx]]
name = "misconfigured"
site = { timezone = "Mars/Olympus" }
cdr = { files = ["tokyo/Master.csv"] }

[[pbx]]
name = "chicago"
site = { country = "US", timezone = "America/Chicago" }
dialplan = { access_codes = ["9"] }
cdr = { files = ["chicago/Master.csv"] }
"""
    path = tmp_path / "fleet.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow
def test_in_process_fleet_scan_reports_broken_pbxes_and_completes_the_others(
    tmp_path: Path, fixtures: Path
) -> None:
    fleet = load_fleet(small_fleet(tmp_path, fixtures), rule_checks=check_rules)
    seen: list[str] = []
    result = run_fleet(fleet, workers=0, parquet=tmp_path / "pq",
                       progress=lambda p: seen.append(f"{p.done}/{p.total} {p.pbx}"))
    assert set(result.scans) == {"tokyo", "london", "chicago"}
    assert "is a directory" in result.failed["broken"]
    assert result.failed["misconfigured"].startswith("pbx[misconfigured].site.timezone:")
    assert sorted(seen)[-1] == "5/5 tokyo" or "5/5" in " ".join(seen)
    assert_same_as_alone(result, fleet)
    # the same calls, scored under each site's own dial plan
    assert [i.severity.label for i in result.scans["tokyo"].incidents] == ["critical"]
    assert [i.severity.label for i in result.scans["london"].incidents] == []  # 010... is not
    assert result.exit_code() == 1  # abroad from London; critical wins over failures
    calls = pl.read_parquet(tmp_path / "pq" / "**" / "*.parquet", hive_partitioning=True)
    assert sorted(calls["pbx"].unique()) == ["chicago", "london", "tokyo"]
    assert calls.filter(pl.col("pbx") == "tokyo")["dest_class"].unique().to_list() == [
        "international"]
    assert calls["day"].cast(pl.String).unique().to_list() == ["2026-11-24"]
    assert calls.height == sum(s.stats.outbound for s in result.scans.values())


def test_scan_fleet_cli_jsonl_carries_the_pbx_and_exit_codes(
    tmp_path: Path, fixtures: Path
) -> None:
    path = small_fleet(tmp_path, fixtures)
    run = CliRunner().invoke(app, ["scan", "--fleet", str(path), "--workers", "0",
                                   "-f", "jsonl"])
    assert run.exit_code == 1, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(r["pbx"], r["severity"], r["source"]) for r in rows] == [
        ("tokyo", "critical", "209")]
    assert rows[0]["first_call_at"].endswith("+09:00")
    assert "error: pbx[broken]:" in run.stderr and "is a directory" in run.stderr
    assert "error: pbx[misconfigured].site.timezone:" in run.stderr
    assert "[5/5]" in run.stderr and "rows/s" in run.stderr
    csv_run = CliRunner().invoke(app, ["scan", "--fleet", str(path), "--workers", "0",
                                       "-f", "csv", "-q", "--since", "2026-11-25"])
    assert csv_run.exit_code == 2  # nothing critical that day, but two PBXes failed
    assert csv_run.stdout.splitlines() == [",".join(("pbx", *report_format.CSV_FIELDS))]
    assert "[1/5]" not in csv_run.stderr and "error: pbx[broken]" in csv_run.stderr
    bad = CliRunner().invoke(app, ["scan", "--fleet", str(path), "x.csv"])
    assert bad.exit_code == 2 and "files from its settings" in bad.stderr


def _gen_fleet() -> Any:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module("gen_fleet")
    finally:
        sys.path.remove(str(ROOT / "bench"))


@pytest.mark.dask
def test_dask_fleet_scan_of_20_pbxes_equals_each_pbx_scanned_alone(
    tmp_path: Path, fixtures: Path
) -> None:
    gen = _gen_fleet()
    path = gen.generate_traffic_fleet(tmp_path / "fleet", 20, weeks=7, calls_per_day=40,
                                      seed=7, attack_file=fixtures / "Master-attack.csv")
    text = path.read_text(encoding="utf-8")
    (tmp_path / "fleet" / "gone").mkdir()
    text += '[[pbx]]\nname = "unreadable"\ncdr = { files = ["gone"] }\n'
    text += '[[pbx]]\nname = "misconfigured"\nsite = { country = "ZZ" }\n'
    path.write_text(text, encoding="utf-8")
    fleet = load_fleet(path, rule_checks=check_rules)
    zones = {s.site.timezone for s in fleet.settings.values()}
    assert len(fleet.settings) == 20 and len(zones) >= 5
    result = run_fleet(fleet, workers=2, parquet=tmp_path / "pq")
    assert len(result.scans) == 20, result.failed
    assert set(result.failed) == {"unreadable", "misconfigured"}
    assert {s.worker for s in result.scans.values()} - {"local"}, "ran on the cluster"
    assert_same_as_alone(result, fleet)
    recorded = [i for i in result.scans["pbx000"].incidents
                if i.source == "209" and "SL" in i.regions]
    assert [i.severity.label for i in recorded] == ["critical"]
    assert sum(len(s.incidents) for s in result.scans.values()) > 20
    calls = pl.scan_parquet(tmp_path / "pq" / "**" / "*.parquet", hive_partitioning=True)
    per_pbx = dict(calls.group_by("pbx").len().collect().iter_rows())
    assert per_pbx == {n: s.stats.outbound for n, s in result.scans.items()}
    assert result.exit_code() == 1


def test_single_scan_since_until_in_the_site_zone(fixtures: Path) -> None:
    """--since/--until in the site's zone compare with UTC call times (used to crash)."""
    args = ["scan", "--country", "JP", "--tz", "Asia/Tokyo", "-f", "jsonl", "-q",
            str(fixtures / "Master-attack.csv")]
    later = CliRunner().invoke(app, [*args, "--since", "2026-11-24T13:30:20"])
    assert later.exit_code == 0, later.stderr
    assert [json.loads(x)["calls"] for x in later.stdout.splitlines()] == [7]
    before = CliRunner().invoke(app, [*args, "--until", "2026-11-24T13:30"])
    assert (before.exit_code, before.stdout) == (0, "")


def test_scan_fleet_directory_convention(tmp_path: Path, fixtures: Path) -> None:
    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        shutil.copy(fixtures / "Master-attack.csv", tmp_path / name / "Master.csv.1")
    (tmp_path / "beta" / "tollwatch.toml").write_text('[site]\ntimezone = "Europe/Paris"\n',
                                                     encoding="utf-8")
    shared = tmp_path / "shared.toml"
    shared.write_text('[site]\ncountry = "JP"\ntimezone = "UTC"\n', encoding="utf-8")
    run = CliRunner().invoke(app, ["scan", "--fleet", str(tmp_path), "--config", str(shared),
                                   "--workers", "0", "-f", "jsonl", "-q"])
    assert run.exit_code == 1, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [(r["pbx"], r["first_call_at"][-6:]) for r in rows] == [
        ("alpha", "+00:00"), ("beta", "+01:00")]

"""`tollwatch report` by hand: never removes older reports unless asked (--keep-days), and says
when the CDR files do not cover the day asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import ROOT
from tollwatch.cli import app

SAMPLE = ROOT / "samples" / "Master-attack.csv"  # 2026-11-24, 13:30 UTC


def report(tmp: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [
        "report", "--country", "JP", "--tz", "UTC", "--no-slack", "--out", str(tmp / "out"),
        "--data-dir", str(tmp / "state"), *extra, str(SAMPLE)])
    return result.exit_code, result.output


@pytest.mark.slow
def test_manual_report_keeps_old_reports_unless_asked(tmp_path: Path) -> None:
    old = tmp_path / "out" / "2025-01-01"
    old.mkdir(parents=True)
    code, out = report(tmp_path, "--date", "2026-11-24")
    assert code == 0, out
    assert old.is_dir() and (tmp_path / "out" / "2026-11-24" / "report.html").is_file()
    assert "removed old report" not in out
    code, out = report(tmp_path, "--date", "2026-11-24", "--keep-days", "30")
    assert code == 0, out
    assert not old.exists() and "removed old report" in out


def test_a_day_the_files_do_not_cover_is_said(tmp_path: Path) -> None:
    code, out = report(tmp_path, "--date", "2026-12-25")
    assert code == 0, out
    assert "the CDR files cover 2026-11-24 to 2026-11-24 only, not" in " ".join(out.split())
    page = (tmp_path / "out" / "2026-12-25" / "report.html").read_text(encoding="utf-8")
    assert "the CDR files cover 2026-11-24 to 2026-11-24 only" in page

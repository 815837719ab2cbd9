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


@pytest.mark.parametrize("args", [
    ["--date", "9999-12-31"], ["--date", "0001-01-01"],
    ["--since", "9999-12-31T23:00", "--until", "9999-12-31T23:30"],
])  # fmt: skip
def test_a_day_outside_1900_2199_is_one_line(tmp_path: Path, args: list[str]) -> None:
    """Such a day crashed with OverflowError (its local midnights, put in UTC)."""
    code, out = report(tmp_path, *args)
    assert code == 2 and "is outside the years 1900-2199" in out, out


@pytest.mark.slow
def test_a_long_range_without_data_is_said_in_runs_of_days(tmp_path: Path) -> None:
    """A range without CDRs but one day was listed day by day (a century: a 400-kB warning,
    sent to Slack too)."""
    code, out = report(tmp_path, "--since", "2026-01-01", "--until", "2027-01-01")
    assert code == 0, out
    line = " ".join(out.split())
    assert ("no CDR row at all on 2026-01-01 to 2026-11-23, 2026-11-25 to 2026-12-31: missing "
            "data") in line
    assert len(out) < 2000


def test_days_in_words() -> None:
    from tollwatch.report.coverage import days_in_words

    days = ["2026-11-01", "2026-11-03", "2026-11-04", "2026-11-05", "2026-11-09"]
    assert days_in_words(days) == "2026-11-01, 2026-11-03 to 2026-11-05, 2026-11-09"
    assert days_in_words(days, most=1) == "2026-11-01, and 4 more days"
    assert days_in_words(["2026-02-28", "2026-03-01"]) == "2026-02-28 to 2026-03-01"
    assert days_in_words([]) == ""

"""`tollwatch scan` exit codes for rows that cannot be read, --max-skipped, and a closed pipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tollwatch.cli import app

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).resolve().parent / "fixtures/cdr"
runner = CliRunner()


def with_bad_rows(tmp_path: Path) -> Path:
    """Master-calls' 5 rows, then a row cut short and a row with an impossible start time."""
    rows = (FIX / "Master-cr.csv").read_bytes().split(b"\r")
    good = [r for r in rows if r]
    cut = good[0].rsplit(b",", 3)[0]
    bad_time = good[1].replace(b"2026-11-24 13:31:15", b"2026-13-45 99:00:00", 1)
    path = tmp_path / "Master.csv"
    path.write_bytes(b"\n".join([*good, cut, bad_time]) + b"\n")
    return path


@pytest.mark.parametrize(
    ("extra", "code"),
    [([], 2), (["--max-skipped", "1"], 2), (["--max-skipped", "2"], 0),
     (["--max-skipped", "30%"], 0), (["--max-skipped", "10%"], 2)],
)  # fmt: skip
def test_unreadable_rows_exit_2_unless_tolerated(
    tmp_path: Path, extra: list[str], code: int
) -> None:
    path = with_bad_rows(tmp_path)
    result = runner.invoke(app, ["scan", "--country", "JP", "--tz", "UTC", *extra, str(path)])
    assert result.exit_code == code, result.output
    err = result.stderr
    assert err.startswith("7 rows read, 2 skipped, 5 outbound calls")
    assert f"skipped 2 row(s) in {path}" in err
    assert f"{path}:6: 15 columns, expected 18" in err
    assert f"{path}:7: bad start time '2026-13-45 99:00:00'" in err
    assert ("row(s) could not be read" in err) == (code == 2)


def test_critical_wins_over_unreadable_rows(tmp_path: Path) -> None:
    attack = (FIX / "Master-attack-cut-name.csv").read_bytes()
    path = tmp_path / "Master.csv"
    path.write_bytes(attack + b'"acme","209"\n')
    result = runner.invoke(app, ["scan", "--country", "JP", "--tz", "UTC", str(path)])
    assert result.exit_code == 1
    assert "25 rows read, 1 skipped" in result.stderr


def test_bad_max_skipped_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["scan", "--country", "JP", "--max-skipped", "lots",
                                 str(FIX / "Master-cr.csv")])  # fmt: skip
    assert result.exit_code == 2
    assert "--max-skipped: 'lots' is not a row count like 5 or a share like 0.1%" in result.stderr


def test_closed_pipe_is_not_an_error() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tollwatch", "scan", "--country", "JP", "--tz", "UTC",
         "--format", "jsonl", str(FIX / "Master-attack-cut-name.csv")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `| head -0`: the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1, err  # the attack's verdict, not a crash
    assert "Traceback" not in err and "Broken pipe" not in err
    assert "24 rows read, 0 skipped" in err

"""File-level failures in a batch scan: a truncated gzip, a directory, a file that cannot be
opened. Each is reported with its path and reason, the other files are still scanned (or
reported on, `tollwatch report`), and the exit code says so (2, or 1 when something critical
was found anyway)."""

from __future__ import annotations

import ctypes
import gzip
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tollwatch.cli import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "Master-attack.csv"
runner = CliRunner()
ARGS = ["scan", "--country", "JP", "--tz", "UTC"]


def quiet_day(rows: int = 4000) -> bytes:
    """Domestic calls only: no incident; big enough that its gzip is worth truncating."""
    lines = [
        f'"acme","201","03{5550000 + i}","from-internal","""Desk"" <201>","PJSIP/201-{i:08x}",'
        f'"PJSIP/carrier-{i:08x}","Dial","PJSIP/03{5550000 + i}@carrier,60",'
        f'"2026-11-23 09:{i % 60:02d}:00","2026-11-23 09:{i % 60:02d}:01",'
        f'"2026-11-23 09:{i % 60:02d}:31",31,30,"ANSWERED","DOCUMENTATION","1795400000.{i}",""\n'
        for i in range(rows)
    ]
    return "".join(lines).encode()


def truncated_gzip(path: Path, data: bytes) -> int:
    whole = gzip.compress(data)
    path.write_bytes(whole[: len(whole) * 2 // 3])
    return len(whole)


def test_truncated_gzip_among_good_files(tmp_path: Path) -> None:
    broken = tmp_path / "Master.csv.2.gz"
    truncated_gzip(broken, quiet_day())
    attack = tmp_path / "Master.csv"
    shutil.copy(SAMPLE, attack)
    result = runner.invoke(app, [*ARGS, str(broken), str(attack)])
    assert result.exit_code == 1, result.output  # the attack in the next file is reported
    assert "critical" in result.stdout
    assert f"{broken}: damaged gzip data" in result.stderr
    assert "Compressed file ended" in result.stderr
    # the complete rows before the damage were read, not thrown away
    read = int(result.stderr.split(" rows read")[0].split()[-1])
    assert 24 + 1000 < read < 24 + 4000


def test_truncated_gzip_alone_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "Master.csv.1.gz"
    truncated_gzip(broken, quiet_day())
    result = runner.invoke(app, [*ARGS, str(broken)])
    assert result.exit_code == 2, result.output
    assert f"{broken}: damaged gzip data" in result.stderr


def test_directory_and_missing_file_among_good_files(tmp_path: Path) -> None:
    folder = tmp_path / "cdr-archive"
    folder.mkdir()
    attack = tmp_path / "Master.csv"
    shutil.copy(SAMPLE, attack)
    missing = tmp_path / "Master.csv.9"
    result = runner.invoke(app, [*ARGS, str(folder), str(missing), str(attack), "-v"])
    assert result.exit_code == 1, result.output
    assert f"{folder}: is a directory" in result.stderr
    assert f"{missing}: no such file" in result.stderr
    assert "24 rows read" in result.stderr
    quiet = tmp_path / "quiet.csv"
    quiet.write_bytes(quiet_day(10))
    result = runner.invoke(app, [*ARGS, str(folder), str(quiet)])
    assert result.exit_code == 2 and "No incidents" in result.stdout


def _without_dac_override() -> None:
    """In the child, before exec: drop the capabilities that let root read any file, so a
    mode 000 file is really unreadable (as it would be for the tollwatch user)."""
    if os.getuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.slow
def test_permission_denied_among_good_files() -> None:
    """A file the user may not read (as root, without the capabilities that bypass modes)."""
    with tempfile.TemporaryDirectory(prefix="tw-perm-") as tmp:
        d = Path(tmp)
        os.chmod(d, 0o755)
        secret = d / "Master.csv.1"
        secret.write_bytes(quiet_day(10))
        os.chmod(secret, 0o000)
        attack = d / "Master.csv"
        shutil.copy(SAMPLE, attack)
        os.chmod(attack, 0o644)
        proc = subprocess.run(
            [sys.executable, "-m", "tollwatch", *ARGS, str(secret), str(attack)],
            capture_output=True, text=True, cwd="/", timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
            preexec_fn=_without_dac_override,
        )
        assert proc.returncode == 1, proc.stderr
        assert f"{secret}: permission denied" in proc.stderr
        assert "critical" in proc.stdout


REPORT = ["report", "--country", "JP", "--tz", "UTC", "--no-slack"]


@pytest.mark.slow
def test_report_goes_on_past_unreadable_files_like_scan(tmp_path: Path) -> None:
    broken = tmp_path / "Master.csv.2.gz"
    truncated_gzip(broken, quiet_day())
    folder = tmp_path / "cdr-archive"
    folder.mkdir()
    attack = tmp_path / "Master.csv"
    shutil.copy(SAMPLE, attack)
    out = tmp_path / "reports"
    args = [*REPORT, "--date", "2026-11-24", "--out", str(out), "--data-dir", str(tmp_path)]
    result = runner.invoke(app, [*args, str(broken), str(folder), str(attack)])
    assert result.exit_code == 1, result.output  # the attack in the readable file: critical
    assert f"{broken}: damaged gzip data" in result.stderr
    assert f"{folder}: is a directory" in result.stderr
    doc = json.loads((out / "2026-11-24" / "figures.json").read_text())
    assert doc["totals"]["calls"] == 24 and any(
        i["severity"] == "critical" for i in doc["incidents"])
    named = doc["malformed"]["unreadable_files"]
    assert len(named) == 2 and named[0].startswith(f"{broken}: damaged gzip data")
    page = (out / "2026-11-24" / "report.html").read_text()
    assert "2 CDR file(s) could not be (all) read" in page and html.escape(str(folder)) in page
    # nothing critical in what could be read: input problems alone say 2
    quiet = tmp_path / "quiet.csv"
    quiet.write_bytes(quiet_day(10))
    result = runner.invoke(app, [*REPORT, "--date", "2026-11-23", "--out", str(out),
                                 "--data-dir", str(tmp_path), str(broken), str(quiet)])
    assert result.exit_code == 2, result.output
    assert f"{broken}: damaged gzip data" in result.stderr
    result = runner.invoke(app, [*REPORT, "--date", "2026-11-23", "--out", str(out),
                                 "--data-dir", str(tmp_path), str(quiet)])
    assert result.exit_code == 0, result.output  # all input read: as before


def test_learn_goes_on_past_an_unreadable_file_and_says_so(tmp_path: Path) -> None:
    broken = tmp_path / "Master.csv.2.gz"
    truncated_gzip(broken, quiet_day())
    good = tmp_path / "Master.csv"
    shutil.copy(SAMPLE, good)
    out = tmp_path / "baseline.json"
    result = runner.invoke(app, ["learn", "--country", "JP", "--tz", "UTC", str(broken),
                                 str(good), "-o", str(out)])
    assert result.exit_code == 2, result.output  # written from the rest, input problem said
    assert f"{broken}: damaged gzip data" in result.stderr
    assert out.is_file() and "rows read" in result.stderr

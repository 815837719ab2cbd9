"""`tollwatch scan` end to end on the real Asterisk 22 recordings, and the CLI's contracts."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tollwatch.cli import app

runner = CliRunner()
JP_UTC = ["--country", "JP", "--tz", "UTC"]


def scan(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["scan", *args])
    return result.exit_code, result.stdout, result.stderr


def test_attack_is_one_critical_incident_for_209_covering_all_24_calls(fixtures: Path) -> None:
    code, out, err = scan(*JP_UTC, "--format", "jsonl", str(fixtures / "Master-attack.csv"))
    assert code == 1, err
    [line] = out.splitlines()
    inc = json.loads(line)
    assert inc["severity"] == "critical"
    assert inc["source"] == "209"
    assert inc["account"] == "acme"
    assert inc["regions"] == ["SL"]
    assert {"burst", "sequential_dialing", "high_risk_destination"} <= set(inc["rules"])
    uniqueids = [row[16] for row in csv.reader((fixtures / "Master-attack.csv").open())]
    assert sorted(inc["call_ids"]) == sorted(uniqueids)
    assert len(inc["call_ids"]) == 24
    assert inc["first_call_at"] == "2026-11-24T13:30:11+00:00"
    # critical at the 8th call (13:30:15): high risk 30 + sequential block 60 + burst 60
    assert inc["detected_at"] == "2026-11-24T13:30:15+00:00"
    assert any("block +23276543xx" in r for r in inc["reasons"])
    assert "24 rows read, 0 skipped, 24 outbound calls" in err


def test_verbose_says_how_each_file_is_read(fixtures: Path) -> None:
    code, _, err = scan(*JP_UTC, "-v", "-q", str(fixtures / "Master-calls.csv"))
    assert code == 0
    assert "Master-calls.csv: 18 columns (uniqueid+userfield)" in err


def test_normal_calls_give_nothing_critical(fixtures: Path) -> None:
    code, out, err = scan(*JP_UTC, "--format", "json", str(fixtures / "Master-calls.csv"))
    assert code == 0, err
    assert json.loads(out) == []
    assert "5 rows read, 0 skipped, 5 outbound calls (domestic 2, international 3)" in err


def test_times_are_shown_in_the_site_zone(fixtures: Path) -> None:
    code, out, _ = scan("--country", "JP", "--tz", "Asia/Tokyo", "--format", "jsonl",
                        str(fixtures / "Master-attack.csv"))
    # the file's wall clock is read as Tokyo time, and shown with its offset
    assert json.loads(out)["first_call_at"] == "2026-11-24T13:30:11+09:00"
    assert code == 1


def test_csv_and_table_formats(fixtures: Path) -> None:
    code, out, _ = scan(*JP_UTC, "--format", "csv", str(fixtures / "Master-attack.csv"))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and rows[0]["severity"] == "critical" and rows[0]["calls"] == "24"
    code, out, _ = scan(*JP_UTC, str(fixtures / "Master-attack.csv"))
    assert "critical" in out and "Sierra Leone (+232)" in out and code == 1


@pytest.mark.parametrize("width", [60, 79, 80, 100, 140])
def test_the_table_fits_the_terminal_and_keeps_dates_whole(fixtures: Path, width: int) -> None:
    """An 80-column terminal broke the first call's date inside it ("2026-11-2" / "4"); no
    width may crop the table."""
    from zoneinfo import ZoneInfo

    from rich.console import Console

    from tollwatch.report_format import print_table
    from tollwatch.scan import run_scan
    from tollwatch.settings import load, overrides

    settings = load(None, overrides(country="JP", tz="UTC"))
    incidents = run_scan([fixtures / "Master-attack.csv"], settings).incidents
    buf = io.StringIO()
    print_table(Console(file=buf, width=width, color_system=None), incidents, ZoneInfo("UTC"))
    table = buf.getvalue().split("#1 critical")[0]
    assert all(len(line) <= width for line in table.splitlines()), table
    assert "230" in table  # the score
    if width >= 80:
        assert "2026-11-24" in table


@pytest.mark.parametrize("args", [["--since", "9999-12-31T23:00"], ["--until", "0001-01-01"]])
def test_since_until_outside_1900_2199_is_one_line(fixtures: Path, args: list[str]) -> None:
    """Put in the site's zone, such a time crashed the scan with OverflowError."""
    code, _, err = scan("--country", "JP", "--tz", "America/New_York", *args,
                        str(fixtures / "Master-attack.csv"))
    assert code == 2 and "is outside the years 1900-2199" in err, err


def test_huge_fields_do_not_make_huge_lines(tmp_path: Path, fixtures: Path) -> None:
    """A dst, Dial data or time of thousands of characters was quoted whole in the summary,
    the trunk note and the invalid-numbers warning (one 10-kB line each)."""
    lines = (fixtures / "Master-attack.csv").read_text().splitlines()
    first = next(csv.reader([lines[0]]))
    first[2], first[8] = "9" * 5000, "PJSIP/" + "9" * 5000 + "@carrier,60"
    second = next(csv.reader([lines[1]]))
    second[9] = "x" * 5000
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL).writerows([first, second])
    path = tmp_path / "Master.csv"
    path.write_text(out.getvalue() + "\n".join(lines[2:]) + "\n")
    code, _, err = scan(*JP_UTC, "-f", "jsonl", str(path))
    assert code == 1 and "bad start time 'xxx" in err and "(Dial PJSIP/9999" in err
    assert max(len(line) for line in err.splitlines()) < 600, err


def test_since_until_filter(fixtures: Path) -> None:
    code, out, err = scan(*JP_UTC, "--format", "json", "--since", "2026-11-24T13:30:20",
                          str(fixtures / "Master-attack.csv"))
    [inc] = json.loads(out)
    assert inc["calls"] == 7  # the 7 calls from 13:30:20 on
    code, out, err = scan(*JP_UTC, "--format", "json", "--until", "2026-11-24",
                          str(fixtures / "Master-attack.csv"))
    assert json.loads(out) == [] and code == 0
    code, out, err = scan(*JP_UTC, "--since", "yesterday", str(fixtures / "Master-attack.csv"))
    assert code == 2 and "--since: 'yesterday' is not a date" in err


def test_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _out, err = scan(*JP_UTC, str(tmp_path / "Master.csv.9"))
    assert code == 2
    assert err.strip().splitlines() == [f"error: {tmp_path / 'Master.csv.9'}: no such file"]


def test_config_errors_exit_2_listing_all(tmp_path: Path, fixtures: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text('[site]\ncountry = "JP"\ntimezone = "Mars/Base"\n[[rules]]\nname = "burst"\n'
                   'window = "10 minutes"\n')
    code, _, err = scan("--config", str(cfg), str(fixtures / "Master-calls.csv"))
    assert code == 2
    assert f'{cfg}: rules.burst.window: "10 minutes" is not a duration like "10m"' in err
    assert "site.timezone" in err


def test_malformed_rows_are_skipped_and_reported(tmp_path: Path, fixtures: Path) -> None:
    good = (fixtures / "Master-attack.csv").read_bytes().splitlines(keepends=True)
    bad = tmp_path / "Master.csv"
    bad.write_bytes(b"".join(good[:3]) + b'"acme","209","0102327654399"\n'
                    + b"".join(good[3:10]) + b"\xff\xfe garbage line\n" + b"".join(good[10:]))
    code, out, err = scan(*JP_UTC, "--format", "jsonl", str(bad))
    assert code == 1
    assert json.loads(out)["calls"] == 24
    assert "26 rows read, 2 skipped, 24 outbound calls" in err
    assert f"skipped {bad}:4:" in err
    assert f"skipped {bad}:12:" in err


def test_classify_command() -> None:
    result = runner.invoke(app, ["classify", "--country", "US", "--access-code", "9",
                                 "918765551234", "9911", "912125551234"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "international" in lines[0] and "Jamaica (JM, +1)" in lines[0]
    assert "HIGH RISK (1-876)" in lines[0]
    assert "emergency" in lines[1]
    assert "domestic" in lines[2] and "HIGH RISK" not in lines[2]


def test_check_config_prints_effective_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text('[site]\ncountry = "US"\n[dialplan]\naccess_codes = ["9"]\n')
    result = runner.invoke(app, ["check-config", str(cfg)])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dialplan"]["international_prefixes"] == ["011"]
    assert data["dialplan"]["access_codes"] == ["9"]
    assert data["rules"]["burst"]["window"] == "10m"


def test_console_script_exit_code(fixtures: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tollwatch", "scan", *JP_UTC, "-q",
         str(fixtures / "Master-attack.csv")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "critical" in proc.stdout


def test_command_leaves_its_objects_frozen_for_a_quick_exit(fixtures: Path) -> None:
    """`main` hands what the command made to the collector's permanent generation on the
    way out (the shutdown then frees it without walking it), with the output and exit code
    as before; an exit handler registered first sees the frozen objects."""
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: sys.stderr.write(f'frozen {gc.get_freeze_count()}\\n'))\n"
        "from tollwatch.cli import main\n"
        "sys.argv = ['tollwatch', *sys.argv[1:]]\n"
        "main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "scan", *JP_UTC, "-q", "-f", "jsonl",
         str(fixtures / "Master-attack.csv")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["severity"] == "critical"
    frozen = int(proc.stderr.rsplit("frozen ", 1)[1].split()[0])
    assert frozen > 10_000, proc.stderr


@pytest.mark.slow
def test_calls_from_a_channel_with_no_endpoint_do_not_crash_the_output(
    tmp_path: Path, fixtures: Path
) -> None:
    """A calling channel without TECH/endpoint (anyone can write CDR text) has the source
    live gives it (""), never a null that the incident's sorted lists trip over."""
    rows = list(csv.reader((fixtures / "Master-attack.csv").open()))
    for row in rows[:12]:
        row[5] = "x"  # channel
    bad = tmp_path / "Master.csv"
    with bad.open("w", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL).writerows(rows)
    for fmt in ("jsonl", "table", "csv"):
        result = runner.invoke(app, ["scan", *JP_UTC, "--format", fmt, str(bad)])
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.exit_code == 1 and "209" in result.stdout, result.stderr
    incidents = [json.loads(x) for x in scan(*JP_UTC, "-f", "jsonl", str(bad))[1].splitlines()]
    assert sorted(s for i in incidents for s in i["sources"]) == ["", "209"]

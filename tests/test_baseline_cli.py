"""`tollwatch learn`, `tollwatch baseline show` and `scan --baseline` end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.test_parity import write_master
from tollwatch.cli import app

runner = CliRunner()
JP = ["--country", "JP", "--tz", "Asia/Tokyo"]


def history(path: Path, days: int = 21) -> Path:
    """Three weeks before Saturday 2026-11-28 23:30 Tokyo: UK daily, Cuba daily from two desks."""
    calls: list[dict[str, Any]] = []
    for day in range(1, days + 1):
        for k, (src, dst) in enumerate([("201", "01044201234567"), ("203", "0105358001122"),
                                        ("204", "0105358001133")]):
            calls.append({"src": src, "dst": dst, "offset": -day * 86400 - 3600 * (k + 8),
                          "ring": 3, "talk": 200, "answered": True})
    write_master(calls, path)
    return path


def test_learn_then_show_then_scan_with_the_baseline(tmp_path: Path) -> None:
    hist = history(tmp_path / "history.csv")
    out = tmp_path / "site.json"
    r = runner.invoke(app, ["learn", *JP, str(hist), "--out", str(out)])
    assert r.exit_code == 0, r.stderr
    assert "63 calls abroad learned" in r.stderr
    data = json.loads(out.read_text())
    assert data["format"] == "tollwatch-baseline" and set(data["dest_days"]) == {"GB", "CU"}

    r = runner.invoke(app, ["baseline", "show", "--file", str(out), "--sources", "5"],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.stderr
    assert "learned thresholds in use" in r.stdout
    assert "CU" in r.stdout and "yes" in r.stdout  # Cuba: routine (21 days, 2 desks)

    # Saturday night: one call to Cuba (routine) and one to Sierra Leone (never called)
    calls: list[dict[str, Any]] = [
        {"src": "203", "dst": "0105358001122", "offset": 60, "ring": 2, "talk": 60,
         "answered": True},
        {"src": "209", "dst": "0102327654300", "offset": 600, "ring": 2, "talk": 60,
         "answered": True},
    ]
    master = tmp_path / "Master.csv"
    write_master(calls, master)
    r = runner.invoke(app, ["scan", *JP, "--baseline", str(out), "-f", "jsonl", str(master)])
    assert r.exit_code == 0, r.stderr
    incidents = [json.loads(line) for line in r.stdout.splitlines()]
    assert [i["source"] for i in incidents] == ["209"]  # Cuba is routine here, not flagged
    assert any("first call to Sierra Leone" in x for x in incidents[0]["reasons"])
    # the same scan without the baseline knows nothing: Cuba at night is flagged too
    r = runner.invoke(app, ["scan", *JP, "-f", "jsonl", str(master)])
    assert sorted(json.loads(x)["source"] for x in r.stdout.splitlines()) == ["203", "209"]


def test_learn_update_adds_to_the_file(tmp_path: Path) -> None:
    out = tmp_path / "site.json"
    first = history(tmp_path / "a.csv", days=3)
    assert runner.invoke(app, ["learn", *JP, str(first), "-o", str(out)]).exit_code == 0
    days = len(json.loads(out.read_text())["days"])
    more = history(tmp_path / "b.csv", days=6)
    r = runner.invoke(app, ["learn", *JP, str(more), "-o", str(out), "--update"])
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(out.read_text())["days"]) == 6 > days


def test_bad_baseline_file_is_one_line_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    master = tmp_path / "Master.csv"
    write_master([{"src": "201", "dst": "0312345678", "offset": 0, "ring": 1, "talk": 5,
                   "answered": True}], master)
    r = runner.invoke(app, ["scan", *JP, "--baseline", str(bad), str(master)])
    assert r.exit_code == 2
    assert str(bad) in r.stderr and "not a baseline file" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = runner.invoke(app, ["baseline", "show", "--file", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "cannot read the baseline" in r.stderr
    r = runner.invoke(app, ["baseline", "show", "--data-dir", str(tmp_path)])
    assert r.exit_code == 2 and "no daemon state" in r.stderr


_GOOD = {"format": "tollwatch-baseline", "version": 1, "site": "pbx",
         "first_day": "2026-11-24", "last_day": "2026-11-24",
         "days": {"2026-11-24": {"kind": 1, "intl": {"162": 24}, "novel": {}, "conc": {"13": 6}}},
         "dest_days": {"SL": ["2026-11-24"]},
         "dest_sources": {"SL": {"209": [None, "2026-11-24"]}},
         "src_dests": {"209": {"SL": [None, "2026-11-24"]}},
         "src_hours": {"209": {"13": ["2026-11-24"]}}, "up": []}
_DAY = _GOOD["days"]["2026-11-24"]  # type: ignore[index]


@pytest.mark.parametrize("change,why", [
    ({"days": {"2026-11-24": {**_DAY, "kind": 9}}}, "slot '9' is not one of 0-6"),
    ({"days": {"2026-11-24": {**_DAY, "intl": {"99999": 5}}}}, "slot '99999' is not one of"),
    ({"days": {"2026-11-24": {**_DAY, "intl": {"162": -5}}}}, "-5 is not a count of calls"),
    ({"days": {"2026-11-24": {**_DAY, "intl": {"162": 1e308}}}}, "is not a count of calls"),
    ({"first_day": "0001-01-01"}, "day '0001-01-01' is outside the years 1900-2199"),
    ({"days": {"9999-12-31": _DAY}}, "day '9999-12-31' is outside the years 1900-2199"),
    ({"src_hours": {"209": {"99": ["2026-11-24"]}}}, "slot '99' is not one of 0-23"),
    ({"src_dests": {"209": {"SL": ["2026-11-24"]}}}, "is not [day before, last day]"),
    ({"days": []}, "has no attribute"),
    ({"dest_days": None}, "has no attribute"),
])  # fmt: skip
def test_a_baseline_file_out_of_shape_is_refused_naming_why(
    tmp_path: Path, change: dict[str, Any], why: str
) -> None:
    """Each of these was taken (a crash later: IndexError at load, OverflowError at the first
    day roll, a threshold of 1e308) or crashed the command; the daemon logs the same message
    and learns afresh."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**_GOOD, **change}))
    master = tmp_path / "Master.csv"
    write_master([{"src": "201", "dst": "0312345678", "offset": 0, "ring": 1, "talk": 5,
                   "answered": True}], master)
    r = runner.invoke(app, ["scan", *JP, "--baseline", str(bad), str(master)])
    assert r.exit_code == 2, r.output
    assert str(bad) in r.stderr and why in r.stderr, r.stderr
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_GOOD))
    assert runner.invoke(app, ["scan", *JP, "--baseline", str(good), str(master)]).exit_code == 0


def test_show_reads_the_daemons_live_baseline(tmp_path: Path) -> None:
    from tollwatch.rules.baseline_io import dumps, load_file
    from tollwatch.settings import load, overrides
    from tollwatch.state import StateStore

    out = tmp_path / "site.json"
    hist = history(tmp_path / "history.csv")
    assert runner.invoke(app, ["learn", *JP, str(hist), "-o", str(out)]).exit_code == 0
    learned = load_file(out, load(None, overrides("JP", "Asia/Tokyo")))
    StateStore.in_dir(tmp_path).save_baseline("tokyo-pbx", dumps(learned))
    r = runner.invoke(app, ["baseline", "show", "--data-dir", str(tmp_path)],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.stderr
    assert "pbx tokyo-pbx" in r.stdout and "CU" in r.stdout
    r = runner.invoke(app, ["baseline", "show", "--data-dir", str(tmp_path), "--pbx", "osaka"])
    assert r.exit_code == 2 and "no baseline for pbx 'osaka'" in r.stderr

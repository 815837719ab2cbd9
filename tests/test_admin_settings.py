"""Settings that never fail silently: host zone, number validity, default config path,
check-config listing every error (scores, holidays, emergency numbers, secrets), overnight
hours."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from tests.helpers import settings
from tollwatch.cli import app
from tollwatch.config import ConfigError, load_settings
from tollwatch.config import load as config_load
from tollwatch.rules.calendar import BusinessCalendar
from tollwatch.rules.validity import check_numbers

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "Master-attack.csv"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_host_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TOLLWATCH_CONFIG", raising=False)
    monkeypatch.setattr(config_load, "DEFAULT_PATH", tmp_path / "absent.toml")


def write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ---- time zone ---------------------------------------------------------------------------------
def test_zone_defaults_to_the_hosts_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_load, "host_zone", lambda: "Asia/Tokyo")
    s = load_settings(None, {"site": {"country": "JP"}})
    assert s.site.timezone == "Asia/Tokyo"
    assert s.site.zone_label == "Asia/Tokyo (the host's zone; set site.timezone or --tz)"
    given = load_settings(None, {"site": {"country": "JP", "timezone": "Europe/Paris"}})
    assert given.site.zone_label == "Europe/Paris"
    res = runner.invoke(app, ["scan", "--country", "JP", str(SAMPLE), "-f", "json"])
    assert res.exit_code == 1
    assert '"first_call_at": "2026-11-24T13:30:11+09:00"' in res.stdout  # read as host time
    assert "times in Asia/Tokyo (the host's zone" in res.stderr


def test_a_fleet_must_state_its_zone() -> None:
    fleet = {"site": {"country": "JP"}, "csv_sources": [
        {"name": "a", "path": "/tmp/a.csv"}, {"name": "b", "path": "/tmp/b.csv"}]}
    with pytest.raises(ConfigError) as exc:
        load_settings(None, fleet)
    assert any(e.startswith("site.timezone: required when several PBXes") for e in
               exc.value.errors)
    fleet["site"]["timezone"] = "Asia/Tokyo"  # type: ignore[index]
    assert load_settings(None, fleet).site.timezone == "Asia/Tokyo"


# ---- number validity ---------------------------------------------------------------------------
def test_classify_shows_invalid_numbers() -> None:
    res = runner.invoke(app, ["classify", "--country", "JP", "0010232765430", "0312345678"])
    lines = res.stdout.splitlines()
    assert "domestic" in lines[0] and "invalid" in lines[0]  # the access code is missing
    assert "invalid" not in lines[1]
    res = runner.invoke(app, ["classify", "--country", "JP", "--access-code", "0",
                              "0010232765430"])
    assert "international" in res.stdout and "Sierra Leone" in res.stdout


def test_scan_with_the_wrong_country_warns_and_names_the_fix() -> None:
    res = runner.invoke(app, ["scan", "--country", "US", "--tz", "UTC", str(SAMPLE)])
    assert "No incidents." in res.stdout
    assert ("warning: 24 of 24 distinct outbound numbers (100%) are not valid numbers under "
            "country US") in res.stderr
    assert "likely fix: --country JP (site.country)" in res.stderr


def test_missing_access_code_is_the_likely_fix() -> None:
    numbers = [f"0010232765{n:03d}0" for n in range(40)] + ["00312345678"]
    v = check_numbers(settings("JP"), numbers)
    assert v.too_many and v.fix == "--access-code 0 (dialplan.access_codes)"
    good = check_numbers(settings("JP", dialplan={"access_codes": ["0"]}),
                         ["00312345678", "00120123456", "0010442079460000"])
    assert good.invalid == 0 and good.warning(settings("JP")) is None


def test_a_second_check_of_the_same_numbers_parses_none_of_them_per_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The likely fix reads ~30 invalid numbers as dialed in each of ~250 regions (~0.4 s of
    libphonenumber); a report or fleet checking the same numbers again reuses those answers."""
    import phonenumbers

    from tollwatch.rules import validity

    validity._valid_in.cache_clear()
    numbers = [f"0010232765{n:03d}7" for n in range(40)] + ["00312345679"]
    first = check_numbers(settings("JP"), numbers)
    assert first.too_many and first.fix == "--access-code 0 (dialplan.access_codes)"
    parsed: list[object] = []
    real = phonenumbers.parse

    def counted(number: str, region: str | None = None, *a: object, **k: object) -> object:
        parsed.append((number, region))
        return real(number, region, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(phonenumbers, "parse", counted)
    again = check_numbers(settings("JP"), numbers)
    assert again == first
    assert not [p for p in parsed if p[1] is not None]  # none read as dialed in a region


def test_check_config_sample(tmp_path: Path) -> None:
    write(tmp_path, "[site]\n")
    res = runner.invoke(app, ["check-config", "--country", "US", "--tz", "UTC",
                              "--sample", str(SAMPLE)])
    assert res.exit_code == 1
    assert "likely fix: --country JP" in res.stderr
    line = SAMPLE.read_text().splitlines()[0].replace("0102327654300", "0312345678")
    ok = write(tmp_path, line + "\n", "Master.csv")
    res = runner.invoke(app, ["check-config", "--country", "JP", "--tz", "UTC",
                              "--sample", str(ok)])
    assert res.exit_code == 0, res.output
    assert "1 distinct outbound numbers checked, 0 invalid" in res.stderr
    res = runner.invoke(app, ["check-config", "--country", "JP", "--sample",
                              str(tmp_path / "t.toml")])
    assert res.exit_code == 2 and "not a CDR file" in res.stderr


# ---- default config path -----------------------------------------------------------------------
def test_default_config_path_for_every_command(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, '[site]\ncountry = "US"\ntimezone = "America/Chicago"\n'
                          '[dialplan]\naccess_codes = ["9"]\n')
    monkeypatch.setattr(config_load, "DEFAULT_PATH", cfg)
    res = runner.invoke(app, ["classify", "9011442079460000"])
    assert "international" in res.stdout and "United Kingdom" in res.stdout
    other = write(tmp_path, '[site]\ncountry = "JP"\ntimezone = "Asia/Tokyo"\n', "o.toml")
    monkeypatch.setenv("TOLLWATCH_CONFIG", str(other))
    res = runner.invoke(app, ["classify", "0102327654300"])
    assert "Sierra Leone" in res.stdout
    monkeypatch.setenv("TOLLWATCH_CONFIG", str(tmp_path / "nope.toml"))
    res = runner.invoke(app, ["blocks"])
    assert res.exit_code == 2 and "nope.toml: no such file" in res.output


# ---- check-config ------------------------------------------------------------------------------
def test_check_config_lists_every_error_at_once(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TW_NOPE", raising=False)
    cfg = write(tmp_path, f"""
[site]
country = "JP"
timezone = "Asia/Tokio"
[incidents]
warning_score = 120
critical_score = 100
[hours]
holidays_country = "QQ"
[emergency]
numbers = ["110"]
[[ami]]
name = "pbx"
username = "tw"
secret_env = "TW_NOPE"
[[ami]]
name = "pbx2"
username = "tw"
secret_file = "{tmp_path}/missing.secret"
""")
    res = runner.invoke(app, ["check-config", str(cfg)])
    assert res.exit_code == 2
    err = res.stderr
    for needle in (
        'site.timezone: "Asia/Tokio" is not an IANA time zone',
        "incidents: warning_score (120) must be below critical_score (100)",
        'hours.holidays_country: "QQ" is not a country the holidays package knows',
        "emergency.numbers: leaves out 118, 119, 112, 999, 911",
        "ami[0].secret_env: the environment variable named by secret_env is not set",
        "ami[1].secret_file: cannot read the file named by secret_file",
    ):
        assert needle in err, (needle, err)
    assert err.count("error:") == 6
    assert "TW_NOPE" not in err and "missing.secret" not in err  # named by key only


def test_check_config_ok_prints_zone(tmp_path: Path) -> None:
    cfg = write(tmp_path, '[site]\ncountry = "JP"\ntimezone = "Asia/Tokyo"\n')
    res = runner.invoke(app, ["check-config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "settings OK (times in Asia/Tokyo)" in res.stderr


def test_secret_file_from_systemd_credentials(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tollwatch.config.secrets import read_secret

    (tmp_path / "ami-secret").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert read_secret(None, Path("ami-secret"), "AMI") == "s3cret"


# ---- overnight hours ---------------------------------------------------------------------------
def test_overnight_hours() -> None:
    s = settings("JP", "Asia/Tokyo", hours={"monday": ["19:00-08:00"], "tuesday": [],
                                             "holidays_country": ""})
    cal = BusinessCalendar(s)
    tz = ZoneInfo("Asia/Tokyo")
    mon, tue = datetime(2026, 11, 23, tzinfo=tz), datetime(2026, 11, 24, tzinfo=tz)
    assert cal.closed_reason(mon.replace(hour=18)) is not None
    assert cal.closed_reason(mon.replace(hour=23, minute=30)) is None
    assert cal.closed_reason(tue.replace(hour=7, minute=59)) is None  # the night shift goes on
    assert cal.closed_reason(tue.replace(hour=8)) is not None
    with pytest.raises(ConfigError):
        settings("JP", hours={"monday": ["08:00-08:00"]})


# ---- terminal safety ---------------------------------------------------------------------------
def test_markup_in_a_file_name_is_shown_not_run(tmp_path: Path) -> None:
    odd = tmp_path / "[/bold]Master[cdr].csv"
    res = runner.invoke(app, ["scan", "--country", "JP", "--tz", "UTC", str(odd)])
    assert res.exit_code == 2
    assert "[/bold]Master[cdr].csv" in res.stderr
    assert "Traceback" not in res.output
    help_text = runner.invoke(app, ["report", "--help"]).stdout
    assert "[cdr] files" in help_text


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("tollwatch ")


# ---- status after stop -------------------------------------------------------------------------
async def test_status_tells_a_stopped_daemon(tmp_path: Path) -> None:
    import asyncio
    import json as _json

    from tollwatch.runner import run_daemon
    from tollwatch.state import StateStore

    cdr = tmp_path / "Master.csv"
    cdr.write_text("")
    s = load_settings(None, {"site": {"country": "JP", "timezone": "Asia/Tokyo"},
                             "daemon": {"data_dir": str(tmp_path), "status_every": "1s",
                                        "snapshot_every": "1s"},
                             "csv_sources": [{"name": "pbx", "path": str(cdr)}]})
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(s, stop))
    for _ in range(100):
        await asyncio.sleep(0.05)
        if (tmp_path / "tollwatch.sqlite3").is_file():
            store = StateStore.in_dir(tmp_path)
            ready = "daemon" in store.read_status()
            store.close()
            if ready:
                break
    res = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "daemon: running since" in res.stdout
    stop.set()
    await task
    res = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert res.exit_code == 3, res.output
    assert "daemon: STOPPED at" in res.stdout
    res = runner.invoke(app, ["status", "--data-dir", str(tmp_path), "--json"])
    assert _json.loads(res.stdout)["running"] is False


@pytest.mark.parametrize("doc", [
    '{"daemon": {"started_at": "x"}}',  # no updated_at: it read "None"
    '{"updated_at": "yesterday", "daemon": {}}',
    '{"updated_at": "2026-12-03T10:00:00", "daemon": {}}',  # no zone
])  # fmt: skip
def test_status_with_a_status_file_without_a_time_says_so(tmp_path: Path, doc: str) -> None:
    """A status.json cut short or edited by hand crashed `status` (ValueError, TypeError)."""
    (tmp_path / "status.json").write_text(doc)
    res = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert res.exit_code == 3, res.output
    assert "NOT RUNNING? its last status has no time" in res.stdout

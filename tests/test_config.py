"""Settings: defaults, overrides merged by name, every error listed with its path."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tollwatch.config import ConfigError, load_settings, masked_dump
from tollwatch.config.types import parse_duration
from tollwatch.rules.base import check_rules


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tollwatch.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_country_implies_dial_plan_and_emergency_numbers() -> None:
    jp = load_settings(None, {"site": {"country": "JP"}}, rule_checks=check_rules)
    # 010, and 010 after a carrier's code (KDDI 001, NTT Com 0033, SoftBank 0041 and 0061)
    assert jp.dialplan.international_prefixes == ["010", "001010", "0033010", "0041010",
                                                  "0061010"]
    assert jp.dialplan.dial_prefixes == ["184", "186"]  # caller-ID privacy
    assert jp.dialplan.national_prefix == "0"
    assert {"110", "118", "119"} <= set(jp.emergency.numbers or [])
    us = load_settings(None, {"site": {"country": "us"}}, rule_checks=check_rules)
    assert us.site.country == "US"
    assert (us.dialplan.international_prefixes, us.dialplan.national_prefix) == (["011"], "1")
    assert "911" in (us.emergency.numbers or [])
    gb = load_settings(None, {"site": {"country": "GB"}}, rule_checks=check_rules)
    assert (gb.dialplan.international_prefixes, gb.dialplan.national_prefix) == (["00"], "0")


def test_user_file_overrides_one_rule_option_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, """
[site]
country = "JP"
timezone = "Asia/Tokyo"

[[rules]]
name = "burst"
count = 12

[[rules]]
name = "burst_night"
type = "burst"
count = 3
window = "1h"
""")
    s = load_settings(path, rule_checks=check_rules)
    assert s.rules["burst"].model_dump()["count"] == 12
    assert s.rules["burst"].model_dump()["window"] == "10m"  # shipped value kept
    assert s.rules["burst_night"].type == "burst"
    assert "high_risk_destination" in s.rules


def test_all_errors_listed_at_once_with_paths(tmp_path: Path) -> None:
    path = write(tmp_path, """
[site]
country = "XX"
timezone = "Asia/Tokio"

[hours]
monday = ["9-5"]

[[rules]]
name = "burst"
window = "10 minutes"

[[rules]]
name = "mystery"
type = "no_such_rule"
""")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, rule_checks=check_rules)
    errors = exc.value.errors
    assert 'rules.burst.window: "10 minutes" is not a duration like "10m"' in errors
    assert 'site.timezone: "Asia/Tokio" is not an IANA time zone like "Asia/Tokyo"' in errors
    assert 'site.country: "XX" is not an ISO 3166 country code like "JP" or "US"' in errors
    assert 'hours.monday.0: "9-5" is not a time range like "09:00-18:00" ' \
           '(or "19:00-08:00" overnight)' in errors
    unknown = "rules.mystery.type: 'no_such_rule' is not a rule type"
    assert any(e.startswith(unknown) for e in errors)
    assert exc.value.source == str(path)


def test_unknown_setting_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, "[site]\ncountry='JP'\ncolour='red'\n"))
    assert exc.value.errors == ["site.colour: unknown setting"]
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, "[site\n"))
    assert "not valid TOML" in exc.value.errors[0]
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path / "missing.toml")
    assert exc.value.errors == [f"{tmp_path / 'missing.toml'}: no such file"]


def test_country_is_required() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings()
    assert exc.value.errors[0].startswith("site.country: required")


@pytest.mark.parametrize(
    "text,seconds",
    [("90s", 90), ("10m", 600), ("1h30m", 5400), ("7d", 604800), (45, 45), ("2w", 1209600)],
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["10 minutes", "m10", "", "1.5h", True, -3])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="is not a duration like"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", ["99999999d", "3651d", 10**20, float("inf")])
def test_durations_longer_than_ten_years_are_refused(bad: object) -> None:
    """'99999999d' is a valid timedelta, but a window or baseline period that long put
    before a call's time crashed the scan (date value out of range)."""
    with pytest.raises(ValueError, match="is not a duration from 0s to 3650d"):
        parse_duration(bad)
    assert parse_duration("3650d") == timedelta(days=3650)
    errors = check_rules({"b": {"type": "burst", "window": bad}})
    assert len(errors) == 1 and errors[0].startswith("rules.b.window: ")


def test_a_nan_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a duration like"):
        parse_duration(float("nan"))


def test_rule_option_errors_name_the_rule() -> None:
    errors = check_rules({"b": {"type": "burst", "count": 0, "colour": 1, "group_by": "x"}})
    assert "rules.b.count: 0: Input should be greater than or equal to 2" in errors
    assert "rules.b.colour: unknown option" in errors
    assert any(e.startswith("rules.b.group_by:") for e in errors)


def test_masked_dump_hides_secrets() -> None:
    s = load_settings(None, {"site": {"country": "JP"}})
    dumped = masked_dump(s)
    assert dumped["site"]["country"] == "JP"
    from tollwatch.config.load import SECRET_WORDS

    def walk(obj: object, key: str = "") -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, k)
        elif any(w in key.lower() for w in SECRET_WORDS):
            assert obj in ("****", None, "")

    walk(dumped)


def test_holiday_countries_are_the_packages_own_list() -> None:
    """Read off the holidays registry (no country module imported) and still exactly what
    `holidays.list_supported_countries()` lists, aliases included."""
    from holidays import list_supported_countries

    from tollwatch.config.countries import holiday_countries

    assert holiday_countries() == frozenset(list_supported_countries())
    assert {"JP", "US", "GB", "UK", "USA"} <= holiday_countries()


def test_home_country_without_public_holidays_in_the_package() -> None:
    # Ascension Island has a numbering plan (phonenumbers) but no holidays in the package
    from tollwatch.config.countries import holiday_countries

    assert "AC" not in holiday_countries()
    ac = load_settings(None, {"site": {"country": "AC", "timezone": "UTC"}})
    jp = load_settings(None, {"site": {"country": "JP", "timezone": "UTC"}})
    assert (ac.hours.holidays_country, jp.hours.holidays_country) == ("", "JP")


def test_a_settings_file_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path) -> None:
    """`check-config` (and `run`, `scan`) crashed with UnicodeDecodeError on such a file (the
    fleet-file check read it first); a byte-order mark, as Windows editors write, is fine."""
    from typer.testing import CliRunner

    from tollwatch.cli import app
    from tollwatch.config.fleet import is_fleet_file

    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'[site]\ncountry = "JP"\n# caf\xe9\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(latin)
    assert exc.value.errors == [f"{latin}: not UTF-8 text (byte 0xe9 on line 3); save it as UTF-8"]
    assert not is_fleet_file(latin)
    result = CliRunner().invoke(app, ["check-config", "-c", str(latin)])
    assert result.exit_code == 2 and "not UTF-8 text" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b'\xef\xbb\xbf[site]\ncountry = "JP"\ntimezone = "UTC"\n')
    assert load_settings(bom).site.country == "JP"


def test_rates_and_high_risk_files_are_checked_with_the_settings(tmp_path: Path) -> None:
    """A [rates] or [high_risk] file that was missing, not UTF-8 or held a bad row passed
    `check-config` and then crashed `scan` mid-way (a traceback, or 'None: cannot write');
    a rate per minute could be negative, infinite or NaN (spend would then always or never
    fire)."""
    from tollwatch.settings import load

    def errors(text: str) -> list[str]:
        path = tmp_path / "site.toml"
        path.write_text('[site]\ncountry = "JP"\ntimezone = "UTC"\n' + text)
        with pytest.raises(ConfigError) as exc:
            load(path)
        return exc.value.errors

    (tmp_path / "latin.csv").write_bytes(b"prefix,rate\n232,1.2\n# caf\xe9\n")
    (tmp_path / "rows.csv").write_text("prefix,rate\n232,1.2\n44,-3\n")
    (tmp_path / "blank.csv").write_text("prefix,rate\n,5\n")
    missing = tmp_path / "missing.csv"
    assert errors(f'[rates]\nfile = "{tmp_path / "latin.csv"}"\n') == [
        f"rates.file: {tmp_path / 'latin.csv'}: not UTF-8 text (byte 25)"]
    assert errors(f'[rates]\nfile = "{tmp_path / "rows.csv"}"\n') == [
        f"rates.file: {tmp_path / 'rows.csv'}:3: '-3' is not a rate per minute"]
    assert errors(f'[rates]\nfile = "{tmp_path / "blank.csv"}"\n') == [
        f"rates.file: {tmp_path / 'blank.csv'}:2: expected 'prefix,rate per minute'"]
    assert errors(f'[rates]\nfile = "{missing}"\n[high_risk]\nfile = "{missing}"\n') == [
        f"rates.file: {missing}: cannot read (No such file or directory)",
        f"high_risk.file: {missing}: cannot read (No such file or directory)"]
    found = errors('[rates]\nper_minute = { "232" = -1, "44" = inf, "1" = nan }\n')
    assert [e.split(":")[0] for e in found] == [
        "rates.per_minute.232", "rates.per_minute.44", "rates.per_minute.1"]
    (tmp_path / "ok.csv").write_text("prefix,rate\n232,1.2\n")
    path = tmp_path / "site.toml"
    ok = tmp_path / "ok.csv"
    path.write_text(f'[site]\ncountry = "JP"\ntimezone = "UTC"\n[rates]\nfile = "{ok}"\n')
    assert load(path).rates.file == tmp_path / "ok.csv"


def test_daemon_intervals_of_zero_are_refused() -> None:
    """0s made the status writer, the snapshots, the backoff and a database follower's poll
    loops that never wait (a table queried without pause), a block that expired at once, and a
    stall watchdog that flapped."""
    with pytest.raises(ConfigError) as exc:
        load_settings(None, {
            "site": {"country": "JP", "timezone": "UTC"},
            "daemon": {"snapshot_every": "0s", "status_every": "0s", "max_backoff": "0s",
                       "stall_after": "1s"},
            "cdr": {"poll": "0s"}, "remediation": {"ttl": "30s"},
            "slack": {"max_retry_delay": "0s"},
        })  # fmt: skip
    assert sorted(exc.value.errors) == [
        "cdr.poll: 0s is shorter than 1s",
        "daemon.max_backoff: 0s is shorter than 1s",
        "daemon.snapshot_every: 0s is shorter than 1s",
        "daemon.stall_after: 1s is shorter than 2s",
        "daemon.status_every: 0s is shorter than 1s",
        "remediation.ttl: 30s is shorter than 1m",
        "slack.max_retry_delay: 0s is shorter than 1s",
    ]


def test_a_custom_conf_without_a_mapping_is_named_once(tmp_path: Path) -> None:
    from tollwatch.settings import load

    conf = tmp_path / "cdr_custom.conf"
    conf.write_text("garbage\n")
    path = tmp_path / "site.toml"
    path.write_text(f'[site]\ncountry = "JP"\ntimezone = "UTC"\n[cdr]\ncustom_conf = "{conf}"\n')
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert exc.value.errors == [
        f"cdr.custom_conf: {conf}: no mapping line (file => ${{CDR(...)}},...) found"]


def test_a_value_that_fits_no_member_of_a_union_is_told_once_at_its_path() -> None:
    """dialplan.national_prefix ("0" or ""): "abc" gave two lines naming pydantic's members,
    'dialplan.national_prefix.function-before[parse_dial_string(), str]: ...' and
    'dialplan.national_prefix.literal['']: ...'."""
    with pytest.raises(ConfigError) as exc:
        load_settings(None, {"site": {"country": "JP", "timezone": "UTC"},
                             "dialplan": {"national_prefix": "abc"}})
    assert exc.value.errors == [
        'dialplan.national_prefix: "abc" is not a string of dial digits like "0" or "011"']


@pytest.mark.parametrize("url,ok", [
    ("https://slack.example.com/api/", True), ("http://127.0.0.1:8080/api/", True),
    ("http://localhost/api/", True), ("http://example.com/api/", False),
    ("ftp://example.com/", False), ("slack.com/api", False), ("https:///api", False),
])  # fmt: skip
def test_slack_base_url_keeps_the_token_off_the_wire_in_clear(url: str, ok: bool) -> None:
    """The bot token is sent to base_url: http:// to another host sent it in clear text."""
    over = {"site": {"country": "JP"}, "slack": {"base_url": url}}
    if ok:
        assert load_settings(None, over).slack.base_url == url
        return
    with pytest.raises(ConfigError) as exc:
        load_settings(None, over)
    assert exc.value.errors == [
        f'slack.base_url: "{url}" is not an https:// URL (http:// only to this host)']


def test_a_secret_or_ami_user_with_a_line_end_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both go into an AMI Login header as written: 'x\\r\\nAction: Originate' would have
    ended the header and sent another action. A final line end (an env file, `echo`) is
    trimmed, as it was for a secret file."""
    from tollwatch.config.secrets import SecretError, read_secret

    monkeypatch.setenv("TW_S", "x\r\nAction: Originate")
    with pytest.raises(SecretError, match="holds a line end") as exc:
        read_secret("TW_S", None, "ami[0]")
    assert "Originate" not in str(exc.value)
    monkeypatch.setenv("TW_S", "good-secret\n")
    assert read_secret("TW_S", None, "ami[0]") == "good-secret"
    (tmp_path / "s").write_text("a\x00b\n")
    with pytest.raises(SecretError, match="holds a line end"):
        read_secret(None, tmp_path / "s", "ami[0]")
    with pytest.raises(ConfigError) as bad:
        load_settings(None, {"site": {"country": "JP"}, "ami": [
            {"name": "pbx", "username": "tw\r\nAction: Originate", "secret_env": "TW_S"}]})
    assert bad.value.errors[0].startswith("ami.0.username: 'tw\\r\\nAction: Originate' is not "
                                          "an AMI user name")


def test_dial_prefixes_default_by_country_and_may_not_eat_the_prefixes() -> None:
    gb = load_settings(None, {"site": {"country": "GB"}}, rule_checks=check_rules)
    assert gb.dialplan.dial_prefixes == ["141", "1470"]
    us = load_settings(None, {"site": {"country": "US"}}, rule_checks=check_rules)
    assert us.dialplan.dial_prefixes == []
    own = load_settings(None, {"site": {"country": "JP"}, "dialplan": {"dial_prefixes": []}},
                        rule_checks=check_rules)  # fmt: skip
    assert own.dialplan.dial_prefixes == []  # a site may turn them off
    for bad in ("0", "01", "010"):  # would take off the start of 010 or of 0
        with pytest.raises(ConfigError) as exc:
            load_settings(None, {"site": {"country": "JP"}, "dialplan": {"dial_prefixes": [bad]}},
                          rule_checks=check_rules)  # fmt: skip
        assert f'dialplan.dial_prefixes: "{bad}" would take off the start' in str(exc.value)
    with pytest.raises(ConfigError) as exc:  # read as part of a feature code, never taken off
        load_settings(None, {"site": {"country": "US"}, "dialplan": {"dial_prefixes": ["*67"]}},
                      rule_checks=check_rules)  # fmt: skip
    assert 'dialplan.dial_prefixes: "*67" is not digits only' in str(exc.value)

"""Fleet settings: [[pbx]] entries inherit the top level; errors name pbx[<name>].<path>."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tollwatch.cli import app
from tollwatch.config import ConfigError, load_settings
from tollwatch.config.fleet import is_fleet_file, load_fleet
from tollwatch.rules.base import check_rules

FLEET = """
[site]
country = "JP"
timezone = "Asia/Tokyo"

[allowlist]
prefixes = ["44"]

[slack]
enabled = true
token_env = "TW_SLACK"
channel = "#noc"

[[rules]]
name = "burst"
count = 12

[[pbx]]
name = "tokyo"
cdr = { files = ["tokyo/Master.csv*"] }

[[pbx]]
name = "phoenix"
site = { name = "Acme Phoenix", country = "US", timezone = "America/Phoenix" }
dialplan = { access_codes = ["9"] }
hours = { saturday = ["09:00-13:00"], holidays_country = "US" }
outbound = { trunks = ["PJSIP/att-*"] }
high_risk = { add = ["52"] }
allowlist = { prefixes = ["52-55"] }
slack = { channel = "#acme" }
remediation = { enabled = true, block = "both" }
ami = { host = "10.1.2.3", username = "tollwatch", secret_env = "ACME_AMI" }
cdr = { files = ["/var/log/asterisk/cdr-csv/Master.csv"] }

[[pbx.rules]]
name = "burst"
window = "5m"

[[pbx.rules]]
name = "long_call"
enabled = false
"""


def write(tmp_path: Path, text: str, name: str = "fleet.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_entries_inherit_the_top_level_and_override_it(tmp_path: Path) -> None:
    fleet = load_fleet(write(tmp_path, FLEET), rule_checks=check_rules)
    assert fleet.ok and fleet.order == ["tokyo", "phoenix"]
    tokyo, phx = fleet.settings["tokyo"], fleet.settings["phoenix"]
    # the site name defaults to the PBX name; the home country drives the dial plan
    assert (tokyo.site.name, tokyo.site.country, tokyo.site.timezone) == (
        "tokyo", "JP", "Asia/Tokyo")
    assert tokyo.dialplan.international_prefixes[0] == "010"
    assert (phx.site.name, phx.site.country, phx.site.timezone) == (
        "Acme Phoenix", "US", "America/Phoenix")
    assert phx.dialplan.international_prefixes == ["011"]
    assert phx.dialplan.access_codes == ["9"]
    assert phx.hours.holidays_country == "US" and tokyo.hours.holidays_country == "JP"
    assert [str(r) for r in phx.hours.saturday] != [] and tokyo.hours.saturday == []
    assert tokyo.hours.monday == phx.hours.monday  # shipped default, inherited
    # rules merge by name, option by option: shipped -> top level -> entry
    assert tokyo.rules["burst"].model_dump()["count"] == 12
    assert tokyo.rules["burst"].model_dump()["window"] == "10m"
    assert phx.rules["burst"].model_dump()["count"] == 12
    assert phx.rules["burst"].model_dump()["window"] == "5m"
    assert tokyo.rules["long_call"].enabled and not phx.rules["long_call"].enabled
    # lists are replaced, tables merged key by key
    assert [str(p) for p in tokyo.allowlist.prefixes] == ["44"]
    assert [str(p) for p in phx.allowlist.prefixes] == ["5255"]
    assert phx.outbound.trunks == ["PJSIP/att-*"] and tokyo.outbound.trunks == []
    assert (tokyo.slack.channel, phx.slack.channel) == ("#noc", "#acme")
    assert phx.slack.token_env == "TW_SLACK"
    assert phx.remediation.enabled and phx.remediation.block == "both"
    assert not tokyo.remediation.enabled
    # the AMI connection is the PBX's own, named after it
    assert tokyo.ami == []
    assert [(a.name, a.host, a.username) for a in phx.ami] == [
        ("phoenix", "10.1.2.3", "tollwatch")]
    # relative CDR paths start at the fleet file's directory
    assert tokyo.cdr.files == [tmp_path.resolve() / "tokyo" / "Master.csv*"]
    assert phx.cdr.files == [Path("/var/log/asterisk/cdr-csv/Master.csv")]


def test_command_line_overrides_are_shared_defaults(tmp_path: Path) -> None:
    text = '[[pbx]]\nname = "a"\n\n[[pbx]]\nname = "b"\nsite = { country = "GB" }\n'
    fleet = load_fleet(write(tmp_path, text), {"site": {"country": "DE", "timezone": "UTC"}},
                       check_rules)
    assert fleet.settings["a"].site.country == "DE"
    assert fleet.settings["b"].site.country == "GB"


def test_a_bad_pbx_is_reported_by_path_and_the_others_resolve(tmp_path: Path) -> None:
    text = FLEET + """
[[pbx]]
name = "osaka"
site = { timezone = "Asia/Osaka" }
daemon = { data_dir = "/tmp" }
ami = { host = "10.0.0.9", username = "tw" }
cdr = { files = ["osaka.csv"], layout = "fancy" }

[[pbx.rules]]
name = "burst"
window = "ten minutes"
"""
    fleet = load_fleet(write(tmp_path, text), rule_checks=check_rules)
    assert set(fleet.settings) == {"tokyo", "phoenix"}
    errors = fleet.errors["osaka"]
    assert all(e.startswith("pbx[osaka].") for e in errors), errors
    joined = "\n".join(errors)
    assert 'pbx[osaka].site.timezone: "Asia/Osaka" is not an IANA time zone' in joined
    assert "pbx[osaka].daemon: not a per-PBX setting (shared: set it at the top level)" in joined
    assert "pbx[osaka].ami: set exactly one of secret_env or secret_file" in joined
    assert "pbx[osaka].cdr.layout:" in joined
    assert "pbx[osaka].rules.burst.window:" in joined


@pytest.mark.parametrize(("text", "expected"), [
    ('[[ami]]\nname="x"\nusername="u"\nsecret_env="S"\n[[pbx]]\nname="a"\n',
     "ami: set it in each [[pbx]] entry"),
    ('[cdr]\nfiles=["x.csv"]\n[[pbx]]\nname="a"\n', "cdr.files: set it in each [[pbx]] entry"),
    ('[[pbx]]\nname="a"\n[[pbx]]\nname="a"\n', "pbx[a]: defined 2 times"),
    ('[[pbx]]\nname="a"\n[[pbx]]\nsite={country="JP"}\n', "pbx[#2].name: required"),
    ('[[pbx]]\nname="../etc"\n', "pbx[#1].name: required"),
    ("pbx = 3\n", "pbx: a fleet file needs [[pbx]] entries"),
])
def test_whole_fleet_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_fleet(write(tmp_path, '[site]\ncountry = "JP"\n' + text), rule_checks=check_rules)
    assert any(e.startswith(expected) for e in exc.value.errors), exc.value.errors


def test_an_error_every_pbx_shares_is_reported_once(tmp_path: Path) -> None:
    text = ('[site]\ntimezone = "UTC"\n[[rules]]\nname = "burst"\ncount = "many"\n'
            '[[pbx]]\nname = "a"\nsite = { country = "JP" }\n'
            '[[pbx]]\nname = "b"\nsite = { country = "US" }\n')
    with pytest.raises(ConfigError) as exc:
        load_fleet(write(tmp_path, text), rule_checks=check_rules)
    assert len(exc.value.errors) == 1
    assert exc.value.errors[0].startswith("rules.burst.count:")
    assert exc.value.errors[0].endswith("(in every [[pbx]])")


def test_single_site_files_load_as_before_and_fleet_files_are_told_apart(
    tmp_path: Path,
) -> None:
    single = write(tmp_path, '[site]\ncountry = "JP"\n', "site.toml")
    assert not is_fleet_file(single)
    assert load_settings(single, rule_checks=check_rules).site.country == "JP"
    fleet = write(tmp_path, FLEET)
    assert is_fleet_file(fleet)
    with pytest.raises(ConfigError, match="fleet file"):
        load_settings(fleet, rule_checks=check_rules)


def test_every_pbx_of_a_fleet_states_its_zone(tmp_path: Path) -> None:
    text = ('[site]\ncountry = "JP"\n[[pbx]]\nname = "a"\n'
            '[[pbx]]\nname = "b"\nsite = { timezone = "Asia/Tokyo" }\n')
    fleet = load_fleet(write(tmp_path, text), rule_checks=check_rules)
    assert list(fleet.settings) == ["b"]
    assert fleet.errors["a"] == ["pbx[a].site.timezone: required for each PBX of a fleet (here "
                                 'or at the top level), e.g. "Asia/Tokyo"']


def test_directory_convention(tmp_path: Path) -> None:
    (tmp_path / "tollwatch.toml").write_text('[site]\ncountry = "JP"\ntimezone = "Asia/Tokyo"\n',
                                             encoding="utf-8")
    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "Master.csv").write_text("", encoding="utf-8")
    (tmp_path / "beta" / "Master.csv.1.gz").write_bytes(b"")
    (tmp_path / "beta" / "tollwatch.toml").write_text(
        '[site]\ncountry = "US"\ntimezone = "America/Chicago"\n', encoding="utf-8")
    (tmp_path / "empty").mkdir()  # no CDRs, no settings: not a PBX
    fleet = load_fleet(tmp_path, rule_checks=check_rules)
    assert fleet.order == ["alpha", "beta"] and fleet.ok
    alpha, beta = fleet.settings["alpha"], fleet.settings["beta"]
    assert (alpha.site.country, beta.site.country) == ("JP", "US")
    assert beta.site.timezone == "America/Chicago"
    root = tmp_path.resolve()
    assert alpha.cdr.files == [root / "alpha" / "Master.csv"]
    assert beta.cdr.files == [root / "beta" / "Master.csv", root / "beta" / "Master.csv.1.gz"]


def test_check_config_shows_the_fleet_and_its_errors(tmp_path: Path) -> None:
    path = write(tmp_path, FLEET + '[[pbx]]\nname = "bad"\nsite = { country = "XX" }\n')
    result = CliRunner().invoke(app, ["check-config", str(path)])
    assert result.exit_code == 2
    assert "tokyo" in result.stdout and "phoenix" in result.stdout
    assert "tollwatch@10.1.2.3:5038" in result.stdout
    assert 'pbx[bad].site.country: "XX" is not an ISO 3166 country code' in result.stderr
    one = CliRunner().invoke(app, ["check-config", str(path), "--pbx", "phoenix"])
    assert one.exit_code == 0, one.stderr
    assert '"channel": "#acme"' in one.stdout

"""`report --fleet`: every PBX's nightly report, one fleet summary, one Slack message."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.slack_stub import SlackStub
from tollwatch.cli import app


@pytest.fixture
def stub() -> Iterator[SlackStub]:
    server = SlackStub().start()
    yield server
    server.down()


@pytest.mark.slow
def test_fleet_report_writes_each_pbx_and_posts_one_summary(
    tmp_path: Path, fixtures: Path, stub: SlackStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TW_FLEET_SLACK", "xoxb-fleet-token")
    for name in ("tokyo", "osaka"):
        (tmp_path / name).mkdir()
        shutil.copy(fixtures / "Master-attack.csv", tmp_path / name / "Master.csv")
    path = tmp_path / "fleet.toml"
    path.write_text(f"""
[site]
country = "JP"
timezone = "Asia/Tokyo"

[daemon]
data_dir = "{tmp_path / 'state'}"

[slack]
enabled = true
channel = "#noc"
token_env = "TW_FLEET_SLACK"
base_url = "{stub.base_url}"

[[pbx]]
name = "tokyo"
cdr = {{ files = ["tokyo/Master.csv"] }}

[[pbx]]
name = "osaka"
slack = {{ channel = "#osaka" }}
hours = {{ tuesday = [] }}
cdr = {{ files = ["osaka/Master.csv"] }}

[[pbx]]
name = "gone"
cdr = {{ files = ["gone/Master.csv"] }}
""", encoding="utf-8")
    out = tmp_path / "reports"
    run = CliRunner().invoke(app, ["report", "--fleet", str(path), "--workers", "0",
                                   "--date", "2026-11-24", "--out", str(out)])
    assert run.exit_code == 2, run.stderr  # one PBX has no report
    assert "error: pbx[gone]:" in run.stderr and "no such file" in run.stderr
    for name in ("tokyo", "osaka"):
        assert (out / name / "2026-11-24" / "report.html").is_file()
    doc = json.loads((out / "fleet" / "2026-11-24" / "fleet.json").read_text())
    assert [p["pbx"] for p in doc["pbxes"]] == ["tokyo", "osaka"]
    assert [p["international"] for p in doc["pbxes"]] == [24, 24]
    # osaka is closed on Tuesdays: the same calls are off-hours there, not in Tokyo
    assert [p["off_hours_international"] for p in doc["pbxes"]] == [0, 24]
    assert set(doc["failed"]) == {"gone"}
    index = (out / "fleet" / "2026-11-24" / "index.html").read_text()
    assert 'href="../../tokyo/2026-11-24/report.html"' in index
    assert run.stdout.strip() == str(out / "fleet" / "2026-11-24" / "index.html")
    [post] = stub.calls("chat.postMessage")
    assert post.body["channel"] == "#noc"
    text = post.body["text"]
    assert text.startswith("tollwatch fleet report 2026-11-24: 2/3 PBXes, 48 outbound calls")
    assert "tokyo: 1 incident(s), 1 critical" in text
    assert "1 PBX(es) without a report: gone" in text

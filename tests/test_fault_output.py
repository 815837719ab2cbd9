"""Hostile strings from a CDR/AMI through every output: scan table, scan CSV, flagged.csv,
`tollwatch status`, log lines; and secrets never echoed in errors."""

from __future__ import annotations

import csv
import io
import logging
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import settings
from tests.test_daemon import ListSource, Recorder, make, run_until_idle
from tollwatch.cdr_ingest.live import CallEnded, CallStarted, LiveEvent
from tollwatch.cli import app
from tollwatch.config.secrets import SecretError, read_secret
from tollwatch.logsafe import PlainMessages
from tollwatch.report.build import build_report

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

# a caller ID that closes rich's markup, opens a link, sets the terminal title and colours
HOSTILE = "[/bold][link=https://evil.example]x[/link]\x1b]0;pwned\x07\x1b[31m=HYPERLINK(1)"
FORMULA = "=cmd|' /C calc'!A0"


def hostile_cdr(tmp_path: Path, source: str) -> Path:
    """The recorded attack, placed through Local channels whose start is not in the file, so
    the caller id (`src`) is the source (cdr_ingest.attribution)."""
    rows = list(csv.reader((ROOT / "samples" / "Master-attack.csv").open()))
    for r in rows:
        r[1] = source
        r[4] = f'"{source}" <{source}>'
        r[5] = r[5].replace("PJSIP/209-", "Local/0102@gw-in-") + ";2"
    path = tmp_path / "Master.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh, quoting=csv.QUOTE_ALL).writerows(rows)
    return path


def test_markup_and_escapes_in_caller_ids_through_the_scan_table(tmp_path: Path) -> None:
    path = hostile_cdr(tmp_path, HOSTILE)
    result = runner.invoke(app, ["scan", "--country", "JP", "--tz", "UTC", str(path)])
    assert result.exit_code == 1, result.output  # the attack is still caught, nothing crashed
    out = result.stdout
    assert "\x1b" not in out and "\x07" not in out  # no escape sequence reaches the terminal
    assert "\\x1b]0;pwned\\x07" in out  # shown, visibly
    assert "[/bold][link=https://evil.example]x[/link]" in out  # the tags as text, not markup
    assert "critical" in out


def test_formula_cells_escaped_in_scan_csv(tmp_path: Path) -> None:
    path = hostile_cdr(tmp_path, FORMULA)
    result = runner.invoke(app, ["scan", "--country", "JP", "--tz", "UTC", "-f", "csv", "-q",
                                 str(path)])
    assert result.exit_code == 1, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and rows[0]["source"] == "'" + FORMULA
    for row in rows:  # no cell a spreadsheet would run
        assert not any(v.startswith(("=", "+", "-", "@")) for v in row.values())


def test_formula_cells_escaped_in_flagged_csv(tmp_path: Path) -> None:
    path = hostile_cdr(tmp_path, "@SUM(1+1)*cmd")
    result = build_report(settings("JP", "UTC"), [path], date(2026, 11, 24), tmp_path / "out",
                          None)
    rows = list(csv.DictReader(result.flagged_csv.open(encoding="utf-8")))
    assert len(rows) == 24
    assert {r["source"] for r in rows} == {"'@SUM(1+1)*cmd"}
    for row in rows:  # e164 is ours: "+" and digits only
        assert row["e164"].startswith("+232") and row["e164"][1:].isdigit()
        assert not any(v.startswith(("=", "+", "-", "@")) for k, v in row.items() if k != "e164")


def test_every_skipped_row_with_problems_file(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    good = (ROOT / "samples" / "Master-attack.csv").read_text()
    path.write_text(good + "".join(f"=bad row {i}\n" for i in range(30)))
    problems = tmp_path / "problems.csv"
    result = runner.invoke(app, ["scan", "--country", "JP", "--tz", "UTC", "--problems",
                                 str(problems), str(path)])
    assert "--problems FILE" in result.stderr
    rows = list(csv.DictReader(problems.open()))
    assert len(rows) == 30
    assert rows[0]["origin"] == f"{path}:25" and rows[-1]["origin"] == f"{path}:54"


async def test_markup_and_escapes_through_status(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)
    events: list[LiveEvent] = []
    for i in range(12):
        at = t0 + timedelta(seconds=i)
        events.append(CallStarted("pbx", f"c{i}", at, HOSTILE, "acme", f"01023276543{i:02d}",
                                  "carrier"))
        events.append(CallEnded("pbx", f"c{i}", at + timedelta(seconds=3)))
    source = ListSource("pbx", events)
    source.status.state = "following /var/log/[/red]\x1b[2J"
    daemon = make(tmp_path, [source], Recorder())
    await run_until_idle(daemon, lambda: daemon.events == len(events))
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "open: critical" in out and "[/bold][link=https://evil.example]" in out
    assert "bad" in out  # the bad AMI frames column


def test_log_lines_cannot_be_forged() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PlainMessages())
    logger = logging.getLogger("tollwatch.test.logsafe")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("call from %s", "209\n2026-11-24 CRITICAL forged\x1b[31m")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert text.count("\n") == 1 and "\x1b" not in text
    assert "209\\x0a2026-11-24 CRITICAL forged\\x1b[31m" in text


# ---- secrets -----------------------------------------------------------------------------------
SECRET = "S3cr3t-Pa55-w0rd!"


def test_secret_written_into_secret_env_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SecretError) as err:
        read_secret(SECRET, None, "ami.0.secret")
    assert SECRET not in str(err.value) and "secret_env" in str(err.value)
    monkeypatch.delenv("S3CR3TPA55W0RD", raising=False)
    with pytest.raises(SecretError) as err:  # a valid-looking name that is the secret itself
        read_secret("S3CR3TPA55W0RD", None, "slack", "token_env", "token_file")
    assert "S3CR3TPA55W0RD" not in str(err.value) and "token_env" in str(err.value)


def test_secret_written_into_token_file_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(SecretError) as err:
        read_secret(None, Path(SECRET), "slack", "token_env", "token_file")
    assert SECRET not in str(err.value) and "token_file" in str(err.value)
    empty = tmp_path / SECRET
    empty.write_text("  \n")
    with pytest.raises(SecretError) as err:
        read_secret(None, empty, "ami.0.secret")
    assert SECRET not in str(err.value) and "secret_file" in str(err.value)


def test_run_with_the_secret_in_secret_env_names_the_key_only(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'[site]\ncountry = "JP"\n[daemon]\ndata_dir = "{tmp_path}"\n'
                   f'[[ami]]\nname = "p"\nusername = "u"\nsecret_env = "{SECRET}"\n')
    result = runner.invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 2
    assert SECRET not in result.output and "secret_env" in result.stderr


def test_auth_failures_without_account_are_not_a_pbx_wide_incident() -> None:
    """ChallengeResponseFailed without AccountID: counted by address only, never as a
    PBX-wide (`*`) warning with 0 calls."""
    from datetime import UTC, datetime, timedelta

    from tollwatch.rules.engine import Engine
    from tollwatch.rules.model import AuthEvent

    s = settings("JP", "UTC")
    engine = Engine.from_settings(s, {k: v.model_dump() for k, v in s.rules.items()})
    t0 = datetime(2026, 11, 24, 13, 0, tzinfo=UTC)
    for i in range(8):
        engine.handle_auth(AuthEvent(t0 + timedelta(seconds=i), "failed", "", "", "PJSIP"))
    assert engine.tracker.all_incidents() == []
    for i in range(8):
        engine.handle_auth(AuthEvent(t0 + timedelta(seconds=i), "failed", "", "203.0.113.9",
                                     "PJSIP"))
    assert {i.source for i in engine.tracker.all_incidents()} == {"from 203.0.113.9"}


async def test_csv_only_pbx_block_does_not_promise_ami(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tollwatch.alerting.remediation import Blocker, Target

    s = settings("JP", remediation={"enabled": True}, daemon={"data_dir": str(tmp_path)})
    blocker = Blocker(s, {})  # no AMI connection at all: a PBX followed by its CDR file only
    result = await blocker.block(Target("prefix", "232"), ["csv-pbx"], reason="x",
                                 origin="cli:root")
    assert result.failed == {"csv-pbx": "no AMI connection for this PBX"}
    text = caplog.text
    assert "NOT applied" in text and "when AMI is back" not in text


def test_bad_ami_frames_are_a_column_of_status() -> None:
    import io

    from rich.console import Console

    from tollwatch.status_view import render_sources

    buf = io.StringIO()
    render_sources(Console(file=buf, width=250, color_system=None),
                   [{"name": "pbx", "kind": "ami", "connected": True, "bad_frames": 7,
                     "state": "connected"}])
    lines = buf.getvalue().splitlines()
    heads = [c.strip() for c in next(ln for ln in lines if "bad frames" in ln).split("┃")]
    cells = [c.strip() for c in next(ln for ln in lines if "│ pbx" in ln).split("│")]
    assert cells[heads.index("bad frames")] == "7"

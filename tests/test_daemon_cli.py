"""`tollwatch demo`, `tollwatch status` and `tollwatch run`'s refusals, from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_daemon import ListSource, Recorder, attack_events, make, run_until_idle
from tollwatch.cli import app

runner = CliRunner()


def test_demo_shows_the_attack_caught_live() -> None:
    result = runner.invoke(app, ["demo", "--pace", "0"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "[NEW] WARNING" in out and "[ESCALATED] CRITICAL" in out
    assert "1 incident(s), 1 critical." in out
    assert out.index("[NEW]") < out.index("[ESCALATED]")


async def test_status_reads_what_the_daemon_wrote(tmp_path: Path, fixtures: Path) -> None:
    events = attack_events(fixtures)
    daemon = make(tmp_path, [ListSource("pbx", events)], Recorder())
    await run_until_idle(daemon, lambda: daemon.events == len(events))
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "daemon: running since" in result.stdout
    assert "open: critical 209 Sierra Leone (+232) (24 calls" in result.stdout


def test_status_without_a_daemon(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 3  # like systemctl status: not running
    assert "NOT RUNNING (no status from a daemon in" in result.stderr


def test_run_needs_sources_and_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text('[site]\ncountry = "JP"\n')
    result = runner.invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 2 and "no sources" in result.stderr
    cfg.write_text(f'[site]\ncountry = "JP"\n[daemon]\ndata_dir = "{tmp_path}"\n'
                   '[[ami]]\nname = "p"\nusername = "u"\nsecret_env = "NOT_SET_ANYWHERE"\n')
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    result = runner.invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "the environment variable named by secret_env is not set" in result.stderr
    assert "NOT_SET_ANYWHERE" not in result.stderr  # the key is named, never its value

"""`tollwatch run` with a fleet file as a process: status at a glance, metrics per PBX, SIGHUP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from tests.test_daemon_ami import wait_for
from tests.test_fleet_daemon import SECRET, fakes, fleet_file, stored
from tollwatch.fleet_pipeline import pbx_dir
from tollwatch.metrics import registry_for
from tollwatch.state import read_status_file


async def tollwatch(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tollwatch", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    return proc.returncode or 0, out.decode()


def lines_of(data_dir: Path) -> dict[str, dict[str, object]]:
    doc = read_status_file(data_dir) or {}
    return {str(r["pbx"]): r for r in (doc.get("daemon") or {}).get("fleet") or []}


@pytest.mark.slow
async def test_run_status_metrics_and_sighup_of_a_fleet(tmp_path: Path, fixtures: Path) -> None:
    env = {**os.environ, "FLEET_AMI_SECRET": SECRET, "COLUMNS": "200"}
    data = tmp_path / "data"
    async with fakes(["tokyo", "newyork", "berlin"]) as fake:
        ports = {n: f.port for n, f in fake.items()}
        cfg = fleet_file(tmp_path / "fleet.toml", data, ["tokyo", "newyork"], ports)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tollwatch", "run", "--config", str(cfg), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:  # replay only once both are logged in (a loaded CI box starts the process slowly)
            await wait_for(lambda: {"tokyo", "newyork"} <= set(lines_of(data)) and all(
                lines_of(data)[n]["connected"] for n in ("tokyo", "newyork")), timeout=60)
            await fake["tokyo"].replay(fixtures / "ami-attack.txt")
            await wait_for(lambda: {"tokyo", "newyork"} <= set(lines_of(data))
                           and lines_of(data)["tokyo"]["open_incidents"] == 1, timeout=30)
            code, text = await tollwatch("status", "--config", str(cfg), env=env)
            assert code == 0, text
            assert "2 of 2 PBX connected" in text and "newyork" in text
            assert "America/New_York" in text
            assert "open: pbx tokyo: critical 209" in text
            scraped = generate_latest(registry_for(data)).decode()
            assert 'tollwatch_pbx_connected{pbx="tokyo"} 1.0' in scraped
            assert 'tollwatch_pbx_incidents_open{pbx="tokyo"} 1.0' in scraped
            assert 'tollwatch_pbx_incidents_open{pbx="newyork"} 0.0' in scraped
            fleet_file(cfg, data, ["tokyo", "berlin"], ports)  # newyork out, berlin in
            proc.send_signal(signal.SIGHUP)
            await wait_for(lambda: set(lines_of(data)) == {"tokyo", "berlin"}
                           and bool(lines_of(data)["berlin"]["connected"]), timeout=30)
            await fake["berlin"].replay(fixtures / "ami-attack.txt")
            await wait_for(lambda: lines_of(data)["berlin"]["open_incidents"] == 1, timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    log = out.decode()
    assert proc.returncode == 0, log
    assert "SIGHUP: fleet reloaded: started berlin; stopped newyork; kept tokyo" in log
    assert SECRET not in log
    logins = [a for a in fake["tokyo"].actions if a.get("Action") == "Login"]
    assert len(logins) == 1  # tokyo ran on through the reload
    for name in ("tokyo", "berlin"):
        assert [i["severity"] for i in stored(pbx_dir(data, name))] == ["critical"]
    code, text = await tollwatch("status", "--config", str(cfg), env=env)
    assert code == 3 and "STOPPED" in text

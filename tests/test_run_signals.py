"""`tollwatch run` as a process: SIGTERM stops it within seconds, with state flushed."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from tollwatch.cdr_ingest.live.fake_ami import FakeAmi


@pytest.mark.slow
async def test_sigterm_stops_cleanly_with_state_saved(tmp_path: Path, fixtures: Path) -> None:
    async with FakeAmi(username="tollwatch", secret="sig-secret") as fake:
        cfg = tmp_path / "tollwatch.toml"
        cfg.write_text(
            f'[site]\ncountry = "JP"\ntimezone = "UTC"\n[daemon]\ndata_dir = "{tmp_path}"\n'
            f'[[ami]]\nname = "pbx"\nport = {fake.port}\nusername = "tollwatch"\n'
            'secret_env = "SIG_AMI_SECRET"\n'
        )
        env = {**os.environ, "SIG_AMI_SECRET": "sig-secret"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tollwatch", "run", "--config", str(cfg),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        await fake.replay(fixtures / "ami-attack.txt")  # waits for the daemon's login
        await asyncio.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=10)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "tollwatch stopped; state saved" in text
    assert "sig-secret" not in text  # the secret never reaches the log
    db = sqlite3.connect(tmp_path / "tollwatch.sqlite3")
    [(severity,)] = db.execute("SELECT severity FROM incidents").fetchall()
    assert severity == "critical"
    assert db.execute("SELECT count(*) FROM snapshots").fetchone() == (1,)

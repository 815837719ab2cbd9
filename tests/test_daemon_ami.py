"""The daemon against a fake Asterisk replaying the real AMI recordings over TCP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import settings
from tests.test_daemon import Recorder
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi
from tollwatch.daemon import Daemon
from tollwatch.sources import ami_sources
from tollwatch.state import StateStore

SECRET = "s3cret-for-tests"


def make(tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> tuple[Daemon, Recorder]:
    monkeypatch.setenv("TEST_AMI_SECRET", SECRET)
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path), "max_backoff": "1s"},
                 ami=[{"name": "pbx", "port": port, "username": "tollwatch",
                       "secret_env": "TEST_AMI_SECRET"}])
    rec = Recorder()
    daemon = Daemon(s, StateStore.in_dir(tmp_path), [], [rec], ["pbx"])
    daemon.sources.extend(ami_sources(s, daemon.queue))
    return daemon, rec


async def wait_for(cond: Any, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


async def replay(
    tmp_path: Path, fixtures: Path, monkeypatch: pytest.MonkeyPatch, name: str,
) -> tuple[Daemon, Recorder]:
    async with FakeAmi(username="tollwatch", secret=SECRET) as fake:
        daemon, rec = make(tmp_path, fake.port, monkeypatch)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await fake.replay(fixtures / name)
        await wait_for(lambda: daemon.queue.empty())
        await asyncio.sleep(0.2)
        stop.set()
        await task
    return daemon, rec


async def test_attack_over_ami_is_critical_for_209_by_the_tenth_call(
    tmp_path: Path, fixtures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, rec = await replay(tmp_path, fixtures, monkeypatch, "ami-attack.txt")
    critical = [v for k, v in rec.sent if v["severity"] == "critical"]
    assert critical, rec.sent
    first = critical[0]
    assert first["source"] == "209" and first["regions"] == ["SL"]
    assert len(first["call_ids"]) <= 10  # critical by the 10th call
    [stored] = [i for i in daemon.store.incidents() if i["severity"] == "critical"]
    assert stored["calls"] == 24


async def test_normal_calls_over_ami_are_not_critical(
    tmp_path: Path, fixtures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon, rec = await replay(tmp_path, fixtures, monkeypatch, "ami-calls.txt")
    assert daemon.pipelines["pbx"].calls_seen == 5
    assert not [v for _, v in rec.sent if v["severity"] == "critical"]


async def test_bruteforce_gives_auth_failures_for_209(
    tmp_path: Path, fixtures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _daemon, rec = await replay(tmp_path, fixtures, monkeypatch, "ami-bruteforce.txt")
    views = {v["source"]: v for _, v in rec.sent}
    assert "auth_failures" in views["209"]["rules"]
    assert any("failed authentications for account 209" in r for r in views["209"]["reasons"])


@pytest.mark.slow
async def test_disconnect_mid_attack_then_reconnect_loses_nothing(
    tmp_path: Path, fixtures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeAmi(username="tollwatch", secret=SECRET) as fake:
        daemon, rec = make(tmp_path, fake.port, monkeypatch)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        replay_task = asyncio.create_task(
            fake.replay(fixtures / "ami-attack.txt", pause_after=900))
        await wait_for(lambda: fake.paused.is_set())
        up_before = len(fake.channels_up())
        fake.drop_clients()  # the connection dies mid-attack, calls still up
        await wait_for(lambda: not daemon.sources[0].status.connected)
        await wait_for(lambda: daemon.sources[0].status.connected, timeout=20)
        fake.resume()
        await replay_task
        await wait_for(lambda: daemon.queue.empty())
        await asyncio.sleep(0.3)
        stop.set()
        await task
    assert up_before > 0
    stored = daemon.store.incidents()
    assert len(stored) == 1  # one incident, continued across the reconnect
    assert stored[0]["severity"] == "critical" and stored[0]["calls"] == 24
    assert [k for k, _ in rec.sent].count("opened") == 1

"""Blocking on the real Asterisk 22 with sipp phones and carrier (marker `asterisk`).

The PBX runs the README's setup: the `tollwatch dialplan` snippet included outside any context
and called first in the outbound route, and the README's least-privilege AMI account. The
daemon runs in-process against it. Measured figures are printed (pytest -s shows them).
"""

from __future__ import annotations

import asyncio
import csv
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.asterisk_pbx import (
    AMI_PORT,
    AMI_SECRET,
    AMI_USER,
    Pbx,
    asterisk_pbx,
    config_dir,
    manager_conf,
    skip_reason,
)
from tests.helpers import settings
from tollwatch.alerting.remediation import BlockStore, Target
from tollwatch.alerting.remediation.dialplan import render
from tollwatch.cli_blocks import block_async
from tollwatch.config import Settings
from tollwatch.daemon import Daemon
from tollwatch.runner import build

pytestmark = [pytest.mark.asterisk]

README_READ = "system,call,security,user"  # the README's account
README_WRITE = "system,call"
EXTENSIONS = """#include tollwatch-block.conf
[general]
static=yes
writeprotect=no

[from-internal]
exten => _X.,1,Gosub(tollwatch-check,s,1(${EXTEN}))
 same => n,Dial(PJSIP/${EXTEN}@carrier,60)
 same => n,Hangup()

[from-carrier]
exten => _X.,1,Hangup()
"""
ATTACK = [f"01023276543{n:02d}" for n in range(20)]
UK = "01044207946000"
DOMESTIC = "0312345678"
SL = "0102327654399"


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pbx]:
    why = skip_reason()  # here, not at import: a run that deselects these tests pays nothing
    if why:
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("asterisk")
    etc = config_dir(tmp / "etc", extensions=EXTENSIONS,
                     manager=manager_conf(README_READ, README_WRITE),
                     extra={"tollwatch-block.conf": render(settings("JP"))})  # fmt: skip
    with asterisk_pbx(tmp, etc) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean(pbx: Pbx, monkeypatch: pytest.MonkeyPatch) -> None:
    pbx.cli("database deltree tollwatch")
    monkeypatch.setenv("TW_AST_SECRET", AMI_SECRET)


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def send(self, kind: str, view: dict[str, Any]) -> None:
        self.seen.append((kind, dict(view)))

    def critical_at(self) -> int | None:
        """The incident's call count when it first was critical."""
        for _, v in self.seen:
            if v.get("severity") == "critical" and "calls" in v:
                return int(v["calls"])
        return None


def make(tmp: Path, pbx: Pbx, port: int = AMI_PORT, **rem: Any) -> Settings:
    return settings(
        "JP", "UTC",
        daemon={"data_dir": str(tmp / "data"), "max_backoff": "1s"},
        ami=[{"name": "pbx", "host": "127.0.0.1", "port": port, "username": AMI_USER,
              "secret_env": "TW_AST_SECRET", "cdr_file": str(pbx.cdr)}],
        remediation={"enabled": True, **rem},
    )  # fmt: skip


class Running:
    def __init__(self, s: Settings) -> None:
        self.daemon: Daemon = build(s)
        self.rec = Recorder()
        self.daemon.alerters.append(self.rec)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.daemon.run(self.stop))
        feed = self.daemon.sources[0]
        async with asyncio.timeout(10):
            while not feed.status.connected:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, 20)

    async def settle(self, seconds: float = 1.0) -> None:
        await asyncio.sleep(seconds)


def cdr_rows(pbx: Pbx) -> list[list[str]]:
    with pbx.cdr.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def refused(row: list[str]) -> bool:
    return row[17].startswith("tollwatch-blocked:")


async def call(pbx: Pbx, source: str, dialed: str) -> bool:
    return await asyncio.to_thread(pbx.call, source, dialed)


async def calls(pbx: Pbx, *placed: tuple[str, str]) -> dict[tuple[str, str], bool]:
    """Several single calls at once (each its own sipp): (source, dialed) -> went through."""
    got = await asyncio.gather(*(call(pbx, src, dialed) for src, dialed in placed))
    return dict(zip(placed, got, strict=True))


async def attack(pbx: Pbx, numbers: list[str], source: str = "209") -> None:
    await asyncio.to_thread(pbx.calls, source, numbers, 2.0)


async def test_attack_blocked_by_range_others_pass(pbx: Pbx, tmp_path: Path) -> None:
    s = make(tmp_path, pbx)
    before = len(cdr_rows(pbx)) if pbx.cdr.exists() else 0
    async with Running(s) as run:
        await attack(pbx, ATTACK)
        await run.settle(1.5)
        rows = [r for r in cdr_rows(pbx)[before:] if r[1] == "209" and r[2] in ATTACK]
        outcome = [refused(r) for r in rows]
        first_refused = outcome.index(True) + 1
        critical_at = run.rec.critical_at()
        print(f"\nattack 2 calls/s from 209: critical at call {critical_at}, refused from call "
              f"{first_refused}; {sum(outcome)}/{len(outcome)} refused")  # fmt: skip
        assert critical_at is not None and critical_at <= 10
        assert first_refused <= 12 and all(outcome[first_refused - 1:])
        # the default policy blocked the attack's number range, nothing else
        store = BlockStore.in_dir(tmp_path / "data")
        assert [(r.kind, r.value) for r in store.active()] == [("prefix", "23276543")]
        # after the incident: 209's and 201's UK calls, 110 and a domestic number pass
        got = await calls(pbx, ("209", UK), ("201", UK), ("209", "110"), ("201", "110"),
                          ("209", DOMESTIC), ("201", DOMESTIC), ("201", SL))  # fmt: skip
        assert got.pop(("201", SL)) is False  # the blocked range, from anyone
        assert all(got.values()), got
        await run.settle(1.5)
        assert [(r.kind, r.value) for r in store.active()] == [("prefix", "23276543")]
    # refused attempts counted on the incident (UserEvent), as many as the CDR shows
    [incident] = [i for i in run.daemon.store.incidents() if i["source"] == "209"]
    assert incident["attempts_refused"] == sum(outcome)
    # the attack's calls that went through, and 209's later (international) UK call
    assert incident["calls"] == len(outcome) - sum(outcome) + 1


async def test_source_block_refuses_only_its_international_calls(
    pbx: Pbx, tmp_path: Path
) -> None:
    s = make(tmp_path, pbx, block="source")
    async with Running(s) as run:
        await attack(pbx, ATTACK[:12])
        await run.settle(1.0)
        store = BlockStore.in_dir(tmp_path / "data")
        assert [(r.kind, r.value) for r in store.active()] == [("source", "209")]
        got = await calls(pbx, ("209", UK), ("201", UK), ("209", "110"), ("201", "110"),
                          ("209", DOMESTIC), ("201", DOMESTIC))  # fmt: skip
        assert got.pop(("209", UK)) is False
        assert all(got.values()), got


async def test_short_ttl_block_expires(pbx: Pbx, tmp_path: Path) -> None:
    s = make(tmp_path, pbx)
    line = await block_async(s, Target("prefix", "44"), None, 3.0, "test", "tester")
    assert line.startswith("blocked the whole of +44 (United Kingdom, ")
    started = time.monotonic()
    assert not await call(pbx, "201", UK)
    await asyncio.sleep(max(0.0, 3.5 - (time.monotonic() - started)))
    assert await call(pbx, "201", UK)


async def test_restart_with_astdb_deleted_block_back_before_first_call(
    pbx: Pbx, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    s = make(tmp_path, pbx)
    async with Running(s) as run:
        # the block is the daemon's own (same store); a restart must not lose it
        await block_async(s, Target("prefix", "232"), None, 600.0, "test", "tester")
        await asyncio.to_thread(pbx.restart, True)
        up = time.monotonic()
        while "tollwatch/block/232" not in pbx.cli("database show tollwatch"):
            assert time.monotonic() - up < 10, "block not back within 10 s of Asterisk up"
            await asyncio.sleep(0.1)
        latency = time.monotonic() - up
        print(f"\nrestart with AstDB deleted: block back {latency:.2f} s after Asterisk was up")
        assert not await call(pbx, "209", SL)
        await run.settle(0.5)
    said = [r.getMessage() for r in caplog.records if "Asterisk restarted" in r.getMessage()]
    assert said and "uptime" in said[0]


class Proxy:
    """A TCP proxy between the daemon and AMI that can cut the line."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.cut = False
        self.pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        self.pairs.append((writer, up_w))

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def cut_now(self) -> None:
        self.cut = True
        for a, b in self.pairs:
            a.close()
            b.close()
        self.pairs.clear()

    async def close(self) -> None:
        self.cut_now()
        if self.server is not None:
            self.server.close()


async def test_ami_outage_mid_attack_one_incident_with_every_call(
    pbx: Pbx, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = Proxy(AMI_PORT)
    await proxy.start()
    s = make(tmp_path, pbx, proxy.port)
    s.remediation.enabled = False  # dry run: every call of the attack goes through
    numbers = [f"01023276541{n:02d}" for n in range(30)]
    try:
        async with Running(s) as run:
            sipp = asyncio.create_task(attack(pbx, numbers))
            await asyncio.sleep(3.0)
            proxy.cut_now()
            await asyncio.sleep(10.0)
            proxy.cut = False
            await sipp
            await run.settle(3.0)
    finally:
        await proxy.close()
    placed = [r for r in cdr_rows(pbx) if r[1] == "209" and r[2] in numbers]
    assert len(placed) == 30
    incidents = [i for i in run.daemon.store.incidents() if i["source"] == "209"]
    print(f"\nAMI cut 10 s mid-attack: {len(incidents)} incident(s) holding "
          f"{[i['calls'] for i in incidents]} of {len(placed)} calls")  # fmt: skip
    recovered = [r.getMessage() for r in caplog.records if "of the AMI outage recovered" in
                 r.getMessage()]  # fmt: skip
    print(recovered)
    assert recovered and not recovered[0].startswith("pbx pbx: 0 ")
    assert len(incidents) == 1
    assert incidents[0]["calls"] == 30
    assert sorted(incidents[0]["call_ids"]) == sorted(r[16] for r in placed)


async def test_a_number_ended_with_the_send_key_is_refused_like_the_number(pbx: Pbx) -> None:
    """'0102327654399#' went to the carrier past a block of +232 (the snippet passed anything
    that was not all digits), and tollwatch read it as a feature code: now it is the number
    for both. Without a block the same string reaches the carrier (the route takes it)."""
    before = len(cdr_rows(pbx)) if pbx.cdr.exists() else 0
    assert await call(pbx, "201", SL + "#") is True
    pbx.cli(f'database put tollwatch/block 232 "{int(time.time()) + 600}|test"')
    assert await call(pbx, "201", SL + "#") is False
    assert await call(pbx, "201", UK + "#") is True
    rows = [r for r in cdr_rows(pbx)[before:] if r[1] == "201"]
    assert [(r[2], refused(r)) for r in rows] == [
        (SL + "#", False), (SL + "#", True), (UK + "#", False)]
    assert rows[1][17] == "tollwatch-blocked:232"


async def test_spaces_and_parentheses_in_the_dialed_number_do_not_pass_a_block(pbx: Pbx) -> None:
    """A SIP URI brings them into EXTEN (%20, %28, %29) and the route still dials the number:
    '010 232 765 4399' went to the carrier past a block of +232 (the snippet passed anything
    that was not all digits after '-' and '.'), while tollwatch read it as +2327654399."""
    before = len(cdr_rows(pbx)) if pbx.cdr.exists() else 0
    pbx.cli(f'database put tollwatch/block 232 "{int(time.time()) + 600}|test"')
    placed = ["010%20232%20765%204399", "010%28232%297654399", "0102327654399%20",
              "010%2044%2020%207946%200000"]
    went = [await call(pbx, "201", dialed) for dialed in placed]  # one after the other
    rows = [r for r in cdr_rows(pbx)[before:] if r[1] == "201"]
    assert [(r[2], refused(r)) for r in rows] == [
        ("010 232 765 4399", True), ("010(232)7654399", True), ("0102327654399 ", True),
        ("010 44 20 7946 0000", False)]  # the UK still goes through
    assert went == [False, False, False, True]
    # the snippet's CUT at ';' (SIP URI parameters) as Asterisk read it: '\\;' is a ';'
    shown = pbx.cli("dialplan show s@tollwatch-check")
    assert "Set(LOCAL(tw_raw)=${CUT(tw_raw,;,1)})" in shown, shown


async def test_a_privacy_or_carrier_code_before_the_number_does_not_pass_a_block(
        pbx: Pbx) -> None:
    """Japan's caller-ID codes (184 withhold, 186 send) and carrier codes before 010 (0033 NTT
    Communications, 0061 SoftBank) are taken off by the network, which still connects the call
    abroad: the snippet read '184 010 232...' as a domestic number and let it past a block of
    +232, and tollwatch classified it as domestic."""
    before = len(cdr_rows(pbx)) if pbx.cdr.exists() else 0
    pbx.cli(f'database put tollwatch/block 232 "{int(time.time()) + 600}|test"')
    placed = ["184" + SL, "0033" + SL, "1840061" + SL, "186" + UK]
    went = [await call(pbx, "201", dialed) for dialed in placed]  # one after the other
    rows = [r for r in cdr_rows(pbx)[before:] if r[1] == "201"]
    assert [(r[2], refused(r)) for r in rows] == [
        ("184" + SL, True), ("0033" + SL, True), ("1840061" + SL, True), ("186" + UK, False)]
    assert went == [False, False, False, True]
    assert rows[0][17] == "tollwatch-blocked:232"

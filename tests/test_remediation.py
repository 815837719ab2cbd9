"""Remediation: exact AMI actions against FakeAmi, safety refusals, expiry, rate limit,
re-apply after a restart, and the CLI commands."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import FIXTURES
from tests.helpers import settings
from tollwatch import cli_blocks
from tollwatch.alerting.remediation import AmiClient, Blocker, BlockRefused, BlockStore, Target
from tollwatch.cdr_ingest.live.ami import AmiSource
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi, parse_frames
from tollwatch.config import Settings
from tollwatch.report.reconcile import block_state, incident_blocks

NOW = 1_795_526_552  # 2026-11-24T13:22:32Z
DAY = 86_400
PUT_OK = "Updated database successfully"


class Clock:
    def __init__(self) -> None:
        self.t = float(NOW)

    def __call__(self) -> float:
        return self.t


class Told:
    """A notify hook that keeps what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, kind: str, view: dict[str, Any]) -> None:
        self.calls.append((kind, view))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.calls]


def make(tmp: Path, port: int = 5038, **rem: Any) -> Settings:
    rem.setdefault("prefix", "calling_code")  # the scope's own tests use the default "range"
    return settings(
        "JP",
        remediation=rem,
        daemon={"data_dir": str(tmp)},
        ami=[{"name": "acme", "host": "127.0.0.1", "port": port, "username": "tollwatch",
              "secret_env": "TW_TEST_AMI_SECRET"}],
    )  # fmt: skip


def view(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "inc-1",
        "pbx": "acme",
        "severity": "critical",
        "rules": ["burst", "high_risk"],
        "source": "209",
        "destinations": ["Sierra Leone (+232)"],
        "numbers": ["+2327654300", "+2327654301"],
        "call_ids": [],
    }
    base.update(over)
    return base


def sent(ami: FakeAmi) -> list[dict[str, str]]:
    """Actions after the login, without ActionIDs."""
    return [{k: v for k, v in a.items() if k != "ActionID"} for a in ami.actions
            if a.get("Action") not in ("Login", "Logoff")]  # fmt: skip


def put(family: str, key: str, val: str) -> dict[str, str]:
    return {"Action": "DBPut", "Family": family, "Key": key, "Val": val}


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_block_sends_exact_dbput_for_prefix_and_source(tmp_path: Path, clock: Clock) -> None:
    s = make(tmp_path, enabled=True, block="both", hangup=False)
    told = Told()
    async with FakeAmi() as ami, AmiClient("acme", "127.0.0.1", ami.port, "tollwatch",
                                           "secret") as client:  # fmt: skip
        blocker = Blocker(s, {"acme": client}, notify=told, clock=clock)
        await blocker.handle("escalated", view())
        val = f"{NOW + DAY}|incident inc-1 critical burst,high_risk"
        assert sent(ami) == [put("tollwatch/block", "232", val), put("tollwatch/src", "209", val)]
        assert ami.db == {("tollwatch/block", "232"): val, ("tollwatch/src", "209"): val}
        # the same incident growing does not block again
        await blocker.handle("updated", view(calls=30))
        assert len(sent(ami)) == 2
    assert told.kinds() == ["blocked"]
    blocks = told.calls[0][1]["blocks"]
    assert [(b["kind"], b["value"], b["lift"], b["dry_run"]) for b in blocks] == [
        ("prefix", "232", "tollwatch unblock 232", False),
        ("source", "209", "tollwatch unblock --source 209", False),
    ]
    assert blocks[0]["expires_at"] == "2026-11-25T13:22:32+00:00"
    rows = BlockStore.in_dir(tmp_path).active()
    assert [(r.kind, r.value, r.pbx, r.origin, r.incident_id, r.created_at, r.expires_at,
             r.dry_run, r.applied_at) for r in rows] == [
        ("prefix", "232", "acme", "auto", "inc-1", NOW, NOW + DAY, False, NOW),
        ("source", "209", "acme", "auto", "inc-1", NOW, NOW + DAY, False, NOW),
    ]  # fmt: skip


async def test_policy_severity_rules_and_prefix_modes(tmp_path: Path, clock: Clock) -> None:
    s = make(tmp_path, enabled=True, hangup=False, rules=["burst"], prefix="risk_prefix",
             severity="critical")  # fmt: skip
    async with FakeAmi() as ami, AmiClient("acme", "127.0.0.1", ami.port, "tollwatch",
                                           "secret") as client:  # fmt: skip
        blocker = Blocker(s, {"acme": client}, clock=clock)
        await blocker.handle("opened", view(severity="warning"))
        await blocker.handle("escalated", view(rules=["night"]))
        await blocker.handle("blocked", view())  # our own notifications come back: ignored
        assert sent(ami) == []
        # Jamaica: high-risk entry 1-876; the UK (+44) is neither high-risk nor known to be
        # new for the site (no baseline): not blocked
        await blocker.handle("escalated", view(numbers=["+18765551234", "+441234567890"]))
        assert [(a["Family"], a["Key"]) for a in sent(ami)] == [("tollwatch/block", "1876")]


async def test_dry_run_sends_nothing_but_records_and_notifies(tmp_path: Path, clock: Clock) -> None:
    s = make(tmp_path, block="both")  # enabled = false: the default
    told = Told()
    async with FakeAmi() as ami, AmiClient("acme", "127.0.0.1", ami.port, "tollwatch",
                                           "secret") as client:  # fmt: skip
        blocker = Blocker(s, {"acme": client}, notify=told, clock=clock)
        await blocker.handle("escalated", view(call_ids=["1795526553.8"]))
        clock.t += DAY
        lifted = await blocker.expire()
        assert [a["Action"] for a in ami.actions] == ["Login"]
        assert ami.db == {}
    assert [r.value for r in lifted] == ["232", "209"]
    assert told.kinds() == ["blocked", "unblocked"]
    assert told.calls[0][1]["dry_run"] is True
    assert all(b["dry_run"] for b in told.calls[0][1]["blocks"])
    rows = BlockStore.in_dir(tmp_path).history()
    assert {(r.value, r.dry_run, r.lifted_by) for r in rows} == {
        ("232", True, "expiry"), ("209", True, "expiry")
    }  # fmt: skip


@pytest.mark.parametrize(
    ("country", "prefix", "why"),
    [
        ("JP", "110", "emergency"),
        ("JP", "119", "emergency"),
        ("US", "911", "emergency"),
        ("US", "411", "service"),
        ("JP", "81", "home country"),
        ("US", "1", "home country"),
        ("JP", "44", "allowlisted"),
        ("JP", "4420", "allowlisted"),
        ("JP", "4", "shorter than a calling code"),
        ("JP", "2", "shorter than a calling code"),
        ("JP", "0232", "looks dialed"),
        ("JP", "123456789", "longer than 8"),
        ("JP", "23x", "not an E.164 prefix"),
    ],
)
async def test_refusals(tmp_path: Path, country: str, prefix: str, why: str) -> None:
    s = settings(country, allowlist={"prefixes": ["44"]}, remediation={"enabled": True},
                 daemon={"data_dir": str(tmp_path)})  # fmt: skip
    blocker = Blocker(s, {})
    with pytest.raises(BlockRefused, match=why):
        await blocker.block(Target("prefix", prefix), ["acme"], reason="x", origin="cli:root")
    assert BlockStore.in_dir(tmp_path).history() == []


async def test_source_refusals_and_pbx_wide_incident(tmp_path: Path, clock: Clock) -> None:
    s = make(tmp_path, enabled=True, block="source", hangup=False)
    told = Told()
    blocker = Blocker(s, {}, notify=told, clock=clock)
    for bad in ("*", "", "PJSIP/209", "110"):
        with pytest.raises(BlockRefused):
            await blocker.block(Target("source", bad), ["acme"], reason="x", origin="auto")
    await blocker.handle("escalated", view(source="*"))
    assert told.kinds() == ["blocked"]
    assert told.calls[0][1]["blocks"] == []
    assert "no single source" in told.calls[0][1]["refused"][0]["why"]
    await blocker.handle("updated", view(source="*"))  # a refusal is said once
    assert told.kinds() == ["blocked"]


async def test_expiry_lifts_with_dbdel(tmp_path: Path, clock: Clock) -> None:
    s = make(tmp_path, enabled=True, hangup=False, ttl="2h")
    told = Told()
    async with FakeAmi() as ami, AmiClient("acme", "127.0.0.1", ami.port, "tollwatch",
                                           "secret") as client:  # fmt: skip
        blocker = Blocker(s, {"acme": client}, notify=told, clock=clock)
        await blocker.handle("escalated", view())
        clock.t += 7199
        assert await blocker.expire() == []
        clock.t += 1
        lifted = await blocker.expire()
        assert sent(ami) == [
            put("tollwatch/block", "232", f"{NOW + 7200}|incident inc-1 critical burst,high_risk"),
            {"Action": "DBDel", "Family": "tollwatch/block", "Key": "232"},
        ]
        assert ami.db == {}
        # a key already gone from AstDB ("Database entry not found") is not an error
        await blocker.block(Target("prefix", "53"), ["acme"], reason="r", origin="auto", ttl=1)
        ami.db.clear()
        clock.t += 5
        assert [r.value for r in await blocker.expire()] == ["53"]
    assert [(r.value, r.lifted_by, r.lifted_at) for r in lifted] == [("232", "expiry", NOW + 7200)]
    kind, unblocked = told.calls[1]
    assert kind == "unblocked" and unblocked["blocks"][0]["value"] == "232"
    assert unblocked["pbx"] == "acme" and unblocked["id"] == "inc-1"


async def test_run_loop_lifts_and_stops(tmp_path: Path) -> None:
    s = make(tmp_path, enabled=True, hangup=False)
    now = [float(NOW)]
    async with FakeAmi() as ami, AmiClient("acme", "127.0.0.1", ami.port, "tollwatch",
                                           "secret") as client:  # fmt: skip
        blocker = Blocker(s, {"acme": client}, clock=lambda: now[0], interval=0.01)
        await blocker.block(Target("prefix", "232"), ["acme"], reason="r", origin="auto", ttl=60)
        task = asyncio.create_task(blocker.run())
        now[0] += 61
        await until(lambda: ami.db == {})
        await blocker.close()
        await asyncio.wait_for(task, 2)


async def test_rate_limit(tmp_path: Path, clock: Clock) -> None:
    s = make(tmp_path, enabled=True, hangup=False, max_per_hour=2)
    told = Told()
    async with FakeAmi() as ami, AmiClient("acme", "127.0.0.1", ami.port, "tollwatch",
                                           "secret") as client:  # fmt: skip
        blocker = Blocker(s, {"acme": client}, notify=told, clock=clock)
        await blocker.handle("escalated", view(id="a", numbers=["+2327654300"]))
        await blocker.handle("escalated", view(id="b", numbers=["+5371234567"]))
        await blocker.handle("escalated", view(id="c", numbers=["+37052001234"]))
        assert [a["Key"] for a in sent(ami)] == ["232", "53"]
        refused = told.calls[-1][1]["refused"]
        assert refused[0]["value"] == "370"
        assert "rate limit: 2 automatic blocks in the last hour" in refused[0]["why"]
        # an administrator is not rate limited
        await blocker.block(Target("prefix", "882"), ["acme"], reason="r", origin="cli:root")
        # an hour later automatic blocks go again
        clock.t += 3601
        await blocker.handle("updated", view(id="c", numbers=["+37052001234"]))
        assert [a["Key"] for a in sent(ami)] == ["232", "53", "882", "370"]


async def test_reapply_after_restart(tmp_path: Path, clock: Clock) -> None:
    s = make(tmp_path, enabled=True, block="both", hangup=False)
    async with FakeAmi() as ami, AmiClient("acme", "127.0.0.1", ami.port, "tollwatch",
                                           "secret") as client:  # fmt: skip
        blocker = Blocker(s, {"acme": client}, clock=clock)
        await blocker.handle("escalated", view())
        before = dict(ami.db)
        ami.actions.clear()
        assert await blocker.reapply("acme") == []  # AstDB kept them: only looked
        assert sent(ami) == [
            {"Action": "DBGet", "Family": "tollwatch/block", "Key": "232"},
            {"Action": "DBGet", "Family": "tollwatch/src", "Key": "209"},
        ]
        del ami.db["tollwatch/block", "232"]  # Asterisk restarted without it
        ami.actions.clear()
        restored = await blocker.reapply("acme")
        assert [r.value for r in restored] == ["232"]
        assert sent(ami) == [
            {"Action": "DBGet", "Family": "tollwatch/block", "Key": "232"},
            put("tollwatch/block", "232", before["tollwatch/block", "232"]),
            {"Action": "DBGet", "Family": "tollwatch/src", "Key": "209"},
        ]
        assert ami.db == before


async def test_with_the_daemons_ami_source(tmp_path: Path, clock: Clock) -> None:
    """panoramisk Messages (and lists of them) work as well as plain dicts."""
    s = make(tmp_path, enabled=True, hangup=False)
    async with FakeAmi() as ami:
        source = AmiSource("acme", "127.0.0.1", ami.port, "tollwatch", "secret")
        task = asyncio.create_task(source.run())
        await until(lambda: source.status.connected)
        blocker = Blocker(s, {"acme": source}, clock=clock)
        await blocker.handle("escalated", view())
        ami.db.clear()
        assert [r.value for r in await blocker.reapply("acme")] == ["232"]
        assert ami.db["tollwatch/block", "232"].startswith(f"{NOW + DAY}|")
        clock.t += DAY
        await blocker.expire()
        assert ami.db == {}
        await source.close()
        await task


class Recorded:
    """Answers with the responses a real Asterisk 22 sent (ami-actions.txt)."""

    def __init__(self) -> None:
        msgs = parse_frames((FIXTURES / "ami-actions.txt").read_bytes())
        by_id: dict[str, list[dict[str, str]]] = {}
        for m in msgs:
            if "ActionID" in m and ("Response" in m or m.get("Event", "").startswith("DBGet")):
                by_id.setdefault(m["ActionID"], []).append(m)
        self.answers = {"DBPut": by_id["cap-7"][0], "DBGet": by_id["cap-8"],
                        "DBDel": by_id["cap-9"][0]}  # fmt: skip
        self.actions: list[Mapping[str, str]] = []

    async def send_action(self, action: Mapping[str, str]) -> Any:
        self.actions.append(action)
        return self.answers[action["Action"]]


async def test_real_asterisk_responses(tmp_path: Path, clock: Clock) -> None:
    s = make(tmp_path, enabled=True, hangup=False)
    real = Recorded()
    assert real.answers["DBPut"]["Message"] == PUT_OK
    blocker = Blocker(s, {"acme": real}, clock=clock)
    await blocker.handle("escalated", view())
    assert await blocker.reapply("acme") == []  # DBGet list answer: the key is there
    clock.t += DAY
    assert [r.value for r in await blocker.expire()] == ["232"]
    assert [a["Action"] for a in real.actions] == ["DBPut", "DBGet", "DBDel"]


async def test_hangup_only_of_calls_a_block_applies_to(tmp_path: Path, clock: Clock) -> None:
    s = make(tmp_path, enabled=True, hangup=True)
    told = Told()
    async with FakeAmi() as ami, AmiClient("acme", "127.0.0.1", ami.port, "tollwatch",
                                           "secret") as client:  # fmt: skip
        replay = asyncio.create_task(ami.replay(FIXTURES / "ami-calls.txt", pause_after=150))
        await until(ami.paused.is_set)
        up = {c["Channel"].split("/")[1].split("-")[0]: c for c in ami.channels_up()
              if c["Channel"].startswith("PJSIP/2")}  # fmt: skip
        # 201 dialed a Tokyo number, 203 Sierra Leone: the incident (both calls) blocks +232
        ids = [up["201"]["Uniqueid"], up["203"]["Uniqueid"], "x.1"]
        blocker = Blocker(s, {"acme": client}, notify=told, clock=clock)
        await blocker.handle("escalated", view(source="203", call_ids=ids))
        assert [a["Action"] for a in sent(ami)] == ["DBPut", "CoreShowChannels", "Hangup"]
        assert sent(ami)[-1] == {"Action": "Hangup", "Channel": up["203"]["Channel"]}
        assert ami.hung_up == [up["203"]["Channel"]]
        assert told.calls[0][1]["hung_up"] == [up["203"]["Channel"]]
        ami.resume()
        await replay


class NoList:
    """A sender whose CoreShowChannels fails."""

    def __init__(self) -> None:
        self.actions: list[Mapping[str, str]] = []

    async def send_action(self, action: Mapping[str, str]) -> Any:
        self.actions.append(action)
        if action["Action"] == "CoreShowChannels":
            return {"Response": "Error", "Message": "Permission denied"}
        return {"Response": "Success", "Message": PUT_OK}


async def test_no_hangup_without_the_channel_list(tmp_path: Path, clock: Clock) -> None:
    """Without CoreShowChannels nothing says which calls a block applies to: none is hung up
    (a regex on the source would also end its calls to destinations nobody blocked)."""
    s = make(tmp_path, enabled=True, hangup=True)
    sender = NoList()
    blocker = Blocker(s, {"acme": sender}, clock=clock)
    await blocker.handle("escalated", view(call_ids=["1795526553.8"]))
    assert [a["Action"] for a in sender.actions] == ["DBPut", "CoreShowChannels"]


async def test_unreachable_pbx_block_recorded_then_applied_on_boot(
    tmp_path: Path, clock: Clock
) -> None:
    s = make(tmp_path, enabled=True, hangup=False)
    async with FakeAmi() as ami:
        client = AmiClient("acme", "127.0.0.1", ami.port, "tollwatch", "secret")  # not connected
        blocker = Blocker(s, {"acme": client}, clock=clock)
        await blocker.handle("escalated", view())
        rec = BlockStore.in_dir(tmp_path).active()[0]
        assert rec.value == "232" and not rec.applied  # recorded, but Asterisk does not hold it
        blocks = BlockStore.in_dir(tmp_path)
        state = block_state(incident_blocks({"id": "inc-1"}, blocks))[0]
        assert state == "block NOT applied"  # a report never calls it blocked
        async with client:
            assert [r.value for r in await blocker.reapply("acme")] == ["232"]
        assert ("tollwatch/block", "232") in ami.db
        rec = BlockStore.in_dir(tmp_path).active()[0]
        assert rec.applied and rec.applied_at == NOW
        assert block_state(incident_blocks({"id": "inc-1"}, blocks))[0] == "blocked"


def test_a_block_file_from_before_applied_at_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "blocks.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE blocks (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
                   " value TEXT NOT NULL, pbx TEXT NOT NULL, reason TEXT NOT NULL, incident_id"
                   " TEXT, origin TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER"
                   " NOT NULL, lifted_at INTEGER, lifted_by TEXT, dry_run INTEGER NOT NULL"
                   " DEFAULT 0)")
        db.execute("INSERT INTO blocks (kind, value, pbx, reason, origin, created_at, expires_at)"
                   " VALUES ('prefix', '232', 'acme', 'r', 'auto', 1, 2)")
    store = BlockStore(path)
    (old,) = store.active()
    assert old.value == "232" and old.applied_at is None and not old.applied
    store.mark_applied([old.id], 5)
    assert store.get(old.id).applied_at == 5
    store.close()


# ---- CLI ------------------------------------------------------------------------------------


def cli_app() -> typer.Typer:
    app = typer.Typer()
    for fn in (cli_blocks.block, cli_blocks.unblock, cli_blocks.blocks, cli_blocks.dialplan):
        app.command()(fn)
    return app


def write_config(tmp: Path, port: int, enabled: bool = False) -> Path:
    path = tmp / "tollwatch.toml"
    path.write_text(
        f'[site]\ncountry = "JP"\n[daemon]\ndata_dir = "{tmp / "data"}"\n'
        f"[remediation]\nenabled = {'true' if enabled else 'false'}\n"
        f'[[ami]]\nname = "acme"\nport = {port}\nusername = "tollwatch"\n'
        'secret_env = "TW_TEST_AMI_SECRET"\n',
        encoding="utf-8",
    )
    return path


async def test_cli_block_unblock_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_AMI_SECRET", "secret")
    monkeypatch.setenv("SUDO_USER", "alice")
    runner = CliRunner()
    app = cli_app()

    def run(*args: str) -> Any:
        return runner.invoke(app, [*args, "--config", str(cfg)])

    async with FakeAmi() as ami:
        cfg = write_config(tmp_path, ami.port)  # dry run: an admin's command still acts
        res = await asyncio.to_thread(run, "block", "+232", "--ttl", "2h", "--reason", "fraud")
        assert res.exit_code == 0, res.output
        assert res.output.startswith("blocked the whole of Sierra Leone (+232) on acme until ")
        assert "(lift: tollwatch unblock 232)" in res.output
        (action,) = sent(ami)
        assert action["Action"] == "DBPut" and action["Family"] == "tollwatch/block"
        assert action["Key"] == "232" and action["Val"].endswith("|fraud")
        res = await asyncio.to_thread(run, "block", "--source", "209")
        assert res.exit_code == 0 and "blocked international calls from 209" in res.output
        # the dialed form (international prefix 010) is converted, with a note
        res = await asyncio.to_thread(run, "block", "0102327654", "--ttl", "1h")
        assert res.exit_code == 0, res.output
        assert "note: 0102327654 is the dialed form (international prefix 010); using " \
               "+2327654" in res.output
        assert "blocked numbers starting +232 7654 (Sierra Leone)" in res.output
        res = await asyncio.to_thread(run, "unblock", "+2327654")
        res = await asyncio.to_thread(run, "blocks")
        lines = res.output.splitlines()
        assert len(lines) == 2 and "cli:alice" in lines[0] and "+232" in lines[0]
        assert all(line.endswith("AstDB: yes") for line in lines), lines
        # AstDB lost +232 and holds a block tollwatch never made: both flagged, exit 1
        val = ami.db.pop(("tollwatch/block", "232"))
        ami.db[("tollwatch/block", "53")] = val
        res = await asyncio.to_thread(run, "blocks")
        assert res.exit_code == 1
        assert "AstDB: MISSING" in res.output
        assert "DRIFT acme: +232 is active here but not in AstDB" in res.output
        assert "DRIFT acme: AstDB blocks +53 (" in res.output
        ami.db[("tollwatch/block", "232")] = ami.db.pop(("tollwatch/block", "53"))
        res = await asyncio.to_thread(run, "unblock", "232")
        assert res.exit_code == 0 and res.output.strip() == "unblocked +232 on acme"
        assert sent(ami)[-1] == {"Action": "DBDel", "Family": "tollwatch/block", "Key": "232"}
        assert list(ami.db) == [("tollwatch/src", "209")]
        res = await asyncio.to_thread(run, "blocks", "--all")
        assert "lifted" in res.output and "by cli:alice" in res.output
        n = len(ami.actions)
        res = await asyncio.to_thread(run, "block", "110")
        assert res.exit_code == 2 and "emergency" in res.output
        for bad, why in (("2", "shorter than a calling code"), ("+0232", "not E.164"),
                         ("0232", "looks dialed")):
            res = await asyncio.to_thread(run, "block", bad)
            assert res.exit_code == 2 and why in res.output, res.output
        res = await asyncio.to_thread(run, "block", "44", "--source", "209")
        assert res.exit_code == 2
        assert len(ami.actions) == n  # refused before connecting


async def test_cli_connection_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    app = cli_app()
    async with FakeAmi() as ami:
        cfg = write_config(tmp_path, ami.port)
        monkeypatch.delenv("TW_TEST_AMI_SECRET", raising=False)
        res = await asyncio.to_thread(runner.invoke, app, ["block", "232", "-c", str(cfg)])
        assert res.exit_code == 1 and "named by secret_env is not set" in res.output
        monkeypatch.setenv("TW_TEST_AMI_SECRET", "wrong")
        res = await asyncio.to_thread(runner.invoke, app, ["block", "232", "-c", str(cfg)])
        assert res.exit_code == 1 and "login failed" in res.output and "wrong" not in res.output
        res = await asyncio.to_thread(
            runner.invoke, app, ["block", "232", "--pbx", "nope", "-c", str(cfg)]
        )
        assert res.exit_code == 2 and "no AMI server named 'nope'" in res.output


def test_cli_dialplan_writes_the_snippet(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, 5038)
    out = tmp_path / "tollwatch-block.conf"
    res = CliRunner().invoke(cli_app(), ["dialplan", "--out", str(out), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    text = out.read_text(encoding="utf-8")
    assert "[tollwatch-check]" in text and "Hangup(21)" in text
    res = CliRunner().invoke(cli_app(), ["dialplan", "--config", str(cfg)])
    assert res.output == text


async def test_send_only_queues_and_run_acts(tmp_path: Path, clock: Clock) -> None:
    s = make(tmp_path, enabled=True, hangup=False)
    async with FakeAmi() as ami, AmiClient("acme", "127.0.0.1", ami.port, "tollwatch",
                                           "secret") as client:  # fmt: skip
        blocker = Blocker(s, {"acme": client}, clock=clock, interval=0.05)
        await blocker.send("escalated", view())
        await blocker.send("opened", view(id="w", severity="warning"))  # dropped at once
        assert sent(ami) == []
        task = asyncio.create_task(blocker.run())
        await until(lambda: ("tollwatch/block", "232") in ami.db)
        await blocker.send("escalated", view(id="z", numbers=["+5371234567"]))
        await blocker.close()  # what is queued is handled before close returns
        await asyncio.wait_for(task, 2)
        assert [a["Key"] for a in sent(ami)] == ["232", "53"]
        ami.db.clear()
        await blocker.on_booted("acme")
        assert len(ami.db) == 2

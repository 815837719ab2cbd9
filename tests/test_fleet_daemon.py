"""One daemon, many PBXes: fake Asterisks replaying the real AMI recordings, one per PBX."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.slack_stub import SlackStub
from tests.test_daemon_ami import wait_for
from tollwatch.alerting.remediation.store import BlockStore
from tollwatch.cdr_ingest.live.fake_ami import FakeAmi
from tollwatch.config.fleet import Fleet, load_fleet
from tollwatch.fleet_daemon import FleetSupervisor, run_fleet
from tollwatch.fleet_pipeline import fingerprint, live_settings, pbx_dir
from tollwatch.rules.base import check_rules
from tollwatch.runner import build
from tollwatch.settings import load
from tollwatch.state import StateStore, read_status_file

SECRET = "fleet-secret-for-tests"
# Three PBXes in different countries and zones; the recordings dial abroad with 010 (Japan's
# international prefix), so the PBXes outside Japan have that as their dial plan's own.
SITES = {
    "tokyo": {"site": {"country": "JP", "timezone": "Asia/Tokyo"}},
    "newyork": {"site": {"country": "US", "timezone": "America/New_York"},
                "dialplan": {"international_prefixes": ["010"]}},
    "berlin": {"site": {"country": "DE", "timezone": "Europe/Berlin"},
               "dialplan": {"international_prefixes": ["010"]}},
}
# AMI events are stamped on arrival: times (and the ids made from them) differ between runs
SAME = ("pbx", "site", "severity", "score", "source", "sources", "account", "rules", "regions",
        "destinations", "numbers", "calls")


def toml_value(value: Any) -> str:
    return json.dumps(value)  # strings, numbers and lists of strings are valid TOML as JSON


def pbx_toml(name: str, port: int, slack: str | None = None,
             secret_env: str = "FLEET_AMI_SECRET") -> str:
    body = SITES[name]
    lines = ["[[pbx]]", f'name = "{name}"']
    for section, table in body.items():
        lines.append(f"[pbx.{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    lines += ["[pbx.ami]", f"port = {port}", 'username = "tollwatch"',
              f'secret_env = "{secret_env}"']
    if slack is not None:
        lines += ["[pbx.slack]", f'channel = "#alerts-{name}"']
    return "\n".join(lines) + "\n"


def fleet_file(path: Path, data_dir: Path, pbxes: Iterable[str], ports: dict[str, int],
               slack_url: str | None = None, secret_envs: dict[str, str] | None = None) -> Path:
    head = [f'[daemon]\ndata_dir = "{data_dir}"\nmax_backoff = "1s"\nstatus_every = "1s"\n']
    if slack_url is not None:
        head.append(f'[slack]\nenabled = true\ntoken_env = "FLEET_SLACK_TOKEN"\n'
                    f'base_url = "{slack_url}"\n')
    path.write_text("".join(head) + "".join(
        pbx_toml(n, ports[n], slack_url, (secret_envs or {}).get(n, "FLEET_AMI_SECRET"))
        for n in pbxes))
    return path


def loader(path: Path) -> Any:
    def load_it() -> Fleet:
        return load_fleet(path, None, rule_checks=check_rules)

    return load_it


@contextlib.asynccontextmanager
async def fakes(names: Iterable[str]) -> AsyncIterator[dict[str, FakeAmi]]:
    async with contextlib.AsyncExitStack() as stack:
        yield {n: await stack.enter_async_context(FakeAmi("tollwatch", SECRET)) for n in names}


def comparable(incidents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({k: i.get(k) for k in SAME} for i in incidents), key=str)


def stored(data_dir: Path) -> list[dict[str, Any]]:
    store = StateStore.in_dir(data_dir)
    try:
        return store.incidents()
    finally:
        store.close()


async def drained(sup: FleetSupervisor, names: Iterable[str]) -> None:
    for name in names:
        daemon = sup.pipelines[name].daemon
        assert daemon is not None
        await wait_for(lambda d=daemon: d.queue.empty())  # type: ignore[misc]
    await asyncio.sleep(0.3)


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_AMI_SECRET", SECRET)
    monkeypatch.setenv("FLEET_SLACK_TOKEN", "xoxb-fleet-test")


async def single_site(name: str, port: int, data_dir: Path) -> tuple[Any, asyncio.Event, Any]:
    """The same PBX watched alone by a single-site daemon."""
    data_dir.mkdir(parents=True)
    s = load(None, {**SITES[name], "site": {**SITES[name]["site"], "name": name},
                    "daemon": {"data_dir": str(data_dir)},
                    "ami": [{"name": name, "port": port, "username": "tollwatch",
                             "secret_env": "FLEET_AMI_SECRET"}]}, use_default=False)
    daemon = build(s)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    return daemon, stop, task


@pytest.mark.slow
async def test_three_pbxes_give_the_incidents_of_three_single_daemons(
    tmp_path: Path, fixtures: Path
) -> None:
    attack = fixtures / "ami-attack.txt"
    stub = SlackStub().start()
    try:
        async with fakes(SITES) as fake:
            path = fleet_file(tmp_path / "fleet.toml", tmp_path / "fleet", SITES,
                              {n: f.port for n, f in fake.items()}, stub.base_url)
            sup = FleetSupervisor(loader(path), tmp_path / "fleet", 1.0)
            stop = asyncio.Event()
            task = asyncio.create_task(sup.run(stop, loader(path)()))
            await asyncio.wait_for(asyncio.gather(*(f.replay(attack) for f in fake.values())), 60)
            await drained(sup, SITES)
            await wait_for(lambda: len(stub.posts()) >= 3)
            status = sup.status()
            stop.set()
            await asyncio.wait_for(task, 60)  # stopping never hangs
        async with fakes(SITES) as fake:  # each PBX alone, the same recording
            runs = [await single_site(n, fake[n].port, tmp_path / "single" / n) for n in SITES]
            await asyncio.wait_for(asyncio.gather(*(f.replay(attack) for f in fake.values())), 60)
            for daemon, _stop, _task in runs:
                await wait_for(lambda d=daemon: d.queue.empty())
            await asyncio.sleep(0.3)
            for daemon, stop_one, task_one in runs:
                stop_one.set()
                await task_one
                daemon.store.close()
    finally:
        stub.down()
    for name in SITES:
        fleet = stored(pbx_dir(tmp_path / "fleet", name))
        alone = stored(tmp_path / "single" / name)
        assert fleet and comparable(fleet) == comparable(alone), name
        assert {i["pbx"] for i in fleet} == {name}
        assert any(i["severity"] == "critical" for i in fleet)
    # the zones differ: Tuesday 09:00 UTC is office hours in Berlin, evening in Tokyo
    by_pbx = {name: stored(pbx_dir(tmp_path / "fleet", name)) for name in SITES}
    assert by_pbx["berlin"][0]["first_call_at"] != by_pbx["tokyo"][0]["first_call_at"]
    parents = [p.body for p in stub.calls("chat.postMessage") if not p.body.get("thread_ts")]
    assert {p.get("channel") for p in parents} == {f"#alerts-{n}" for n in SITES}
    for body in parents:  # each PBX's alerts in its own channel, naming it
        assert body["channel"].removeprefix("#alerts-") in json.dumps(body)
    lines = {row["pbx"]: row for row in status["daemon"]["fleet"]}
    assert set(lines) == set(SITES)
    assert all(row["connected"] and row["open_incidents"] >= 1 for row in lines.values())
    assert all(row["blocks_dry_run"] >= 1 for row in lines.values())  # dry run by default


async def test_a_wrong_secret_or_a_malformed_stream_never_stops_the_others(
    tmp_path: Path, fixtures: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_WRONG_SECRET", "not-the-secret")
    async with fakes(SITES) as fake:
        path = fleet_file(tmp_path / "fleet.toml", tmp_path, SITES,
                          {n: f.port for n, f in fake.items()},
                          secret_envs={"berlin": "FLEET_WRONG_SECRET"})
        sup = FleetSupervisor(loader(path), tmp_path, 1.0)
        stop = asyncio.Event()
        task = asyncio.create_task(sup.run(stop, loader(path)()))
        await wait_for(lambda: fake["newyork"].clients == 1)
        fake["newyork"].inject(b"Event: Newchannel\r\n\x00\xff[/bold]\x1b[2J no colon\r\n\r\n"
                               + b"garbage without a frame end " * 200)  # a malformed stream
        await asyncio.wait_for(asyncio.gather(*(fake[n].replay(fixtures / "ami-attack.txt")
                                                for n in ("tokyo", "newyork"))), 60)
        await drained(sup, ("tokyo", "newyork"))
        berlin = sup.pipelines["berlin"].daemon
        assert berlin is not None
        await wait_for(lambda: berlin.sources[0].status.errors >= 2)  # it keeps retrying

        def berlin_retrying() -> bool:  # a status report taken while berlin waits to retry
            rows = (read_status_file(tmp_path) or {}).get("daemon", {}).get("fleet") or []
            return any(r["pbx"] == "berlin" and "retrying in" in r["connection"] for r in rows)

        await wait_for(berlin_retrying)
        doc = read_status_file(tmp_path)
        stop.set()
        await asyncio.wait_for(task, 60)  # stopping never hangs
    assert doc is not None
    lines = {row["pbx"]: row for row in doc["daemon"]["fleet"]}
    assert not lines["berlin"]["connected"] and lines["berlin"]["errors"] >= 2
    assert "retrying in" in lines["berlin"]["connection"]
    assert "not-the-secret" not in json.dumps(doc)
    for name in ("tokyo", "newyork"):
        assert lines[name]["connected"]
        assert any(i["severity"] == "critical" for i in stored(pbx_dir(tmp_path, name)))
    assert stored(pbx_dir(tmp_path, "berlin")) == []


async def test_sighup_adds_and_removes_pbxes_leaving_the_rest_running(
    tmp_path: Path, fixtures: Path
) -> None:
    async with fakes(SITES) as fake:
        ports = {n: f.port for n, f in fake.items()}
        path = fleet_file(tmp_path / "fleet.toml", tmp_path, ["tokyo", "newyork"], ports)
        captured: list[FleetSupervisor] = []
        real_init = FleetSupervisor.__init__

        def spy(self: FleetSupervisor, *args: Any, **kwargs: Any) -> None:
            real_init(self, *args, **kwargs)
            captured.append(self)

        stop = asyncio.Event()
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(FleetSupervisor, "__init__", spy)
            task = asyncio.create_task(run_fleet(loader(path), stop))
            await wait_for(lambda: captured and fake["tokyo"].clients == 1
                           and fake["newyork"].clients == 1)
        sup = captured[0]
        tokyo = sup.pipelines["tokyo"]
        fleet_file(path, tmp_path, ["tokyo", "berlin"], ports)  # newyork out, berlin in
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: "berlin" in sup.pipelines and fake["berlin"].clients == 1)
        await wait_for(lambda: "newyork" not in sup.pipelines)
        await fake["berlin"].replay(fixtures / "ami-attack.txt")
        await drained(sup, ["berlin"])
        assert sup.pipelines["tokyo"] is tokyo and not tokyo.task.done()  # type: ignore[union-attr]
        good = path.read_text()
        path.write_text(good.replace('"Asia/Tokyo"', '"Asia/Tokio"'))  # tokyo's settings broken
        await sup.reload()
        assert sup.pipelines["tokyo"] is tokyo and sup.invalid.keys() == {"tokyo"}
        path.write_text("[[pbx]\n")  # the file no longer loads: everything is kept
        await sup.reload()
        assert set(sup.pipelines) == {"tokyo", "berlin"} and tokyo.state == "running"
        logins = [a for a in fake["tokyo"].actions if a.get("Action") == "Login"]
        stop.set()
        await asyncio.wait_for(task, 60)  # stopping never hangs
    assert len(logins) == 1  # tokyo was not reconnected by the reload
    assert any(i["severity"] == "critical" for i in stored(pbx_dir(tmp_path, "berlin")))
    stopped = read_status_file(pbx_dir(tmp_path, "newyork"))
    assert stopped is not None and stopped["daemon"].get("stopped_at")  # stopped cleanly
    assert sup.reloads == 3


def test_live_settings_pair_ami_with_the_cdr_file_or_follow_the_cdr_source(
    tmp_path: Path,
) -> None:
    (tmp_path / "fleet.toml").write_text(
        '[site]\ncountry = "JP"\ntimezone = "Asia/Tokyo"\n[daemon]\ndata_dir = "/data"\n'
        '[[pbx]]\nname = "a"\ncdr = { files = ["a/Master.csv.1.gz", "a/Master.csv"] }\n'
        'ami = { username = "t", secret_env = "X" }\n'
        '[[pbx]]\nname = "b"\ncdr = { files = ["b/Master.csv"] }\n'
        '[[pbx]]\nname = "c"\ncdr = { database = "mysql://t@db/cdrdb", files = [] }\n'
    )
    fleet = load_fleet(tmp_path / "fleet.toml", None, rule_checks=check_rules)
    a, b, c = (live_settings(n, fleet.settings[n], Path("/data")) for n in "abc")
    assert a.ami[0].name == "a" and a.ami[0].cdr_file == tmp_path / "a" / "Master.csv"
    assert a.daemon.data_dir == Path("/data/pbx/a") and not a.csv_sources
    assert [(s.name, s.path) for s in b.csv_sources] == [("b", tmp_path / "b" / "Master.csv")]
    assert [s.name for s in c.db_sources] == ["c"] and not c.csv_sources
    assert fingerprint(a) == fingerprint(live_settings("a", fleet.settings["a"], Path("/data")))
    assert fingerprint(a) != fingerprint(live_settings("a", fleet.settings["a"], Path("/x")))


async def test_block_commands_act_on_one_pbx_of_a_fleet(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tollwatch.cli import app

    runner = CliRunner()
    async with fakes(["tokyo", "berlin"]) as fake:
        cfg = fleet_file(tmp_path / "fleet.toml", tmp_path / "data", ["tokyo", "berlin"],
                         {n: f.port for n, f in fake.items()})

        def run(*args: str) -> Any:
            return runner.invoke(app, [*args, "--config", str(cfg)])

        res = await asyncio.to_thread(run, "block", "+232")
        assert res.exit_code == 2 and "name the PBX with --pbx NAME (one of: tokyo, berlin)" \
            in res.output
        res = await asyncio.to_thread(run, "block", "+232", "--pbx", "berlin", "--ttl", "1h")
        assert res.exit_code == 0, res.output
        assert "on berlin" in res.output
        assert [a["Action"] for a in fake["berlin"].actions if a["Action"].startswith("DB")] \
            == ["DBPut"]
        assert not [a for a in fake["tokyo"].actions if a.get("Action") == "DBPut"]
        res = await asyncio.to_thread(run, "blocks", "--pbx", "berlin")
        assert res.exit_code == 0 and "+232" in res.output and "AstDB: yes" in res.output
        res = await asyncio.to_thread(run, "blocks", "--pbx", "tokyo", "--no-astdb")
        assert res.exit_code == 0 and res.output.strip() == "no active blocks"
        res = await asyncio.to_thread(run, "unblock", "232", "--pbx", "berlin")
        assert res.exit_code == 0 and res.output.strip() == "unblocked +232 on berlin"
    store = BlockStore.in_dir(pbx_dir(tmp_path / "data", "berlin"))  # the daemon's file
    try:
        assert [r.pbx for r in store.history(10)] == ["berlin"]
    finally:
        store.close()

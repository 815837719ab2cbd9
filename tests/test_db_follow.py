"""Following a CDR table on the real MariaDB and PostgreSQL: rows inserted while it runs, late
rows of long calls, a restart, a lost connection (cut by a proxy) — 0 lost, 0 doubled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.db_servers import SQL, CutProxy, Server, insert_freepbx, mariadb, master_rows, postgres
from tollwatch.cdr_ingest import CdrOptions
from tollwatch.cdr_ingest.database import CdrDatabase
from tollwatch.cdr_ingest.live.db_follow import DbFollower, MemoryDbPositions
from tollwatch.cdr_ingest.live.events import CallEnded, CallStarted, LiveEvent
from tollwatch.supervisor import supervise

pytestmark = pytest.mark.db
__all__ = ["mariadb", "postgres"]
FIXTURES = Path(__file__).resolve().parents[2] / "shared/fixtures/asterisk-22"


def _rows() -> list[dict[str, str]]:
    return master_rows(FIXTURES / "Master-attack.csv") + master_rows(
        FIXTURES / "Master-calls.csv"
    )


def _ended(events: list[LiveEvent]) -> Counter[str]:
    return Counter(e.call_id for e in events if isinstance(e, CallEnded))


@pytest.fixture(params=["mariadb", "postgres"])
def server(request: pytest.FixtureRequest) -> Server:
    srv: Server = request.getfixturevalue(request.param)
    table = f"cdr_follow_{request.node.name.split('[')[0][-20:]}"
    srv.execute(f"DROP TABLE IF EXISTS {table}")
    schema = "freepbx-cdr.mysql.sql" if srv.kind == "mysql" else "cdr_pgsql.sql"
    text = (SQL / schema).read_text().replace("`cdr`", table).replace(" cdr ", f" {table} ")
    text = text.replace("cdr_calldate", f"{table}_calldate")
    path = Path(f"/tmp/{srv.database}-{table}.sql")
    path.write_text(text)
    srv.script(path)
    path.unlink()
    srv.table = table  # type: ignore[attr-defined]
    return srv


def _follower(server: Server, store: MemoryDbPositions, url: str | None = None) -> DbFollower:
    db = CdrDatabase.open(url or server.url, server.table)  # type: ignore[attr-defined]
    return DbFollower("pbx1", db, CdrOptions(), store, poll=0.05)


def test_rows_while_running_late_long_calls_and_a_restart(server: Server) -> None:
    rows = _rows()
    table = server.table  # type: ignore[attr-defined]
    insert_freepbx(server, table, rows[:3])  # history: not alerted on the first start
    store = MemoryDbPositions()
    first = _follower(server, store)
    assert first.poll_once() == []
    insert_freepbx(server, table, rows[3:10])
    got = first.poll_once()
    assert _ended(got) == Counter({r["uniqueid"]: 1 for r in rows[3:10]})
    assert isinstance(got[0], CallStarted) and got[0].dialed == rows[3]["dst"]
    # a long call that started before everything read so far ends now: read, not skipped
    long_call = dict(rows[10], start="2026-11-24 13:00:00", duration="1820", billsec="1819",
                     uniqueid="1795525200.1")
    insert_freepbx(server, table, [long_call])
    assert _ended(first.poll_once()) == Counter({"1795525200.1": 1})
    assert first.poll_once() == []
    # restart: a new follower on the saved position; rows written while it was down
    insert_freepbx(server, table, rows[11:20])
    second = _follower(server, store)
    got = second.poll_once()
    assert _ended(got) == Counter({r["uniqueid"]: 1 for r in rows[11:20]})
    insert_freepbx(server, table, rows[20:])
    assert _ended(second.poll_once()) == Counter({r["uniqueid"]: 1 for r in rows[20:]})
    assert second.poll_once() == []


def test_a_burst_larger_than_one_query(server: Server) -> None:
    table = server.table  # type: ignore[attr-defined]
    store = MemoryDbPositions()
    f = _follower(server, store)
    f.max_rows = 4
    assert f.poll_once() == []
    rows = _rows()
    insert_freepbx(server, table, rows)
    assert _ended(f.poll_once()) == Counter({r["uniqueid"]: 1 for r in rows})


async def test_lost_connection_through_a_cut_proxy(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    table = server.table  # type: ignore[attr-defined]
    rows = _rows()
    store = MemoryDbPositions()
    async with CutProxy(server.port) as proxy:
        url = server.url.replace(f":{server.port}/", f":{proxy.port}/")
        follower = await asyncio.to_thread(_follower, server, store, url)
        follower.timeout = 2  # the driver's pool waits 30 s for a server that is down
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue()
        caplog.set_level(logging.INFO)
        task = asyncio.create_task(supervise(follower, queue, 0.5, first_delay=0.1))
        got: list[LiveEvent] = []

        async def wait_for(n: int) -> None:
            for _ in range(400):
                while not queue.empty():
                    got.append(queue.get_nowait())
                if len(_ended(got)) >= n:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"{len(_ended(got))} calls of {n}")

        try:
            await asyncio.sleep(0.3)  # started at the (empty) end
            await asyncio.to_thread(insert_freepbx, server, table, rows[:8])
            await wait_for(8)
            proxy.cut()
            await asyncio.to_thread(insert_freepbx, server, table, rows[8:20])
            for _ in range(100):
                if not follower.status.connected and "retrying" in follower.status.state:
                    break
                await asyncio.sleep(0.05)
            assert not follower.status.connected
            assert "retrying" in follower.status.state
            await asyncio.sleep(0.6)  # several failed retries: logged once
            proxy.resume()
            await wait_for(20)
            await asyncio.to_thread(insert_freepbx, server, table, rows[20:])
            await wait_for(len(rows))
            assert follower.status.connected
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert _ended(got) == Counter({r["uniqueid"]: 1 for r in rows})
    warned = [r for r in caplog.records if "retrying with backoff" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]
    assert table in warned[0].getMessage()  # which table, and why (no answer / refused)


async def test_daemon_follows_db_sources_across_a_restart(
    mariadb: Server, tmp_path: Path
) -> None:
    """[[db_sources]] through the daemon's own wiring: history skipped, the attack inserted
    while it runs becomes one critical incident, a restart mid-attack continues it."""
    from datetime import UTC, datetime

    from tests.helpers import settings
    from tests.test_daemon import Recorder, run_until_idle
    from tollwatch.daemon import Daemon
    from tollwatch.sources import db_sources
    from tollwatch.state import StateStore

    table = "cdr_daemon"
    text = (SQL / "freepbx-cdr.mysql.sql").read_text().replace("`cdr`", table)
    path = tmp_path / "schema.sql"
    path.write_text(text)
    mariadb.script(path)
    calls, attack = master_rows(FIXTURES / "Master-calls.csv"), master_rows(
        FIXTURES / "Master-attack.csv")
    insert_freepbx(mariadb, table, calls)  # history at the first start
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path / "state")},
                 cdr={"database": mariadb.url, "table": table},
                 db_sources=[{"name": "pbx", "poll": "1s"}])

    def daemon(rec: Recorder) -> Daemon:
        store = StateStore.in_dir(tmp_path / "state")
        d = Daemon(s, store, [], [rec], ["pbx"],
                   clock=lambda: datetime(2026, 11, 24, 13, 31, tzinfo=UTC))
        d.sources.extend(db_sources(s, store))
        return d

    first_rec = Recorder()
    first = daemon(first_rec)
    seen = lambda d: d.pipelines["pbx"].calls_seen  # noqa: E731
    task = asyncio.create_task(run_until_idle(first, lambda: seen(first) >= 10, timeout=20))
    await asyncio.sleep(1.0)
    await asyncio.to_thread(insert_freepbx, mariadb, table, attack[:10])
    await task
    assert seen(first) == 10  # the 5 old calls were not replayed
    assert first.sources[0].status.kind == "db"
    first.store.close()
    await asyncio.to_thread(insert_freepbx, mariadb, table, attack[10:])  # while stopped
    second = daemon(Recorder())
    await run_until_idle(second, lambda: seen(second) >= 14, timeout=20)
    stored = second.store.incidents()
    assert len(stored) == 1 and stored[0]["severity"] == "critical"
    assert stored[0]["calls"] == 24  # 10 before the restart + 14 after: none twice
    assert ("escalated", "critical") in [(k, v["severity"]) for k, v in first_rec.sent]
    second.store.close()


async def test_a_password_changed_while_following_is_told_at_once(
    mariadb: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """[[db_sources]]: the account's password changes under a running follower. The poll that
    fails gets a plain connection beside it once it is slow, which says "Access denied" at
    once (not after the pool's 30 s of retries, nor "no answer" after the poll's 60 s); the
    retries say it again; with the password back, it goes on: 0 lost, 0 doubled."""
    from tests.helpers import settings
    from tollwatch.sources import DbFeed, db_sources
    from tollwatch.state import StateStore

    table, user = "cdr_pw_change", f"tw_follow_{mariadb.database[-8:]}"
    text = (SQL / "freepbx-cdr.mysql.sql").read_text().replace("`cdr`", table)
    path = tmp_path / "schema.sql"
    path.write_text(text)
    mariadb.script(path)
    rows = _rows()
    with (contextlib.closing(StateStore.in_dir(tmp_path / "state")) as store,
          mariadb.mysql_user(user, "first-pw", f"{mariadb.database}.{table}")):
        monkeypatch.setenv("TW_FOLLOW_PW", "first-pw")
        url = f"mysql://{user}@127.0.0.1:{mariadb.port}/{mariadb.database}"
        s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path / "state")},
                     cdr={"database": url, "table": table, "password_env": "TW_FOLLOW_PW"},
                     db_sources=[{"name": "pbx", "poll": "1s"}])
        feed = db_sources(s, store)[0]
        assert isinstance(feed, DbFeed)
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue()
        task = asyncio.create_task(supervise(feed, queue, 0.5, first_delay=0.1))
        got: list[LiveEvent] = []

        async def until(done: Callable[[], bool], what: str) -> None:
            for _ in range(200):
                while not queue.empty():
                    got.append(queue.get_nowait())
                if done():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"{what}: {feed.status.state!r}, {len(_ended(got))} calls")

        try:
            await until(lambda: feed.follower is not None and feed.status.connected, "start")
            await asyncio.to_thread(insert_freepbx, mariadb, table, rows[:8])
            await until(lambda: len(_ended(got)) >= 8, "first rows")
            assert feed.follower is not None
            feed.follower.probe_after = 0.5  # the poll's own timeout stays 60 s
            await asyncio.to_thread(mariadb.set_mysql_password, user, "second-pw")
            await until(lambda: "Access denied" in feed.status.state, "the retry's reason")
            assert "first-pw" not in feed.status.state and "second-pw" not in feed.status.state
            await asyncio.to_thread(mariadb.set_mysql_password, user, "first-pw")
            await asyncio.to_thread(insert_freepbx, mariadb, table, rows[8:])
            await until(lambda: len(_ended(got)) >= len(rows), "the rest")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert _ended(got) == Counter({r["uniqueid"]: 1 for r in rows})

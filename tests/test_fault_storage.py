"""A full disk, a read-only data directory, corrupt state files: the daemon keeps detecting and
alerting from memory, says so once (path + errno) in the log and in `status`, and goes back to
its files by itself when the cause goes away; corrupt files are moved aside, never a crash.

The full disk is a real one: a small tmpfs mounted by the test (CI runs as root). Where mounting
is refused, the same failure is injected at the storage layer (sqlite's "database or disk is
full" from every write).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import tollwatch.config.sqlite as sqlite_mod
from tests.helpers import settings
from tests.slack_stub import SlackStub
from tollwatch.alerting.outbox import Outbox
from tollwatch.alerting.slack import SlackAlerter
from tollwatch.cdr_ingest.live import CallEnded, CallStarted, LiveEvent, SourceStatus
from tollwatch.cli import app
from tollwatch.config.schema import Slack
from tollwatch.config.sqlite import HEALTH
from tollwatch.daemon import Daemon
from tollwatch.state import StateStore, read_status_file

T0 = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)
runner = CliRunner()


# ---- a disk that can be filled, made read-only, and freed ---------------------------------------
class Disk:
    """A small tmpfs (real ENOSPC/EROFS), or a directory with the failure injected."""

    def __init__(self, path: Path, real: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path = path
        self.real = real
        self._mp = monkeypatch
        self._filler = path / "filler"

    def fill(self) -> None:
        if not self.real:
            return self._inject("database or disk is full", errno.ENOSPC)
        with self._filler.open("wb") as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * (64 << 10))
                fh.flush()

    def free(self) -> None:
        if not self.real:
            return self._mp.undo()
        self._filler.unlink(missing_ok=True)

    def read_only(self) -> None:
        if not self.real:
            return self._inject("attempt to write a readonly database", errno.EROFS)
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def writable(self) -> None:
        if not self.real:
            return self._mp.undo()
        subprocess.run(["mount", "-o", "remount,rw", str(self.path)], check=True)

    def _inject(self, message: str, code: int) -> None:
        real_tx = sqlite_mod._transaction
        real_probe = sqlite_mod.probe

        def failing(db: sqlite3.Connection, work: Any) -> Any:
            if db.execute("PRAGMA database_list").fetchone()[2]:  # a file, not memory
                raise sqlite3.OperationalError(message)
            return real_tx(db, work)

        self._mp.setattr(sqlite_mod, "_transaction", failing)
        self._mp.setattr(sqlite_mod, "probe",
                         lambda d: OSError(code, os.strerror(code)) if real_probe else None)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    monkeypatch.setattr(sqlite_mod, "RETRY_EVERY", 0.2)
    with tempfile.TemporaryDirectory(prefix="tw-disk-") as tmp:
        mnt = Path(tmp)
        real = os.geteuid() == 0 and not os.environ.get("TOLLWATCH_TEST_NO_MOUNT")
        real = real and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
            capture_output=True, check=False,
        ).returncode == 0
        try:
            yield Disk(mnt, real, pytest.MonkeyPatch())
        finally:
            if real:
                subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=False)
                subprocess.run(["umount", "-l", str(mnt)], check=False)
            for path in list(HEALTH._problems):
                if path.startswith(str(mnt)):
                    HEALTH.clear(Path(path))


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackStub]:
    server = SlackStub().start()
    monkeypatch.setenv("TW_FAULT_SLACK_TOKEN", "xoxb-fault-test-token")
    yield server
    server.down()


class FeedSource:
    """A source the test feeds while the daemon runs."""

    def __init__(self) -> None:
        self.name = "pbx"
        self.status = SourceStatus("pbx", "ami")
        self.queue: asyncio.Queue[LiveEvent] | None = None

    async def run(self, queue: asyncio.Queue[LiveEvent]) -> None:
        self.queue = queue
        self.status.connected = True
        await asyncio.Event().wait()

    def calls(self, first: int, n: int, source: str = "209") -> int:
        assert self.queue is not None
        for i in range(first, first + n):
            at = T0 + timedelta(seconds=i)
            self.queue.put_nowait(CallStarted("pbx", f"c{i}", at, source, "acme",
                                              f"01023276543{i % 100:02d}", "carrier"))
            self.queue.put_nowait(CallEnded("pbx", f"c{i}", at + timedelta(seconds=3)))
        return 2 * n


def make_daemon(data: Path, stub: SlackStub, source: FeedSource) -> tuple[Daemon, SlackAlerter]:
    s = settings("JP", "UTC", daemon={"data_dir": str(data), "snapshot_every": "1s",
                                      "status_every": "1s"})
    slack = SlackAlerter(Slack(enabled=True, channel="#fraud", token_env="TW_FAULT_SLACK_TOKEN",
                               base_url=stub.base_url), data)
    daemon = Daemon(s, StateStore.in_dir(data), [source], [slack], ["pbx"],
                    clock=lambda: T0 + timedelta(minutes=1))
    return daemon, slack


async def until(cond: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def posted_kinds(stub: SlackStub) -> list[str]:
    return [r.body.get("text", "")[:40] for r in stub.posts()]


@pytest.mark.slow
async def test_full_disk_keeps_alerting_then_recovers(
    disk: Disk, stub: SlackStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    data = disk.path / "data"
    source = FeedSource()
    daemon, slack = make_daemon(data, stub, source)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await until(lambda: source.queue is not None)
    await until(lambda: (data / "status.json").exists())

    disk.fill()
    sent = source.calls(0, 12)  # an attack while nothing can be written
    await until(lambda: daemon.events == sent)
    await until(lambda: len(stub.posts()) >= 2)  # opened + escalated went out directly
    assert daemon.store.in_memory and slack.outbox.in_memory
    problems = {p["path"]: p for p in HEALTH.problems()}
    db_path = str(data / "tollwatch.sqlite3")
    assert problems[db_path]["errno"] == "ENOSPC"
    logged = [r.getMessage() for r in caplog.records if "ENOSPC" in r.getMessage()]
    assert any(db_path in m for m in logged)
    assert len([m for m in logged if db_path in m]) == 1  # once, not once per write
    # status, read from the file written in place, says what is wrong
    await until(lambda: "ENOSPC" in str(read_status_file(data)))
    result = runner.invoke(app, ["status", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "ENOSPC" in result.stdout and "storage" in result.stdout

    before = len(stub.posts())
    disk.free()
    await until(lambda: not daemon.store.in_memory and not slack.outbox.in_memory)
    await until(lambda: not HEALTH.problems())
    sent += source.calls(12, 3)
    await until(lambda: daemon.events == sent)
    stop.set()
    await task
    daemon.store.close()
    # everything decided in memory is now on disk: the incident, and the alerts as sent
    stored = StateStore.in_dir(data).incidents()
    assert len(stored) == 1 and stored[0]["calls"] == 15
    box = Outbox.in_dir(data)
    assert box.pending() == []
    keys = [r[0] for r in box._db.execute("SELECT key FROM outbox WHERE state='sent'")]
    assert any(k.endswith(":opened") for k in keys)
    box.close()
    # a restart posts nothing again (deduplicated by the outbox written back)
    again = SlackAlerter(Slack(enabled=True, channel="#fraud", token_env="TW_FAULT_SLACK_TOKEN",
                               base_url=stub.base_url), data)
    assert await again.step() is None
    await again.close()
    assert len(stub.posts()) >= before
    opened = [r for r in stub.posts() if r.api == "chat.postMessage" and
              "thread_ts" not in r.body]
    assert len(opened) == 1  # one parent message for the one incident, ever


async def test_shutdown_while_the_disk_is_full(
    disk: Disk, stub: SlackStub, caplog: pytest.LogCaptureFixture
) -> None:
    data = disk.path / "data"
    source = FeedSource()
    daemon, _slack = make_daemon(data, stub, source)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await until(lambda: source.queue is not None)
    disk.fill()
    sent = source.calls(0, 12)
    stop.set()  # SIGTERM with a backlog and a full disk: every event handled, alerts posted
    await task
    daemon.store.close()
    assert daemon.events == sent
    assert len(stub.posts()) >= 2
    assert not any("closed database" in r.getMessage() for r in caplog.records)
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("tollwatch"))
    disk.free()


async def test_read_only_data_directory(disk: Disk, stub: SlackStub,
                                        caplog: pytest.LogCaptureFixture) -> None:
    data = disk.path / "data"
    StateStore.in_dir(data).close()
    Outbox.in_dir(data).close()
    disk.read_only()
    source = FeedSource()
    daemon, slack = make_daemon(data, stub, source)  # starts, no traceback
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await until(lambda: source.queue is not None)
    sent = source.calls(0, 12)
    await until(lambda: daemon.events == sent and len(stub.posts()) >= 2)
    assert daemon.store.in_memory
    assert {p["errno"] for p in HEALTH.problems()} == {"EROFS"}
    disk.writable()
    await until(lambda: not daemon.store.in_memory and not slack.outbox.in_memory)
    stop.set()
    await task
    daemon.store.close()
    assert StateStore.in_dir(data).incidents()[0]["calls"] == 12
    assert not any(r.exc_info for r in caplog.records if r.name.startswith("tollwatch"))


@pytest.mark.parametrize("damage", ["garbage", "malformed"])
async def test_corrupt_state_files_are_moved_aside(
    tmp_path: Path, stub: SlackStub, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    store = StateStore.in_dir(tmp_path)
    for i in range(300):  # enough pages that damage in the middle is seen by quick_check
        store.save_incident("pbx", {"id": f"i{i}", "source": "x" * 500, "severity": "warning",
                                    "score": 1, "first_call_at": "t", "detected_at": "t"}, True)
    store.close()
    Outbox.in_dir(tmp_path).close()
    for name in ("tollwatch.sqlite3", "slack-outbox.sqlite3"):
        path = tmp_path / name
        for side in ("-wal", "-shm"):
            Path(str(path) + side).unlink(missing_ok=True)
        if damage == "garbage":
            path.write_bytes(b"this is not a database at all\n" * 200)
        else:
            raw = bytearray(path.read_bytes())
            raw[4096 + 100: 4096 * 3] = b"\xff" * (4096 * 2 - 100)
            path.write_bytes(bytes(raw))
    source = FeedSource()
    daemon, _slack = make_daemon(tmp_path, stub, source)  # no crash-loop: a fresh start
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    await until(lambda: source.queue is not None)
    sent = source.calls(0, 12)
    await until(lambda: daemon.events == sent and len(stub.posts()) >= 2)
    stop.set()
    await task
    daemon.store.close()
    aside = sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    assert any(n.startswith("tollwatch.sqlite3.corrupt-") for n in aside)
    assert any(n.startswith("slack-outbox.sqlite3.corrupt-") for n in aside)
    lines = [r.getMessage() for r in caplog.records if "moved aside" in r.getMessage()]
    assert len([m for m in lines if "tollwatch.sqlite3" in m.split(" is corrupt")[0]]) == 1
    assert StateStore.in_dir(tmp_path).incidents()[0]["calls"] == 12  # the fresh file works


def test_blocks_are_kept_in_memory_on_a_full_disk_and_written_back(
    disk: Disk, caplog: pytest.LogCaptureFixture
) -> None:
    """BlockStore writes through the storage layer too: a block decided while the disk is
    full is kept (and enforced) from memory, logged once, and on disk once there is room."""
    caplog.set_level(logging.WARNING)
    from tollwatch.alerting.remediation.store import BlockStore

    data = disk.path / "data"
    blocks = BlockStore.in_dir(data)
    first = blocks.add("prefix", "232", "pbx", "attack", "i1", "auto", 100, 3700, False)
    disk.fill()
    second = blocks.add("source", "209", "pbx", "attack", "i1", "auto", 101, 3701, False)
    lifted = blocks.lift(first.id, 102, "cli:root")
    assert blocks.in_memory and lifted.lifted_at == 102
    assert [b.value for b in blocks.active()] == ["209"] and blocks.auto_since(0) == 2
    path = str(data / "blocks.sqlite3")
    assert {p["path"]: p["errno"] for p in HEALTH.problems()}[path] == "ENOSPC"
    assert len([r for r in caplog.records if path in r.getMessage()]) == 1
    disk.free()
    assert blocks.recover(force=True) and not blocks.in_memory
    blocks.close()
    again = BlockStore.in_dir(data)  # what was decided from memory is on disk
    assert [(b.id, b.value) for b in again.active()] == [(second.id, "209")]
    assert again.get(first.id).lifted_by == "cli:root"
    again.close()


class FailingReads:
    """A connection whose SELECTs fail with a disk I/O error (a failing disk under a read)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.lstrip().upper().startswith("SELECT"):
            raise sqlite3.OperationalError("disk I/O error")
        return self.db.execute(sql, *args)

    def backup(self, target: sqlite3.Connection) -> None:
        self.db.backup(target)

    def close(self) -> None:
        self.db.close()


def test_outbox_reads_degrade_like_writes(tmp_path: Path) -> None:
    """A storage error under an outbox read moves it to its in-memory copy (logged once, in
    status) instead of stopping the Slack queue; nothing queued is lost."""
    box = Outbox.in_dir(tmp_path)
    assert box.add("opened", {"id": "i1", "pbx": "pbx"}, 1000.0)
    box._db = FailingReads(box._db)  # type: ignore[assignment]
    try:
        assert [i.incident_id for i in box.pending()] == ["i1"]
        assert box.in_memory and [i.incident_id for i in box.due(2000.0)] == ["i1"]
        path = str(tmp_path / "slack-outbox.sqlite3")
        assert {p["path"]: p["errno"] for p in HEALTH.problems()}[path] == "EIO"
        assert box.next_due_at() == 1000.0 and box.count_opened_since(0) == 1
        assert box.thread("i1") is None
        assert box.recover(force=True) and not box.in_memory  # the file works again
        assert [i.incident_id for i in box.pending()] == ["i1"]
    finally:
        box.close()
        HEALTH.clear(tmp_path / "slack-outbox.sqlite3")

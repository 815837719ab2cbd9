"""The systemd notify protocol, read from a unix datagram socket as systemd would: READY=1,
STATUS=, WATCHDOG=1 while the pipeline makes progress, none once it is stuck, STOPPING=1."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import settings
from tests.test_fault_storage import FeedSource, until
from tollwatch.alerting.base import IncidentView
from tollwatch.cdr_ingest.live import CallEnded, CallStarted
from tollwatch.daemon import Daemon
from tollwatch.notify import Notifier
from tollwatch.state import StateStore

T0 = datetime(2026, 11, 24, 13, 30, tzinfo=UTC)


class Systemd:
    """The receiving end of $NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def read(self) -> list[dict[str, str]]:
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return self.messages
            fields = dict(line.split("=", 1) for line in data.decode().splitlines())
            self.messages.append(fields)

    def watchdogs(self) -> int:
        return sum(1 for m in self.read() if m.get("WATCHDOG") == "1")


@pytest.fixture
def systemd(monkeypatch: pytest.MonkeyPatch) -> Iterator[Systemd]:
    with tempfile.TemporaryDirectory(prefix="tw-notify-") as tmp:
        path = Path(tmp) / "notify"
        sd = Systemd(path)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield sd
        sd.sock.close()


class Stuck:
    """An alerter that hangs on the first alert until released: the pipeline stops."""

    name = "stuck"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent = 0

    async def send(self, kind: str, view: IncidentView) -> None:
        await self.release.wait()
        self.sent += 1


async def _stall_and_recover(
    daemon: Daemon, source: FeedSource, stuck: Stuck, systemd: Systemd
) -> None:
    """Healthy and fed, then stuck on an alert (no WATCHDOG=1, STATUS says why), then fed again.
    Every step is waited for, not slept: a loaded machine is slow."""
    await until(lambda: source.queue is not None)
    await until(lambda: systemd.watchdogs() >= 3)  # healthy and idle: fed
    first = systemd.read()[0]
    assert first["READY"] == "1" and "events" in first["STATUS"]

    assert source.queue is not None
    for i in range(12):  # the attack opens an incident: the alerter hangs on it
        at = T0 + timedelta(seconds=i)
        source.queue.put_nowait(CallStarted("pbx", f"c{i}", at, "209", "acme",
                                            f"01023276543{i:02d}", "carrier"))
        source.queue.put_nowait(CallEnded("pbx", f"c{i}", at + timedelta(seconds=3)))

    def says_stuck() -> bool:  # stall_after passed: the daemon says what it waits on
        status = [m["STATUS"] for m in systemd.read() if "STATUS" in m][-1]
        return "STALLED" in status and ("waiting" in status or "handled for" in status)

    await until(says_stuck)
    fed = systemd.watchdogs()
    await asyncio.sleep(1.0)
    assert systemd.watchdogs() == fed  # no WATCHDOG=1 while stuck: systemd would restart us

    stuck.release.set()  # unstuck: progress again, the watchdog is fed again
    await until(lambda: daemon.queue.qsize() == 0)
    await until(lambda: systemd.watchdogs() > fed)


def test_notifier_outside_systemd_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and not n.send("READY=1")
    assert Notifier({"NOTIFY_SOCKET": "@abstract", "WATCHDOG_USEC": "30000000",
                     "WATCHDOG_PID": "1"}).watchdog is None  # not for this process
    assert Notifier({"NOTIFY_SOCKET": "@abstract", "WATCHDOG_USEC": "30000000"}).watchdog == 15


@pytest.mark.slow
async def test_stuck_pipeline_stops_feeding_the_watchdog(tmp_path: Path, systemd: Systemd) -> None:
    s = settings("JP", "UTC", daemon={"data_dir": str(tmp_path), "stall_after": "2s"})
    stuck = Stuck()
    source = FeedSource()
    daemon = Daemon(s, StateStore.in_dir(tmp_path), [source], [stuck], ["pbx"],
                    clock=lambda: T0 + timedelta(minutes=1))
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        await _stall_and_recover(daemon, source, stuck, systemd)
    finally:  # a failed assertion must not leave the daemon hanging on the stuck alerter
        stuck.release.set()
        stop.set()
        await task
        daemon.store.close()
    assert systemd.read()[-1].get("STOPPING") == "1"

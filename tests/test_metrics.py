"""Prometheus metrics: the daemon serves /metrics on [metrics] listen; a scrape shows connection
state, events/s, calls up, incidents by severity, alerts, blocks, rows read/skipped and every
numeric fact of the status. systemd notify: READY=1 and watchdog pings on the notify socket."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tollwatch.cdr_ingest.live.events import SourceStatus
from tollwatch.config import load_settings
from tollwatch.metrics import parse_listen, registry_for
from tollwatch.notify import Notifier
from tollwatch.state import StateStore

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "Master-attack.csv"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.mark.slow
async def test_daemon_serves_metrics_scraped_over_http(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tollwatch.runner import run_daemon

    cdr = tmp_path / "Master.csv"
    cdr.write_text("")
    port = _free_port()
    settings = load_settings(None, {
        "site": {"country": "JP", "timezone": "Asia/Tokyo"},
        "daemon": {"data_dir": str(tmp_path), "status_every": "1s", "snapshot_every": "1s"},
        "csv_sources": [{"name": "tokyo", "path": str(cdr)}],
        "metrics": {"listen": f"127.0.0.1:{port}"},
    })
    sock_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    stop = asyncio.Event()
    task = asyncio.create_task(run_daemon(settings, stop))
    try:
        await asyncio.sleep(0.3)
        cdr.write_text(SAMPLE.read_text() + "not,a,cdr\n")
        got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        messages = []
        for _ in range(60):  # status is written every second
            await asyncio.sleep(0.25)
            messages += _drain(notify)
            body = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                .read().decode())
            got = _samples(body)
            if got.get(("tollwatch_rows_read_total", (("source", "tokyo"),)), 0) >= 24:
                break
        assert got[("tollwatch_up", ())] == 1.0
        assert got[("tollwatch_source_connected", (("kind", "csv"), ("source", "tokyo")))] == 1.0
        assert ("tollwatch_source_events_per_second",
                (("kind", "csv"), ("source", "tokyo"))) in got
        assert got[("tollwatch_rows_read_total", (("source", "tokyo"),))] >= 24
        assert got[("tollwatch_rows_skipped_total", (("source", "tokyo"),))] >= 1
        store = StateStore.in_dir(tmp_path)
        crit = [i for i in store.incidents(open_only=True) if i["severity"] == "critical"]
        store.close()
        assert got[("tollwatch_incidents_open", (("severity", "critical"),))] == len(crit)
        assert got[("tollwatch_calls_in_progress", (("pbx", "tokyo"),))] == 0.0
        assert got[("tollwatch_daemon_events", ())] >= 24  # any numeric status fact
        assert ("tollwatch_source_bad_frames", (("kind", "csv"), ("source", "tokyo"))) in got
        messages += _drain(notify)
        assert messages[0].startswith("READY=1")
        assert sum(m.startswith("WATCHDOG=1") for m in messages) >= 2
    finally:
        stop.set()
        await task
        notify.close()
    assert notify_after_stop(sock_path) is False  # the socket is closed: no crash


def _drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def notify_after_stop(path: Path) -> bool:
    return Notifier({"NOTIFY_SOCKET": str(path)}).send("STATUS=gone")


def test_registry_reads_alerts_blocks_and_a_stopped_daemon(tmp_path: Path) -> None:
    from tollwatch.alerting.outbox import Outbox
    from tollwatch.alerting.remediation.store import BlockStore

    store = StateStore.in_dir(tmp_path)
    store.write_status([SourceStatus("pbx", "ami", connected=False, events=3)],
                       {"site": "acme", "events": 3, "backlog": {"events": 2, "oldest_s": 1.5}})
    store.mark_stopped()
    store.close()
    box = Outbox.in_dir(tmp_path)
    box.add("opened", {"id": "inc-1"}, 1.0)
    box.set_health("stopped", "Slack refused: invalid_auth", 1.0)
    box.close()
    BlockStore.in_dir(tmp_path).close()
    from prometheus_client import generate_latest

    got = _samples(generate_latest(registry_for(tmp_path)).decode())
    assert got[("tollwatch_up", ())] == 0.0
    assert got[("tollwatch_source_connected", (("kind", "ami"), ("source", "pbx")))] == 0.0
    assert got[("tollwatch_daemon_backlog_events", ())] == 2.0
    assert got[("tollwatch_alerts", (("state", "pending"),))] == 1.0
    assert got[("tollwatch_slack_ok", ())] == 0.0
    assert got[("tollwatch_blocks_active", ())] == 0.0
    assert parse_listen(":9469") == ("0.0.0.0", 9469)
    assert parse_listen("[::1]:9469") == ("::1", 9469)


def test_metrics_are_off_by_default_and_the_address_is_checked() -> None:
    from tollwatch.config import ConfigError

    assert load_settings(None, {"site": {"country": "JP"}}).metrics.listen is None
    with pytest.raises(ConfigError):
        load_settings(None, {"site": {"country": "JP"}, "metrics": {"listen": "9469"}})


def test_a_metrics_port_taken_is_logged_and_the_daemon_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """start() raised 'Address already in use' out of the daemon's start: no monitoring at all
    for want of /metrics. Now logged, and None (nothing to shut down)."""
    from tollwatch.metrics import start

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert start(f"127.0.0.1:{port}", tmp_path) is None
    assert "cannot listen on 127.0.0.1:" in caplog.text
    assert "running without /metrics" in caplog.text
    with pytest.raises(Exception, match="the port is not 1-65535"):
        load_settings(None, {"site": {"country": "JP"}, "metrics": {"listen": "127.0.0.1:99999"}})

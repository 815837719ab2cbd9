"""Start the daemon for `tollwatch run` and `tollwatch demo` (signals, sources, alerters)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import tempfile
from datetime import UTC, datetime
from datetime import time as dtime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console

from tollwatch.alerting.base import Alerter
from tollwatch.alerting.console import ConsoleAlerter
from tollwatch.alerting.remediation import Blocker
from tollwatch.alerting.slack import SlackAlerter
from tollwatch.config import Settings
from tollwatch.daemon import Daemon
from tollwatch.recovery import CdrRecovery
from tollwatch.report.build import ReportResult
from tollwatch.report.post import queue_report
from tollwatch.report.schedule import ReportScheduler
from tollwatch.rules.baseline import Baseline
from tollwatch.rules.destination import Destination
from tollwatch.settings import cdr_options, load, overrides
from tollwatch.sources import ami_sources, csv_sources, db_sources, source_names
from tollwatch.state import StateStore

log = logging.getLogger("tollwatch")


def alerters(settings: Settings, console: Console | None = None) -> list[Alerter]:
    """The console/log always; Slack when enabled (its token or webhook read here)."""
    found: list[Alerter] = [ConsoleAlerter(stream=console.file if console is not None else None,
                                           tz=ZoneInfo(settings.site.timezone))]
    if settings.slack.enabled:
        found.append(SlackAlerter(settings.slack, Path(settings.daemon.data_dir)))
    return found


class BaselineProfile:
    """The block scope's view of a PBX's learned baseline (rules.baseline): routine
    destinations are never blocked; once the baseline has enough history, a destination it
    has not seen in its period counts as new (fraudulent when an incident calls it)."""

    def __init__(self, baseline: Baseline) -> None:
        self.baseline = baseline

    def is_routine(self, dest: Destination) -> bool:
        return self.baseline.is_routine(dest)

    def is_new(self, dest: Destination) -> bool:
        now = datetime.now(UTC)
        return self.baseline.ready(now) and not self.baseline.knows(dest, now)


def build(settings: Settings, console: Console | None = None) -> Daemon:
    """The daemon with its sources, alerters, and the blocker (a dry run unless enabled)."""
    store = StateStore.in_dir(Path(settings.daemon.data_dir))
    told = alerters(settings, console)
    daemon = Daemon(settings, store, [], told, source_names(settings))
    feeds = ami_sources(settings, daemon.queue)
    daemon.sources.extend(feeds)
    daemon.sources.extend(csv_sources(settings, store))
    daemon.sources.extend(db_sources(settings, store))
    for server in settings.ami:
        if server.cdr_file is not None:
            daemon.sessions.recovery[server.name] = CdrRecovery(server.name, server.cdr_file,
                                                                cdr_options(settings))  # fmt: skip
    profiles = {name: BaselineProfile(p.baseline) for name, p in daemon.pipelines.items()}
    blocker = Blocker(settings, {f.name: f.source for f in feeds}, profile=profiles)

    async def notify(kind: str, view: dict[str, Any]) -> None:  # blocks and lifts, in words
        if kind == "blocked" and view.get("pbx") and view.get("blocks"):  # for the report
            store.save_incident(str(view["pbx"]), view, is_open=True)
        for alerter in told:
            await alerter.send(kind, view)

    blocker.notify = notify
    daemon.alerters.append(blocker)
    daemon.on_booted.append(blocker.on_booted)
    return daemon


def report_scheduler(settings: Settings, daemon: Daemon) -> ReportScheduler | None:
    """The nightly report, when enabled and there are CDR files or a CDR table to read."""
    rep = settings.report
    if not rep.enabled or not (settings.cdr.files or settings.cdr.database):
        return None
    slack = next((a for a in daemon.alerters if isinstance(a, SlackAlerter)), None)

    async def on_report(result: ReportResult) -> None:
        log.info("report written: %s", result.html)
        if slack is not None and rep.slack:
            await queue_report(slack, result)

    hour, minute = (int(x) for x in rep.at.split(":"))
    out_dir = rep.out_dir or Path(settings.daemon.data_dir) / "reports"
    return ReportScheduler.for_settings(
        settings, out_dir, store=daemon.store, at=dtime(hour, minute),
        keep_days=rep.keep_days or None, on_report=on_report, misfire_grace=rep.misfire_grace,
    )


async def run_daemon(settings: Settings, stop: asyncio.Event | None = None) -> None:
    daemon = build(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def reload() -> None:  # SIGHUP (systemctl reload): Slack settings fixed, secrets renewed
        log.info("SIGHUP: resuming alert delivery")
        for alerter in daemon.alerters:
            if isinstance(alerter, SlackAlerter):
                alerter.resume()

    loop.add_signal_handler(signal.SIGHUP, reload)
    scheduler = report_scheduler(settings, daemon)
    if scheduler is not None:
        scheduler.start()
    served = None
    if settings.metrics.listen:
        from tollwatch import metrics

        served = metrics.start(settings.metrics.listen, Path(settings.daemon.data_dir))
    try:
        await daemon.run(stop)
    finally:
        if served is not None:
            served[0].shutdown()
            served[0].server_close()
        if scheduler is not None:
            await scheduler.stop()
        daemon.store.mark_stopped()
        daemon.store.close()
        _mark_status_file_stopped(Path(settings.daemon.data_dir))


def _mark_status_file_stopped(data_dir: Path) -> None:
    """status.json (read first by `tollwatch status`) says the daemon stopped cleanly."""
    from datetime import UTC, datetime

    from tollwatch.state import StatusFile, read_status_file

    doc = read_status_file(data_dir)
    if doc is None:
        return
    daemon = dict(doc.get("daemon") or {})
    daemon["stopped_at"] = datetime.now(UTC).isoformat()
    StatusFile(data_dir).write({**doc, "daemon": daemon})


def sample_transcript() -> Path:
    """The recorded attack's AMI stream, shipped with the package (for `demo`)."""
    return Path(str(resources.files("tollwatch").joinpath("data/ami-attack.txt")))


async def run_demo(pace: float, console: Console) -> int:
    """A fake Asterisk on localhost replays a recorded attack; the daemon catches it live."""
    from tollwatch.cdr_ingest.live.fake_ami import FakeAmi

    secret = secrets.token_urlsafe(16)
    os.environ["TOLLWATCH_DEMO_SECRET"] = secret  # handed over like a real deployment would
    with tempfile.TemporaryDirectory(prefix="tollwatch-demo-") as tmp:
        async with FakeAmi(username="tollwatch", secret=secret) as fake:
            settings = load(None, {
                **overrides("JP", "UTC", site="demo"),
                "daemon": {"data_dir": tmp},
                "ami": [{"name": "demo-pbx", "host": "127.0.0.1", "port": fake.port,
                         "username": "tollwatch", "secret_env": "TOLLWATCH_DEMO_SECRET"}],
            }, use_default=False)
            console.print(f"[bold]tollwatch demo[/bold]: a fake Asterisk on 127.0.0.1:{fake.port} "
                          "replays a recorded attack (phone 209 calling Sierra Leone numbers).")
            daemon = build(settings, console)
            stop = asyncio.Event()
            task = asyncio.create_task(daemon.run(stop))
            sent = await fake.replay(sample_transcript(), pace=pace)
            for _ in range(100):  # let the daemon drain what was sent
                if daemon.queue.empty():
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            stop.set()
            await task
            stored = daemon.store.incidents()
            daemon.store.close()
    critical = [i for i in stored if i["severity"] == "critical"]
    console.print(f"replayed {sent} AMI messages; {daemon.events} call events; "
                  f"{len(stored)} incident(s), {len(critical)} critical.")
    return 0 if critical else 1

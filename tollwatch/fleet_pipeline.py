"""One PBX of a fleet daemon: its live settings, its pipeline, its status line.

A `PbxPipeline` is the single-site daemon (tollwatch.daemon.Daemon, built by
tollwatch.runner.build) made from that PBX's resolved settings alone: its sources (AMI paired
with its CDR file, or its CDR file or table alone), its dial plan, hours, rules, Slack channel
and remediation policy. Its state lives in `<data_dir>/pbx/<name>/` (rule snapshots,
incidents, baselines, file positions, the Slack outbox, blocks), so persistence and recovery
work per PBX exactly as they do for one site.

A pipeline that cannot be built (a secret missing) or that stops unexpectedly is started again
with backoff; its sources retry on their own (tollwatch.supervisor). Nothing here touches
another PBX.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tollwatch.alerting.remediation import Blocker
from tollwatch.alerting.slack import SlackAlerter
from tollwatch.config import Settings
from tollwatch.config.schema import CsvSource, DbSource
from tollwatch.daemon import Daemon
from tollwatch.notify import Notifier
from tollwatch.supervisor import describe

log = logging.getLogger("tollwatch.fleet")

PBX_DIR = "pbx"


def pbx_dir(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / PBX_DIR / name


def live_file(files: list[Path]) -> Path | None:
    """The file Asterisk writes now among a PBX's CDR files (Master.csv, not a rotated or
    compressed one)."""
    plain = [f for f in files if not f.name.endswith((".gz", ".bz2", ".xz", ".zst"))]
    named = [f for f in plain if f.name == "Master.csv"]
    found = named or plain
    return found[0] if found else None


def live_settings(name: str, settings: Settings, data_dir: Path) -> Settings:
    """A PBX's settings as its pipeline runs them: its own data directory; its AMI connection
    paired with its CDR file (calls of an AMI outage recovered from it); without AMI, its CDR
    file or table followed live. Every source is named after the PBX."""
    update: dict[str, Any] = {
        "daemon": settings.daemon.model_copy(update={"data_dir": pbx_dir(data_dir, name)}),
    }
    current = live_file(list(settings.cdr.files or []))
    if settings.ami:
        server = settings.ami[0]
        if server.cdr_file is None and current is not None:
            update["ami"] = [server.model_copy(update={"cdr_file": current})]
    elif not settings.csv_sources and not settings.db_sources:
        if current is not None:
            update["csv_sources"] = [CsvSource(name=name, path=current)]
        elif settings.cdr.database is not None:
            update["db_sources"] = [DbSource.model_validate({"name": name})]
    return settings.model_copy(update=update)


def fingerprint(settings: Settings) -> str:
    """Equal for equal effective settings: a PBX is restarted on reload only when it changed."""
    return settings.model_dump_json()


class PbxPipeline:
    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.key = fingerprint(settings)
        self.daemon: Daemon | None = None
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.state = "starting"
        self.problem = ""
        self.failures = 0
        self.started_at = datetime.now(UTC)

    def start(self) -> None:
        Path(self.settings.daemon.data_dir).mkdir(parents=True, exist_ok=True)
        self.task = asyncio.create_task(self._run(), name=f"pbx:{self.name}")

    async def close(self) -> None:
        """Stop cleanly: what was read is handled, state and alerts saved."""
        self.stop.set()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        self.state = "stopped"

    async def _run(self) -> None:
        delay = 1.0
        most = self.settings.daemon.max_backoff.total_seconds()
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # this PBX only: the others run on
                self.failures += 1
                self.problem = describe(exc)
                log.error("pbx %s: %s; starting it again with backoff", self.name, self.problem)
            if self.stop.is_set():
                return
            if time.monotonic() - began > 60:
                delay = 1.0
            wait = delay * random.uniform(0.5, 1.5)
            self.state = f"restarting in {wait:.0f}s ({self.problem or 'stopped'})"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), wait)
            delay = min(delay * 2, most)

    async def _run_once(self) -> None:
        from tollwatch.runner import _mark_status_file_stopped, build, report_scheduler

        self.state = "starting"
        self.daemon = daemon = build(self.settings)
        daemon.notifier = Notifier({})  # systemd hears from the fleet supervisor only
        scheduler = report_scheduler(self.settings, daemon)
        if scheduler is not None:
            scheduler.start()
        self.state = "running"
        self.problem = ""
        try:
            await daemon.run(self.stop)
            if not self.stop.is_set():
                raise RuntimeError("the pipeline stopped unexpectedly")
        finally:
            if scheduler is not None:
                await scheduler.stop()
            daemon.store.mark_stopped()
            daemon.store.close()
            _mark_status_file_stopped(Path(self.settings.daemon.data_dir))

    def resume_alerts(self) -> None:
        """SIGHUP for a PBX left running: Slack re-reads its secrets and retries now."""
        for alerter in self.daemon.alerters if self.daemon else []:
            if isinstance(alerter, SlackAlerter):
                alerter.resume()

    # ---- status ----------------------------------------------------------------------------
    def line(self, now: datetime) -> dict[str, Any]:
        """One status line: connection, calls up, open incidents, blocks, last event, errors."""
        d = self.daemon
        row: dict[str, Any] = {
            "pbx": self.name, "site": self.settings.site.name,
            "country": self.settings.site.country, "timezone": self.settings.site.timezone,
            "state": self.state, "connection": "-", "connected": False, "calls_in_progress": 0,
            "open_incidents": 0, "blocks": 0, "blocks_dry_run": 0, "events": 0,
            "errors": self.failures, "last_event_age_s": None, "restarts": self.failures,
        }
        if d is None or self.state != "running":
            row["connection"] = self.problem or self.state
            return row
        statuses = [s.status for s in d.sources]
        down = [st for st in statuses if not st.connected]
        row["connected"] = bool(statuses) and not down
        row["connection"] = ("connected" if row["connected"]
                             else (down[0].state if down else "no sources"))
        last = [st.last_event_at for st in statuses if st.last_event_at is not None]
        if last:
            row["last_event_age_s"] = round((now - max(last)).total_seconds(), 1)
        row["calls_in_progress"] = sum(p.in_progress for p in d.pipelines.values())
        row["open_incidents"] = sum(p.engine.tracker.raised() for p in d.pipelines.values())
        row["events"] = d.events
        row["errors"] = self.failures + d.errors + sum(st.errors for st in statuses)
        blocker = next((a for a in d.alerters if isinstance(a, Blocker)), None)
        if blocker is not None:
            try:
                row["blocks"], _, row["blocks_dry_run"] = blocker.store.counts()
            except Exception as exc:  # status must never stop the daemon
                log.warning("pbx %s: cannot count blocks (%s)", self.name, exc)
        row["backlog"] = d.queue.measures()
        row["stalled"] = d.stalled()
        row["sources"] = statuses
        return row

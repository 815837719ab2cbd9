"""The daily report on a schedule: an apscheduler 3.x cron job in the site's time zone, plus a
catch-up when the daemon starts after a missed run. Each day is produced at most once: the last
produced day is kept in a small state file, and a day whose folder already exists is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from tollwatch.alerting.textsafe import plain
from tollwatch.config import Settings
from tollwatch.report.build import ReportResult, build_report
from tollwatch.state import StateStore

log = logging.getLogger(__name__)

STATE_NAME = ".last-report"
JOB_ID = "tollwatch-daily-report"

RunDay = Callable[[date], Awaitable[Any]]
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ReportScheduler:
    """Runs `run(day)` for the previous local day at `at` every day, and once on start for the
    most recent scheduled day that was missed. `run` raising leaves the day not done (the next
    start retries it). `clock` (aware datetimes) decides which day is due; tests inject one.
    """

    def __init__(
        self,
        run: RunDay,
        tz: ZoneInfo | str,
        out_dir: Path,
        *,
        at: time = time(6, 0),
        misfire_grace: timedelta = timedelta(hours=6),
        clock: Clock | None = None,
    ) -> None:
        self._run = run
        self.tz = ZoneInfo(tz) if isinstance(tz, str) else tz
        self.out_dir = Path(out_dir)
        self.at = at
        self.misfire_grace = misfire_grace
        self.clock = clock or _utc_now
        self.trigger = CronTrigger(
            hour=at.hour, minute=at.minute, second=at.second, timezone=self.tz
        )
        self._scheduler: Any = None
        self._lock = asyncio.Lock()
        self._catch_up: asyncio.Task[date | None] | None = None
        self.produced: list[date] = []  # days produced by this scheduler, in order

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        out_dir: Path,
        *,
        store: StateStore | None = None,
        files: Sequence[Path] | None = None,
        at: time = time(6, 0),
        keep_days: int | None = 90,
        on_report: Callable[[ReportResult], Awaitable[None]] | None = None,
        misfire_grace: timedelta = timedelta(hours=6),
        clock: Clock | None = None,
    ) -> ReportScheduler:
        """The usual job: build_report in a worker thread, then `on_report` (e.g. Slack)."""

        async def run(day: date) -> ReportResult:
            result = await asyncio.to_thread(
                build_report, settings, files, day, out_dir, store, keep_days=keep_days
            )
            for line in result.summary.get("unreadable_files") or []:  # named in it too
                log.error("daily report for %s: %s", day, plain(line))
            if on_report is not None:
                await on_report(result)
            return result

        return cls(
            run, settings.site.timezone, out_dir, at=at, misfire_grace=misfire_grace, clock=clock
        )

    # ---- what is due ---------------------------------------------------------------------
    def next_run_time(self, after: datetime | None = None) -> datetime:
        """The next scheduled time strictly after `after` (default: the clock)."""
        now = (after or self.clock()).astimezone(self.tz)
        nxt = self.trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
        assert nxt is not None
        return nxt  # type: ignore[no-any-return]

    def last_run_time(self, now: datetime | None = None) -> datetime:
        """The latest scheduled time at or before `now`."""
        local = (now or self.clock()).astimezone(self.tz)
        day = local.date()
        for back in range(3):
            d = day - timedelta(days=back)
            at = self._scheduled(d)
            if at <= local:
                return at
        raise AssertionError("unreachable")  # pragma: no cover

    def _scheduled(self, d: date) -> datetime:
        """`at` on local date d (a time in a DST gap: the instant after the gap)."""
        wall = datetime.combine(d, self.at, tzinfo=self.tz)
        return wall.astimezone(UTC).astimezone(self.tz)

    def due_day(self, now: datetime | None = None) -> date:
        """The day the most recent scheduled run (at or before now) reports on."""
        return self.last_run_time(now).date() - timedelta(days=1)

    # ---- what is done --------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.out_dir / STATE_NAME

    def last_done(self) -> date | None:
        try:
            return date.fromisoformat(self.state_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None

    def is_done(self, day: date) -> bool:
        last = self.last_done()
        return (last is not None and day <= last) or (self.out_dir / day.isoformat()).is_dir()

    def _mark_done(self, day: date) -> None:
        last = self.last_done()
        if last is not None and last >= day:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(day.isoformat() + "\n", encoding="utf-8")
        os.replace(tmp, self.state_file)

    # ---- running -------------------------------------------------------------------------
    async def run_day(self, day: date) -> bool:
        """Produce `day` unless it is done already; True if it ran now."""
        async with self._lock:
            if self.is_done(day):
                log.info("report for %s already produced", day)
                return False
            log.info("producing the report for %s", day)
            await self._run(day)
            self._mark_done(day)
            self.produced.append(day)
            return True

    async def fire(self) -> None:
        """The cron job: the previous local day (of the clock); errors are logged."""
        day = self.due_day()
        try:
            await self.run_day(day)
        except Exception:
            log.exception("daily report for %s failed", day)

    async def catch_up(self) -> date | None:
        """Run the most recent missed scheduled report once; the day run, or None."""
        day = self.due_day()
        try:
            return day if await self.run_day(day) else None
        except Exception:
            log.exception("catch-up report for %s failed", day)
            return None

    def start(self, catch_up: bool = True) -> None:
        """Start the cron job on the running event loop (and the catch-up as a task)."""
        if self._scheduler is not None:
            return
        scheduler = AsyncIOScheduler(timezone=self.tz)
        scheduler.add_job(
            self.fire,
            self.trigger,
            id=JOB_ID,
            name="tollwatch daily report",
            misfire_grace_time=max(1, int(self.misfire_grace.total_seconds())),
            coalesce=True,
            max_instances=1,
            replace_existing=True,
        )
        scheduler.start()
        self._scheduler = scheduler
        if catch_up:
            self._catch_up = asyncio.create_task(self.catch_up(), name="report-catch-up")

    def scheduled_at(self) -> datetime | None:
        """apscheduler's next run time of the job (None when not started)."""
        if self._scheduler is None:
            return None
        job = self._scheduler.get_job(JOB_ID)
        return job.next_run_time if job is not None else None

    async def stop(self) -> None:
        if self._catch_up is not None and not self._catch_up.done():
            self._catch_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._catch_up
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

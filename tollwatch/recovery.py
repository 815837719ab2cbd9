"""AMI sessions as the daemon sees them: a restart told from a reconnect, and the calls made
while AMI was down recovered from the same PBX's CDR file on reconnect.

Each `[[ami]]` entry may name its PBX's `cdr_file` (Master.csv). A `CdrRecovery` follows that
file in memory (from its end at start-up, then rotation-safe like `[[csv_sources]]`): while AMI
is connected, what it reads is only skipped over (AMI saw those calls); after a reconnect, the
rows written since are handed to the live pipeline, which counts each call id once, so the
calls of the gap join the same incident and nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tollwatch.cdr_ingest._types import CdrOptions
from tollwatch.cdr_ingest.live import CallStarted, LiveEvent, PbxConnected
from tollwatch.cdr_ingest.live.follow import CsvFollower, MemoryPositions
from tollwatch.sources import start_at_end

log = logging.getLogger("tollwatch.daemon")


class CdrRecovery:
    def __init__(self, pbx: str, path: Path, options: CdrOptions) -> None:
        self.pbx = pbx
        self.path = Path(path)
        self.positions = MemoryPositions()
        self.follower = CsvFollower(pbx, self.path, options, self.positions)
        self._started = False

    async def read(self) -> list[LiveEvent]:
        """The events of the rows written since the last read (none at the first read: the
        file is taken from its end)."""
        if not self._started:
            self._started = True
            await asyncio.to_thread(start_at_end, self.path, self.positions)
            return []
        return await asyncio.to_thread(self.follower.poll_once)

    async def skip(self) -> None:
        """Move past what is in the file now (AMI is connected and saw those calls)."""
        try:
            await self.read()
        except Exception as exc:
            log.warning("pbx %s: cannot read %s (%s)", self.pbx, self.path, exc)

    def close(self) -> None:
        self.follower.close()


class Sessions:
    """Per PBX: Asterisk's start time last seen, and its paired CDR file (`recovery`)."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.startup: dict[str, datetime | None] = {}
        self.recovery: dict[str, CdrRecovery] = {}

    def say(self, event: PbxConnected) -> None:
        """Log, in words, whether this is a first connection, a reconnect, or a restart."""
        pbx, started = event.pbx, event.started_at
        up = ""
        if started is not None:
            since = started.replace(tzinfo=self.tz)  # the PBX's clock: the site's zone
            up = f"Asterisk up since {since.isoformat()} (uptime {span(event.at - since)})"
        known = pbx in self.startup
        before = self.startup.get(pbx)
        self.startup[pbx] = started
        gap = f" after {span(event.at - event.down_since)}" if event.down_since else ""
        if not known:
            log.info("pbx %s: AMI connected; %s", pbx, up or "Asterisk's start time unknown")
        elif started is None or before is None:
            log.warning("pbx %s: AMI reconnected%s (cannot tell whether Asterisk restarted); "
                        "checking blocks in AstDB", pbx, gap)  # fmt: skip
        elif started != before:
            log.warning("pbx %s: Asterisk restarted; AMI reconnected%s; %s; checking blocks "
                        "in AstDB", pbx, gap, up)  # fmt: skip
        else:
            log.warning("pbx %s: AMI reconnected%s; Asterisk did not restart (%s)", pbx, gap,
                        up)  # fmt: skip

    async def recover(self, event: PbxConnected) -> list[LiveEvent]:
        """After an outage: the events of the paired CDR file's new rows (the pipeline counts
        each call once); at a first connection, the file is only skipped over."""
        rec = self.recovery.get(event.pbx)
        if rec is None:
            return []
        if event.down_since is None:
            await rec.skip()
            return []
        try:
            found = await rec.read()
        except Exception as exc:
            log.warning("pbx %s: cannot recover the outage's calls from %s (%s)", event.pbx,
                        rec.path, exc)  # fmt: skip
            return []
        calls = sum(isinstance(e, CallStarted) for e in found)
        log.warning("pbx %s: %d call(s) of the AMI outage recovered from %s (each counted "
                    "once)", event.pbx, calls, rec.path)  # fmt: skip
        return found

    async def skip(self, pbx: str) -> None:
        rec = self.recovery.get(pbx)
        if rec is not None:
            await rec.skip()


def span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{max(0, seconds)} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172_800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"

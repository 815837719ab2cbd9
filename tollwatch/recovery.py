"""Calls made while AMI was down, recovered from the same PBX's CDR file on reconnect.

Each `[[ami]]` entry may name its PBX's `cdr_file` (Master.csv). A `CdrRecovery` follows that
file in memory (from its end at start-up, then rotation-safe like `[[csv_sources]]`): while AMI
is connected, what it reads is only skipped over (AMI saw those calls); after a reconnect, the
rows written since are handed to the live pipeline, which counts each call id once, so the
calls of the gap join the same incident and nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from cdr_ingest._types import CdrOptions
from cdr_ingest.live import LiveEvent
from cdr_ingest.live.follow import CsvFollower, MemoryPositions
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

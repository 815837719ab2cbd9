"""Follow a growing Master.csv (for PBXes without AMI): new rows in, call events out.

`CsvFollower.poll_once()` reads the complete lines written since the saved `Position`, parses
them with the batch pipeline (`cdr_ingest._scan.scan_file`, so fields, times, problems and the
outbound classification are exactly those of `tollwatch scan`) and turns each good outbound row
into `CallStarted`, `CallAnswered` (if answered) and `CallEnded`, rows in file order. A partial
last line (no newline yet) is left for the next poll.

How a chunk goes through the batch pipeline: the file's layout is detected once, from a snapshot
of its first complete lines (the "prefix", what `detect` reads: at most 50 non-blank lines of the
first 64 KiB). Each chunk is written to a temporary file as prefix + a line of spaces filling
detect's 64 KiB window + chunk: `detect` on that file sees only the prefix (blank lines are
skipped), so it finds the same layout every time, and `scan_file` parses the chunk with it (a
header's line number stays the same too). Rows of the prefix and padding are dropped and
line numbers (in `origin`, and in `call_id` when a row has no uniqueid) are shifted back to the
followed file's physical lines.

Files, positions and rotation are `file_reader.FileReader`'s (see its docstring): after each
chunk the position (`Position(inode, offset, line)` and a content fingerprint) is saved in a
`PositionStore`; rename, copytruncate (plain or compressed copy) and restarts lose and double
no row.

Order: events come in file order, a row's CallStarted, CallAnswered, CallEnded together; an old
file's rows all come before the new file's. `run()` saves the position once a chunk's events
are all on the queue; if cancelled while a bounded queue is full, it saves the position after
the last row handed over whole, so a restart gives at most that one row's events again, and
never skips one. `status.last_event_at` is the wall-clock time of the last event handed over.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from tollwatch.cdr_ingest._scan import scan_file
from tollwatch.cdr_ingest._types import CdrOptions, IngestError
from tollwatch.cdr_ingest.live.events import LiveEvent, SourceStatus
from tollwatch.cdr_ingest.live.file_reader import MAX_CHUNK, Chunk, FileReader
from tollwatch.cdr_ingest.live.follow_rows import call_events, collect, padded, with_temp
from tollwatch.cdr_ingest.live.positions import MemoryPositions, Position, PositionStore

__all__ = ["MAX_CHUNK", "CsvFollower", "MemoryPositions", "Position", "PositionStore"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Row:
    """A row that yields events or a problem, and the position just after it."""

    end: Position
    events: tuple[LiveEvent, ...] = ()
    problem: str = ""  # "file:line: what is wrong"


@dataclass
class _Delivery:
    chunk: Chunk
    done: Position | None = None  # after the last row fully handed over


class CsvFollower(FileReader):
    """Call events from a growing cdr_csv file of one PBX (see the module docstring)."""

    def __init__(
        self,
        pbx: str,
        path: Path,
        options: CdrOptions,
        positions: PositionStore,
        poll: float = 1.0,
        *,
        rotate_grace: float = 2.0,
        max_chunk: int = MAX_CHUNK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pbx = pbx
        self.poll = poll
        super().__init__(path, options, positions, SourceStatus(name=pbx, kind="csv"),
                         rotate_grace=rotate_grace, max_chunk=max_chunk, clock=clock)

    def __repr__(self) -> str:
        return f"CsvFollower({self.pbx!r}, {str(self.path)!r})"

    # -- public ------------------------------------------------------------------------------

    def poll_once(self) -> list[LiveEvent]:
        """Read everything complete since the saved position; return its events in file order."""
        out: list[LiveEvent] = []
        while (chunk := self._next_chunk()) is not None:
            delivery = _Delivery(chunk)
            for row in self._parse(chunk):
                out.extend(row.events)
                self._account(delivery, row)
            self._commit(chunk.file, chunk.end)
        return out

    async def run(self, queue: asyncio.Queue[LiveEvent]) -> None:
        """Poll every `poll` seconds and put events on `queue` until cancelled.

        Chunks are parsed in a worker thread; the position is saved after a chunk's events are
        all on the queue, or, when cancelled halfway, after the last row handed over whole.
        """
        delivery: _Delivery | None = None
        try:
            while True:
                while (chunk := self._next_chunk()) is not None:
                    delivery = _Delivery(chunk)
                    rows = await asyncio.to_thread(self._parse, chunk)
                    for row in rows:
                        for event in row.events:
                            await queue.put(event)
                        self._account(delivery, row)
                    self._commit(chunk.file, chunk.end)
                    delivery = None
                    await asyncio.sleep(0)
                await asyncio.sleep(self.poll)
        finally:
            if delivery is not None and delivery.done is not None:
                self._commit(delivery.chunk.file, delivery.done)
            self.status.connected = False
            self.status.state = "stopped"

    def close(self) -> None:
        """Close the open file (the position stays saved)."""
        if self._file is not None:
            self._file.fh.close()
            self._file = None
        self.status.connected = False

    # -- events and bookkeeping --------------------------------------------------------------

    def _account(self, delivery: _Delivery, row: _Row) -> None:
        if row.problem:
            log.warning("%s", row.problem)
            self.status.errors += 1
        if row.events:
            self.status.events += len(row.events)
            self.status.last_event_at = datetime.now(UTC)
        delivery.done = row.end

    # -- parsing -----------------------------------------------------------------------------

    def _parse(self, chunk: Chunk) -> list[_Row]:
        """Rows with events or problems, in file order (pure: no follower state changes)."""
        f, fmt = chunk.file, chunk.file.fmt
        assert fmt is not None
        shown = str(f.path)
        lead = padded(chunk.file.prefix)
        skip = lead.count(b"\n")
        shift = chunk.start.line - skip
        try:
            frame = with_temp(
                lead + chunk.data,
                lambda tmp: collect(scan_file(tmp, shown, self.options), skip, shift, fmt),
            )
        except (IngestError, pl.exceptions.PolarsError, OSError) as e:
            first, last = chunk.start.line + 1, chunk.end.line
            problem = f"{shown}:{first}-{last}: could not parse these lines ({e})"
            return [_Row(chunk.end, problem=problem)]
        ends = [m.end() for m in re.finditer(b"\n", chunk.data)]
        rows: list[_Row] = []
        for r in frame.iter_rows(named=True):
            line: int = r["_line"]
            offset = min(chunk.start.offset + ends[line - chunk.start.line - 1], chunk.end.offset)
            end = Position(chunk.start.inode, offset, line)
            if r["problem"] is not None:
                rows.append(_Row(end, problem=f"{r['origin']}: {r['problem']}"))
            else:
                rows.append(_Row(end, events=self._events(r)))
        return rows

    def _events(self, r: dict[str, Any]) -> tuple[LiveEvent, ...]:
        return call_events(self.pbx, r)

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

Positions: after each chunk the follower saves `Position(inode, offset, line)` of the file it is
reading in a `PositionStore` under `str(path)`. Rotation:

* rename (logrotate `create`, or moving the file away): the path's inode changes. The old file
  is kept open and read to its end; it is left only once it has not grown for `rotate_grace`
  seconds (late writes of a writer that still has it open are read), an unterminated last line
  then being parsed as a row, as batch would. Then the new file is read from 0.
* copytruncate: same inode, but the size is below the saved offset (or the byte before the
  offset is no longer a newline): read again from 0, detecting the layout again.
* restart: the saved inode is looked up at `path`, then among its siblings (`Master.csv.1`,
  `Master.csv-20261124`, ...); a rotated sibling is finished first. As inode numbers are
  reused, the file must also still have `line` line ends before `offset`, else it is read
  from the start (and a vanished sibling means the new file is read from the start).

Order: events come in file order, a row's CallStarted, CallAnswered, CallEnded together; an old
file's rows all come before the new file's. `run()` saves the position once a chunk's events
are all on the queue; if cancelled while a bounded queue is full, it saves the position after
the last row handed over whole, so a restart gives at most that one row's events again, and
never skips one. `status.last_event_at` is the wall-clock time of the last event handed over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import polars as pl

from tollwatch.cdr_ingest._scan import FileFormat, detect, scan_file
from tollwatch.cdr_ingest._types import CdrOptions, IngestError
from tollwatch.cdr_ingest.live.events import (
    LiveEvent,
    SourceStatus,
)
from tollwatch.cdr_ingest.live.follow_rows import (
    HEAD_BYTES,
    call_events,
    collect,
    padded,
    with_temp,
)
from tollwatch.cdr_ingest.live.rotation import find_copy, fingerprint

log = logging.getLogger(__name__)

MAX_CHUNK = 8 << 20  # bytes read per iteration
_HEAD_LINES = 50


@dataclass(frozen=True)
class Position:
    """Where reading stopped in one file: bytes and physical lines consumed."""

    inode: int
    offset: int
    line: int
    fp: str = field(default="", compare=False)  # content fingerprint at offset (.rotation)


class PositionStore(Protocol):
    def load(self, path: str) -> Position | None: ...

    def save(self, path: str, pos: Position) -> None: ...


class MemoryPositions:
    """A dict-backed PositionStore (tests; the daemon uses a persistent one)."""

    def __init__(self) -> None:
        self.positions: dict[str, Position] = {}

    def load(self, path: str) -> Position | None:
        return self.positions.get(path)

    def save(self, path: str, pos: Position) -> None:
        self.positions[path] = pos


@dataclass
class _File:
    """One open file being read."""

    fh: BinaryIO
    path: Path  # the name it had when opened (used in file:line)
    inode: int
    dev: int
    offset: int
    line: int
    rotated: bool = False  # replaced at the followed path: finish it, then move on
    size_seen: int = -1
    idle_since: float = 0.0
    fmt: FileFormat | None = None
    prefix: bytes = b""
    bad: str = ""  # not a CDR file: nothing more is read from it
    fp: str = ""  # fingerprint at offset

    @property
    def position(self) -> Position:
        return Position(self.inode, self.offset, self.line, self.fp)


@dataclass(frozen=True)
class _Chunk:
    file: _File
    data: bytes  # complete lines; a rotated file's unterminated last line gets a "\n"
    start: Position
    end: Position


@dataclass(frozen=True)
class _Row:
    """A row that yields events or a problem, and the position just after it."""

    end: Position
    events: tuple[LiveEvent, ...] = ()
    problem: str = ""  # "file:line: what is wrong"


@dataclass
class _Delivery:
    chunk: _Chunk
    done: Position | None = None  # after the last row fully handed over


class CsvFollower:
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
        self.path = Path(path)
        self.options = options
        self.positions = positions
        self.poll = poll
        self.rotate_grace = rotate_grace
        self.max_chunk = max_chunk
        self.clock = clock
        self.status = SourceStatus(name=pbx, kind="csv")
        self._key = str(self.path)
        self._file: _File | None = None

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

    def _commit(self, f: _File, pos: Position) -> None:
        if f is not self._file:  # the file was dropped meanwhile (close())
            return
        f.offset, f.line = pos.offset, pos.line
        f.fp = fingerprint(f.fh.fileno(), pos.offset)
        self.positions.save(self._key, f.position)

    def _error(self, message: str) -> None:
        log.error("%s", message)
        self.status.errors += 1
        self.status.state = message

    # -- files and rotation ------------------------------------------------------------------

    def _stat_path(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as e:
            self.status.state = f"cannot stat {self.path}: {e.strerror or e}"
            return None

    def _open(self, path: Path, pos: Position | None, rotated: bool = False) -> _File | None:
        try:
            fh = path.open("rb", buffering=0)
        except FileNotFoundError:
            return None
        except OSError as e:
            self.status.connected = False
            self.status.state = f"cannot open {path}: {e.strerror or e}"
            return None
        st = os.fstat(fh.fileno())
        offset, line = (pos.offset, pos.line) if pos is not None else (0, 0)
        f = _File(fh, path, st.st_ino, st.st_dev, offset, line, rotated, st.st_size, self.clock())
        f.fp = pos.fp if pos is not None else ""
        self.status.connected = True
        self.status.state = f"{'finishing rotated' if rotated else 'following'} {path}"
        return f

    def _start(self, st: os.stat_result | None) -> _File | None:
        """The first open: resume at the saved position (finishing a rotated sibling first)."""
        saved = self.positions.load(self._key)
        if saved is None:
            return self._open(self.path, None) if st is not None else None
        if st is not None and st.st_ino == saved.inode:
            f = self._open(self.path, saved)
            if f is not None and f.inode != saved.inode:  # rotated between stat and open
                f.fh.close()
                return None
            if f is not None and (self._truncated(f) or not self._lines_match(f)):
                copy = self._copy_of(f)
                if copy is not None:
                    return copy
                log.warning(
                    "%s: truncated or replaced (inode reused) while stopped, reading it from "
                    "the start",
                    self.path,
                )
                f.offset = f.line = 0
                f.fp = ""
            return f
        sibling = self._find_inode(saved.inode)
        if sibling is not None:
            log.info("%s: rotated to %s while stopped, finishing it first", self.path, sibling)
            f = self._open(sibling, saved, rotated=True)
            if f is not None and f.inode == saved.inode and self._lines_match(f):
                return f
            if f is not None:
                f.fh.close()
        if st is None:
            return None
        log.warning(
            "%s: the file last read (inode %d, line %d) is gone; reading the new one from the "
            "start (rows written after the last poll may be missed)",
            self.path,
            saved.inode,
            saved.line,
        )
        return self._open(self.path, None)

    def _find_inode(self, inode: int) -> Path | None:
        prefix = self.path.name
        try:
            names = sorted(os.listdir(self.path.parent))
        except OSError:
            return None
        for name in names:
            if name == prefix or not name.startswith(prefix):
                continue
            candidate = self.path.parent / name
            try:
                if candidate.stat().st_ino == inode and candidate.is_file():
                    return candidate
            except OSError:
                continue
        return None

    def _lines_match(self, f: _File) -> bool:
        """The file has `line` line ends before `offset` (a cheap check, once per open, that a
        saved position still belongs to this file: inode numbers are reused)."""
        count, at = 0, 0
        try:
            while at < f.offset:
                block = os.pread(f.fh.fileno(), min(self.max_chunk, f.offset - at), at)
                if not block:
                    return False
                count += block.count(b"\n")
                at += len(block)
        except OSError:
            return False
        # the unterminated last line of a finished rotated file counts as a line
        tail = f.rotated and f.offset > 0 and not _ends_line(f)
        return count + tail == f.line

    def _truncated(self, f: _File) -> bool:
        """Smaller than the position, no longer a line end just before it, or other content
        before it than was read (its fingerprint changed: copytruncate, then new rows)."""
        if f.offset == 0:
            return False
        try:
            size = os.fstat(f.fh.fileno()).st_size
            if size < f.offset or os.pread(f.fh.fileno(), 1, f.offset - 1) != b"\n":
                return True
        except OSError:
            return False
        return bool(f.fp) and fingerprint(f.fh.fileno(), f.offset) != f.fp

    def _copy_of(self, f: _File) -> _File | None:
        """The rotated copy (plain or .gz) of what `f` held up to its position, opened there
        to read its unread tail before the truncated file; None when there is none."""
        found = find_copy(self.path, f.offset, f.fp)
        if found is None:
            return None
        read, shown = found
        copy = self._open(read, f.position, rotated=True)
        if copy is None:
            return None
        copy.path = shown
        copy.fmt, copy.prefix = f.fmt, f.prefix
        copy.idle_since = self.clock() - self.rotate_grace  # a finished copy: no late writes
        f.fh.close()
        log.warning("%s: copied and truncated (copytruncate); reading the rest of the copy %s "
                    "from line %d first", self.path, shown, f.line)
        return copy

    def _next_chunk(self) -> _Chunk | None:
        """The next chunk of complete lines to parse, or None when caught up."""
        while True:
            st = self._stat_path()
            f = self._file
            if f is None:
                f = self._start(st)
                if f is None:
                    if st is None:
                        self.status.connected = False
                        self.status.state = f"waiting for {self.path}"
                    return None
                self._file = f
                self.positions.save(self._key, f.position)
            if not f.rotated and st is not None:
                if (st.st_ino, st.st_dev) != (f.inode, f.dev):
                    log.info("%s: rotated, finishing the old file first", self.path)
                    f.rotated = True
                    f.idle_since = self.clock()
                    self.status.state = f"finishing rotated {self.path} (inode {f.inode})"
                elif self._truncated(f):
                    copy = self._copy_of(f)
                    if copy is not None:
                        self._file = f = copy
                        self.positions.save(self._key, f.position)
                        continue
                    log.info("%s: truncated, reading from the start", self.path)
                    f.offset = f.line = 0
                    f.fmt, f.prefix, f.bad, f.fp = None, b"", "", ""
                    self.positions.save(self._key, f.position)
            try:
                chunk = self._read(f)
            except OSError as e:
                self.status.connected = False
                self.status.state = f"cannot read {f.path}: {e.strerror or e}"
                return None
            if chunk is not None:
                return chunk
            if not (f.rotated and st is not None and self._finished(f)):
                return None
            # the old file is done: switch to the new one, from the start
            f.fh.close()
            self._file = None
            new = self._open(self.path, None)
            if new is None:
                return None
            self._file = new
            self.positions.save(self._key, new.position)

    def _finished(self, f: _File) -> bool:
        quiet = self.clock() - f.idle_since >= self.rotate_grace
        return quiet and (bool(f.bad) or f.offset >= f.size_seen)

    def _read(self, f: _File) -> _Chunk | None:
        size = os.fstat(f.fh.fileno()).st_size
        if size != f.size_seen:
            f.size_seen = size
            f.idle_since = self.clock()
        if f.bad or size <= f.offset:
            return None
        quiet = self.clock() - f.idle_since >= self.rotate_grace
        final = f.rotated and quiet  # nothing more will be written to it
        if f.fmt is None and not self._detect(f, final):
            return None
        want = min(size - f.offset, self.max_chunk)
        data = os.pread(f.fh.fileno(), want, f.offset)
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            if final and len(data) == size - f.offset:
                # the unterminated last line of a finished file: a row, as in batch
                end = Position(f.inode, size, f.line + 1)
                return _Chunk(f, data + b"\n", f.position, end)
            if len(data) == self.max_chunk and self._skip_long_line(f, size, final):
                return self._read(f)
            return None
        self.status.connected = True
        self.status.state = f"{'finishing rotated' if f.rotated else 'following'} {f.path}"
        data = data[:cut]
        end = Position(f.inode, f.offset + cut, f.line + data.count(b"\n"))
        return _Chunk(f, data, f.position, end)

    def _skip_long_line(self, f: _File, size: int, final: bool) -> bool:
        """A line longer than max_chunk: count it as bad and go past it once it has ended
        (or the file is finished); False while it goes on."""
        at = f.offset + self.max_chunk
        end = -1
        while at < size and end < 0:
            block = os.pread(f.fh.fileno(), min(1 << 20, size - at), at)
            if not block:
                break
            nl = block.find(b"\n")
            end = at + nl + 1 if nl >= 0 else -1
            at += len(block)
        length = end - 1 - f.offset
        if end < 0 and final:
            end, length = size, size - f.offset
        if end < 0:
            return False
        line = f.line + 1
        self._commit(f, Position(f.inode, end, line))
        log.warning("%s:%d: line of %d bytes, skipped", f.path, line, length)
        self.status.errors += 1
        return True

    def _detect(self, f: _File, final: bool) -> bool:
        """Detect the layout from the file's first complete lines; False to wait."""
        head = os.pread(f.fh.fileno(), HEAD_BYTES, 0)
        if final and len(head) < HEAD_BYTES and not head.endswith(b"\n"):
            head += b"\n"  # its unterminated last line will be read as a row
        lines = head[: head.rfind(b"\n") + 1].split(b"\n")[:-1]
        kept: list[bytes] = []
        seen = 0
        for ln in lines:
            if seen == _HEAD_LINES:
                break
            kept.append(ln)
            seen += bool(ln.strip())
        if not seen:
            return False
        prefix = b"".join(ln + b"\n" for ln in kept)
        full = final or seen == _HEAD_LINES or len(head) >= HEAD_BYTES
        try:
            fmt = with_temp(padded(prefix), lambda tmp: detect(tmp, str(f.path), self.options))
        except IngestError as e:
            if full:
                f.bad = str(e)
                self._error(f"{e} (not followed until it is rotated or truncated)")
            else:
                self.status.state = f"waiting for more lines to detect the layout: {e}"
            return False
        if fmt is None:
            return False
        log.info("%s: %s", f.path, fmt.description)
        f.fmt, f.prefix = fmt, prefix
        return True

    # -- parsing -----------------------------------------------------------------------------

    def _parse(self, chunk: _Chunk) -> list[_Row]:
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


def _ends_line(f: _File) -> bool:
    return os.pread(f.fh.fileno(), 1, f.offset - 1) == b"\n"

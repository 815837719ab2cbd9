"""The Master.csv follower's files: opening, reading complete lines, telling rotation and
truncation, and resuming after a restart (`FileReader`, the base of `follow.CsvFollower`).

After each chunk the follower saves `Position(inode, offset, line)` of the file it is
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
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tollwatch.cdr_ingest._scan import FileFormat, detect
from tollwatch.cdr_ingest._types import CdrOptions, IngestError
from tollwatch.cdr_ingest.live.events import SourceStatus
from tollwatch.cdr_ingest.live.follow_rows import HEAD_BYTES, padded, with_temp
from tollwatch.cdr_ingest.live.positions import Position, PositionStore
from tollwatch.cdr_ingest.live.rotation import find_copy, find_inode, fingerprint, opened

log = logging.getLogger("tollwatch.cdr_ingest.live.follow")  # one logger for the follower

MAX_CHUNK = 8 << 20  # bytes read per iteration
_HEAD_LINES = 50


@dataclass
class OpenFile:
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
class Chunk:
    file: OpenFile
    data: bytes  # complete lines; a rotated file's unterminated last line gets a "\n"
    start: Position
    end: Position



class FileReader:
    """Complete lines of the followed file, chunk by chunk, across rotation and restarts."""

    def __init__(
        self,
        path: Path,
        options: CdrOptions,
        positions: PositionStore,
        status: SourceStatus,
        *,
        rotate_grace: float = 2.0,
        max_chunk: int = MAX_CHUNK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.options = options
        self.positions = positions
        self.status = status
        self.rotate_grace = rotate_grace
        self.max_chunk = max_chunk
        self.clock = clock
        self._key = str(self.path)
        self._file: OpenFile | None = None

    def _commit(self, f: OpenFile, pos: Position) -> None:
        if f is not self._file:  # the file was dropped meanwhile (close())
            return
        f.offset, f.line = pos.offset, pos.line
        # a chunk's end carries the fingerprint taken when it was read: taken now, after the
        # parse, the file may have been copytruncated meanwhile and its copy not be found
        f.fp = pos.fp or fingerprint(f.fh.fileno(), pos.offset)
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

    def _open(self, path: Path, pos: Position | None, rotated: bool = False) -> OpenFile | None:
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
        f = OpenFile(fh, path, st.st_ino, st.st_dev, offset, line, rotated, st.st_size,
                     self.clock())
        f.fp = pos.fp if pos is not None else ""
        self.status.connected = True
        self.status.state = f"{'finishing rotated' if rotated else 'following'} {path}"
        return f

    def _start(self, st: os.stat_result | None) -> OpenFile | None:
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
        sibling = find_inode(self.path, saved.inode)
        if sibling is not None:
            log.info("%s: rotated to %s while stopped, finishing it first", self.path, sibling)
            f = self._open(sibling, saved, rotated=True)
            if f is not None and f.inode == saved.inode and self._lines_match(f):
                return f
            if f is not None:
                f.fh.close()
        copy = self._rotated_copy(saved)
        if copy is not None:
            return copy
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

    def _rotated_copy(self, saved: Position) -> OpenFile | None:
        """At start-up, the file last read is no longer under its inode (rotated and compressed,
        or it was itself a decompressed copy being finished): its content up to the saved
        position is found among the siblings by fingerprint, and its unread tail is read."""
        found = find_copy(self.path, saved.offset, saved.fp)
        if found is None:
            return None
        read, shown = found
        copy = self._open(read, saved, rotated=True)
        opened(read, shown)
        if copy is None:
            return None
        copy.path = shown
        copy.idle_since = self.clock() - self.rotate_grace  # a finished copy: no late writes
        log.info("%s: rotated to %s while stopped, finishing it from line %d first", self.path,
                 shown, saved.line)
        return copy

    def _lines_match(self, f: OpenFile) -> bool:
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

    def _truncated(self, f: OpenFile) -> bool:
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

    def _copy_of(self, f: OpenFile) -> OpenFile | None:
        """The rotated copy (plain or .gz) of what `f` held up to its position, opened there
        to read its unread tail before the truncated file; None when there is none."""
        found = find_copy(self.path, f.offset, f.fp)
        if found is None:
            return None
        read, shown = found
        copy = self._open(read, f.position, rotated=True)
        opened(read, shown)
        if copy is None:
            return None
        copy.path = shown
        copy.fmt, copy.prefix = f.fmt, f.prefix
        copy.idle_since = self.clock() - self.rotate_grace  # a finished copy: no late writes
        f.fh.close()
        log.warning("%s: copied and truncated (copytruncate); reading the rest of the copy %s "
                    "from line %d first", self.path, shown, f.line)
        return copy

    def _next_chunk(self) -> Chunk | None:
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

    def _finished(self, f: OpenFile) -> bool:
        quiet = self.clock() - f.idle_since >= self.rotate_grace
        return quiet and (bool(f.bad) or f.offset >= f.size_seen)

    def _read(self, f: OpenFile) -> Chunk | None:
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
                end = self._end(f, size, f.line + 1)
                return None if end is None else Chunk(f, data + b"\n", f.position, end)
            if len(data) == self.max_chunk and self._skip_long_line(f, size, final):
                return self._read(f)
            return None
        self.status.connected = True
        self.status.state = f"{'finishing rotated' if f.rotated else 'following'} {f.path}"
        data = data[:cut]
        end = self._end(f, f.offset + cut, f.line + data.count(b"\n"))
        return None if end is None else Chunk(f, data, f.position, end)

    def _end(self, f: OpenFile, offset: int, line: int) -> Position | None:
        """The position after a chunk just read, with the file's fingerprint there; None if
        the file was truncated since the read (the next poll finds the copy)."""
        fp = fingerprint(f.fh.fileno(), offset)
        return None if fp == "short" else Position(f.inode, offset, line, fp)

    def _skip_long_line(self, f: OpenFile, size: int, final: bool) -> bool:
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

    def _detect(self, f: OpenFile, final: bool) -> bool:
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


def _ends_line(f: OpenFile) -> bool:
    return os.pread(f.fh.fileno(), 1, f.offset - 1) == b"\n"

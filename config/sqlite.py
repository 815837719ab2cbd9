"""The one way tollwatch opens its SQLite files: WAL, a busy timeout, serialized writes, and
no way for a disk problem to stop monitoring.

Degrade loudly, recover by itself:

* A write that fails for a storage reason (disk full, read-only file system, I/O error, a
  locked or corrupt file) moves the store to an in-memory copy of the database (made with
  SQLite's backup API from the file, which can still be read when the disk is full) and runs
  the write again there. The daemon goes on detecting and alerting from memory. The problem
  is logged once, with the path and the errno, and listed in `HEALTH` (status, metrics).
* Every `RETRY_EVERY` seconds (on the next write, or when `recover()` is called) the store
  tries the file again: the in-memory database is written back in one transaction (backup
  API) and the store continues on the file. Nothing written meanwhile is lost or repeated
  (an outbox row sent from memory is sent in the file too, so it is not posted again).
* A corrupt file (not a database, malformed) found when opening is moved aside to
  `<name>.corrupt-<UTC time>` (with its -wal/-shm), named in one log line, and a fresh file
  is started: a bad state file never makes the daemon crash-loop.
* A file that cannot be written at start-up (read-only directory) is read into memory; the
  daemon starts and says so.

Writes go through `_write(work)` (`work(connection)` runs in one transaction and may run a
second time, on the in-memory copy); reads through `_read(work)`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("tollwatch.storage")

RETRY_EVERY = 5.0  # seconds between attempts to go back to the file
_T = TypeVar("_T")

# SQLite's primary result codes that mean "the storage", not "the query", and the errno told
_STORAGE_CODES = {
    "SQLITE_FULL": errno.ENOSPC,
    "SQLITE_READONLY": errno.EROFS,
    "SQLITE_IOERR": errno.EIO,
    "SQLITE_BUSY": errno.EBUSY,
    "SQLITE_LOCKED": errno.EBUSY,
    "SQLITE_CORRUPT": errno.EILSEQ,
    "SQLITE_NOTADB": errno.EILSEQ,
    "SQLITE_CANTOPEN": errno.EACCES,
    "SQLITE_PERM": errno.EACCES,
    "SQLITE_PROTOCOL": errno.EIO,
}
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


class StorageError(Exception):
    """A storage problem that even the in-memory fallback could not absorb."""


@dataclass
class Problem:
    path: str
    errno: str  # "ENOSPC", "EROFS", "EIO", "EBUSY", "EILSEQ" (corrupt), ...
    error: str  # words: "No space left on device", "database disk image is malformed"
    since: str  # ISO time (UTC) of the first failure
    failures: int = 1


class StorageHealth:
    """The storage problems in force, by path (what `status` and metrics show)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: dict[str, Problem] = {}
        self.failures_total = 0
        self.recoveries_total = 0
        self.moved_aside: list[str] = []

    def failed(self, path: Path, code: int, error: str) -> None:
        key = str(path)
        name = errno.errorcode.get(code, str(code))
        with self._lock:
            self.failures_total += 1
            known = self._problems.get(key)
            if known is not None and known.errno == name:
                known.failures += 1
                return
            self._problems[key] = Problem(key, name, error, datetime.now(UTC).isoformat())
        log.error("storage: %s: %s (%s); keeping it in memory and retrying every %gs "
                  "(detection and alerts go on)", key, name, error, RETRY_EVERY)

    def recovered(self, path: Path) -> None:
        with self._lock:
            problem = self._problems.pop(str(path), None)
            self.recoveries_total += 1
        if problem is not None:
            log.warning("storage: %s: writable again (was %s since %s); what was kept in "
                        "memory is saved", path, problem.errno, problem.since)

    def problems(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(p) for p in self._problems.values()]

    def clear(self, path: Path) -> None:
        with self._lock:
            self._problems.pop(str(path), None)


HEALTH = StorageHealth()
_OPEN: weakref.WeakSet[SqliteFile] = weakref.WeakSet()


def recover_all() -> None:
    """Give every store kept in memory a chance to go back to its file (rate-limited)."""
    for store in list(_OPEN):
        if store.in_memory:
            store.recover()


def storage_errno(exc: BaseException) -> int | None:
    """The errno a storage failure stands for; None when it is not a storage failure."""
    if isinstance(exc, OSError):
        return exc.errno or errno.EIO
    if not isinstance(exc, sqlite3.Error):
        return None
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    for prefix, code in _STORAGE_CODES.items():
        if name.startswith(prefix):
            return code
    text = str(exc).lower()
    if "disk is full" in text:
        return errno.ENOSPC
    if "readonly" in text or "read-only" in text:
        return errno.EROFS
    if "malformed" in text or "not a database" in text:
        return errno.EILSEQ
    if "unable to open" in text:
        return errno.EACCES
    if "disk i/o" in text:
        return errno.EIO
    if "locked" in text or "closed database" in text:
        return errno.EBUSY
    return None


def _is_corrupt(exc: BaseException) -> bool:
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc).lower()
    return name.startswith(_CORRUPT) or "malformed" in text or "not a database" in text


def probe(directory: Path) -> OSError | None:
    """Write (and sync) a small file in `directory`: the real errno of a write there, if any."""
    target = directory / ".tollwatch-write-probe"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * 8192)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            target.unlink()
        return exc
    with contextlib.suppress(OSError):
        target.unlink()
    return None


def move_aside(path: Path, why: str) -> Path:
    """Rename a bad database (and its -wal/-shm) to `<name>.corrupt-<time>`; one log line."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            with contextlib.suppress(OSError):
                os.replace(side, Path(str(target) + suffix))
    log.error("storage: %s is corrupt (%s): moved aside to %s; starting afresh", path, why,
              target)
    HEALTH.moved_aside.append(str(target))
    return target


class SqliteFile:
    """A connection usable from the event loop and worker threads, with transactions, that
    falls back to memory when the file cannot be written (see the module docstring)."""

    def __init__(self, path: Path | str, schema: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._schema = schema
        self._clock = clock
        self._lock = threading.RLock()
        self._file = str(path) != ":memory:"
        self.in_memory = False  # True while the file cannot be written
        self._copied = True  # the in-memory copy started from the file's content
        self._retry_at = 0.0
        self._closed = False
        self._db = self._open()
        _OPEN.add(self)

    # ---- opening ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            check = db.execute("PRAGMA quick_check(1)").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(
                    f"database disk image is malformed ({check[0] if check else 'no answer'})")
            db.executescript(self._schema)
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> sqlite3.Connection:
        if not self._file:
            return self._memory_db(None)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self._connect()
        except (sqlite3.Error, OSError) as exc:
            if isinstance(exc, sqlite3.Error) and _is_corrupt(exc) and self.path.exists():
                try:
                    move_aside(self.path, str(exc))
                    return self._connect()
                except (sqlite3.Error, OSError) as again:
                    exc = again
            if storage_errno(exc) is None:
                raise
            return self._fall_back(exc, None)

    def _memory_db(self, source: sqlite3.Connection | None) -> sqlite3.Connection:
        mem = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        copied = False
        if source is not None:
            with contextlib.suppress(sqlite3.Error):
                source.backup(mem)
                copied = True
        for query in ("mode=ro", "mode=ro&immutable=1"):  # e.g. in a read-only directory
            if copied or not self._file or source is not None or not self.path.exists():
                break
            with contextlib.suppress(sqlite3.Error):
                ro = sqlite3.connect(f"file:{self.path}?{query}", uri=True)
                try:
                    ro.backup(mem)
                    copied = True
                finally:
                    ro.close()
        mem.executescript(self._schema)
        self._copied = copied or not (self._file and self.path.exists())
        return mem

    def _fall_back(self, exc: BaseException, current: sqlite3.Connection | None
                   ) -> sqlite3.Connection:
        """Log the problem (with the real errno where a probe shows it), switch to memory."""
        code = storage_errno(exc) or errno.EIO
        error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if self._file and code != errno.EILSEQ:
            found = probe(self.path.parent)
            if found is not None and found.errno:
                code, error = found.errno, found.strerror or error
        HEALTH.failed(self.path, code, error)
        mem = self._memory_db(current)
        if current is not None:
            with contextlib.suppress(sqlite3.Error):
                current.close()
        self.in_memory = True
        self._retry_at = self._clock() + RETRY_EVERY
        return mem

    # ---- going back to the file ----------------------------------------------------------------
    def recover(self, force: bool = False) -> bool:
        """Try to write the in-memory state back to the file (at most every RETRY_EVERY s
        unless forced). True when the store is on its file."""
        with self._lock:
            if not self.in_memory or self._closed:
                return not self.in_memory
            now = self._clock()
            if not force and now < self._retry_at:
                return False
            self._retry_at = now + RETRY_EVERY
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if not self._copied and self.path.exists():
                    move_aside(self.path, "could not be read when the store fell back to memory")
                try:
                    db = self._connect()
                except sqlite3.DatabaseError as exc:
                    if not _is_corrupt(exc):
                        raise
                    move_aside(self.path, str(exc))
                    db = self._connect()
                try:
                    self._db.backup(db)
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except BaseException:
                    db.close()
                    raise
            except (sqlite3.Error, OSError) as exc:
                if storage_errno(exc) is None:
                    raise
                code = storage_errno(exc) or errno.EIO
                found = probe(self.path.parent)
                if found is not None and found.errno:
                    code = found.errno
                HEALTH.failed(self.path, code, str(exc).splitlines()[0] if str(exc) else "")
                return False
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = db
            self.in_memory = False
            self._copied = True
            HEALTH.recovered(self.path)
            return True

    # ---- transactions --------------------------------------------------------------------------
    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` in one transaction; on a storage failure, again on the in-memory copy."""
        with self._lock:
            if self._closed:
                raise StorageError(f"{self.path}: store already closed")
            if self.in_memory:
                self.recover()
            try:
                return _transaction(self._db, work)
            except (sqlite3.Error, OSError) as exc:
                if storage_errno(exc) is None:
                    raise
                if self.in_memory or not self._file:  # memory itself failed: nothing to do
                    raise StorageError(f"{self.path}: {exc}") from exc
                self._db = self._fall_back(exc, self._db)
                return _transaction(self._db, work)

    def _read(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            if self._closed:
                raise StorageError(f"{self.path}: store already closed")
            try:
                return work(self._db)
            except (sqlite3.Error, OSError) as exc:
                if storage_errno(exc) is None or self.in_memory:
                    raise
                self._db = self._fall_back(exc, self._db)
                return work(self._db)

    def close(self) -> None:
        """Close; state still in memory gets one last try to reach the file (logged if not)."""
        with self._lock:
            if self._closed:
                return
            if self.in_memory and self._file and not self.recover(force=True):
                log.error("storage: %s: could not be written at shutdown; the state kept in "
                          "memory since the failure is lost", self.path)
            self._closed = True
            self._db.close()


def _transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    try:
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return result

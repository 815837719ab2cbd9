"""Memory housekeeping for the long-running daemon: hand freed heap back to the system, and say
what the allocator holds.

Why: the daemon's Python objects are bounded (call-id memory, rule windows, capped incidents),
but glibc's malloc keeps memory that was freed: in the main heap below a live block, and in the
arenas it gives each thread that allocates (the follower parses CSV chunks and SQLite writes in
worker threads; every such thread gets an arena of its own, up to 8 per core). Freed pages in
the middle of a heap are only returned by `malloc_trim`, never by `free`, so under steady
traffic the resident size creeps up with fragmentation although nothing leaks (issue 13's soak:
RSS +35 MiB/h while the Python heap grew 4 MiB). `Housekeeper.run()` calls `malloc_trim(0)`
every minute in a worker thread (the event loop is not held; ctypes releases the GIL) and logs,
every 15 minutes, RSS and glibc's figures (`mallinfo2`: in use, free, mapped), what SQLite's
allocator holds, Python's allocated blocks, and what the trims returned.

`TOLLWATCH_MALLOC_TRIM` (seconds between trims; `0` turns it off) changes the interval,
`TOLLWATCH_MEMORY_LOG` (seconds) how often the line is logged. Other
C libraries (musl, macOS) have neither call: then nothing is trimmed and only RSS is logged.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TRIM_EVERY = 60.0  # seconds between malloc_trim(0) calls
REPORT_EVERY = 900.0  # seconds between log lines
ENV = "TOLLWATCH_MALLOC_TRIM"
LOG_ENV = "TOLLWATCH_MEMORY_LOG"
MIB = 1 << 20


class _MallInfo2(ctypes.Structure):
    _NAMES = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(name, ctypes.c_size_t) for name in _NAMES.split()]


class Allocator:
    """glibc's malloc_trim and mallinfo2 through ctypes; absent elsewhere (`available` False)."""

    def __init__(self, lib: Any = None) -> None:
        if lib is None:
            try:
                lib = ctypes.CDLL(None)
            except OSError:  # pragma: no cover - a platform without dlopen(NULL)
                lib = None
        self._trim = getattr(lib, "malloc_trim", None)
        self._info = getattr(lib, "mallinfo2", None)  # glibc >= 2.33
        if self._trim is not None:
            self._trim.argtypes = [ctypes.c_size_t]
            self._trim.restype = ctypes.c_int
        if self._info is not None:
            self._info.argtypes = []
            self._info.restype = _MallInfo2

    @property
    def available(self) -> bool:
        return self._trim is not None

    def trim(self) -> bool:
        """Return freed memory at the top and in the middle of every arena to the system."""
        return bool(self._trim(0)) if self._trim is not None else False

    def info(self) -> dict[str, int] | None:
        """Bytes held by malloc: `heap` (arenas' heaps, used and free), `mapped` (blocks mapped
        by themselves), `in_use`, `free` (in the heaps); None without mallinfo2."""
        if self._info is None:
            return None
        m = self._info()
        return {
            "heap": int(m.arena),
            "mapped": int(m.hblkhd),
            "in_use": int(m.uordblks),
            "free": int(m.fordblks),
        }


class _Sqlite:
    """Bytes SQLite's own allocator holds now (`sqlite3_memory_used`, all connections: page
    caches, statements, in-memory databases); None where the library cannot be found."""

    def __init__(self) -> None:
        self._used: Any = None
        for name in ("libsqlite3.so.0", "libsqlite3.dylib"):
            try:
                fn = ctypes.CDLL(name).sqlite3_memory_used
            except (OSError, AttributeError):
                continue
            fn.argtypes = []
            fn.restype = ctypes.c_int64
            self._used = fn
            break

    def __call__(self) -> int | None:
        return int(self._used()) if self._used is not None else None


def rss() -> int | None:
    """This process's resident size in bytes (/proc/self/statm), None where there is none."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def seconds(name: str, default: float, environ: dict[str, str] | None = None) -> float:
    """Seconds from the environment variable `name` (unset: `default`). A value that is not a
    number >= 0 is logged, by the variable's name, and the default taken: never a crash."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        log.warning("%s is not a number of seconds >= 0; using %.0f", name, default)
        return default
    return value


@dataclass
class Housekeeper:
    every: float = TRIM_EVERY
    report_every: float = REPORT_EVERY
    allocator: Allocator = field(default_factory=Allocator)
    resident: Callable[[], int | None] = rss
    sqlite: Callable[[], int | None] = field(default_factory=_Sqlite)
    clock: Callable[[], float] = time.monotonic
    trims: int = 0
    returned: int = 0  # bytes of RSS the trims gave back (RSS before - after, when it fell)
    trim_s: float = 0.0  # time spent in malloc_trim, all calls
    last: dict[str, Any] = field(default_factory=dict)

    def once(self) -> dict[str, Any]:
        """One trim (when there is an allocator to trim), measured."""
        before = self.resident()
        t0 = self.clock()
        if self.allocator.available and self.every > 0:
            self.allocator.trim()
            self.trims += 1
        took = self.clock() - t0
        self.trim_s += took
        after = self.resident()
        if before is not None and after is not None and after < before:
            self.returned += before - after
        self.last = {
            "rss": after,
            "trim_s": took,
            "malloc": self.allocator.info(),
            "sqlite": self.sqlite(),
            "py_blocks": sys.getallocatedblocks(),
        }
        return self.last

    def line(self) -> str:
        """The log line: RSS, malloc's heap split, what the trims returned and cost."""
        parts = [f"rss {_mib(self.last.get('rss'))}"]
        info = self.last.get("malloc")
        if info:
            parts.append(
                f"malloc heap {_mib(info['heap'])} ({_mib(info['in_use'])} in use, "
                f"{_mib(info['free'])} free), mapped {_mib(info['mapped'])}"
            )
        if self.last.get("sqlite") is not None:
            parts.append(f"sqlite {_mib(self.last['sqlite'])}")
        if self.last.get("py_blocks") is not None:
            parts.append(f"{self.last['py_blocks']} python blocks")
        if self.trims:
            parts.append(
                f"{self.trims} trims returned {_mib(self.returned)} in {self.trim_s * 1000:.0f} ms"
            )
        return "memory: " + "; ".join(parts)

    async def run(self) -> None:
        """Trim every `every` seconds (in a worker thread), log a line every `report_every`."""
        interval = self.every if self.every > 0 else self.report_every
        reported = self.clock() - self.report_every  # the first line early
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.once)
                if self.clock() - reported >= self.report_every:
                    reported = self.clock()
                    log.info("%s", self.line())
            except Exception:  # housekeeping must never stop the daemon
                log.exception("memory housekeeping failed")


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / MIB:.1f} MiB"


def housekeeper(environ: dict[str, str] | None = None) -> Housekeeper:
    """The daemon's housekeeper, its intervals from the environment."""
    return Housekeeper(
        every=seconds(ENV, TRIM_EVERY, environ),
        report_every=seconds(LOG_ENV, REPORT_EVERY, environ) or REPORT_EVERY,
    )

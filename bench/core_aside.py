"""Give the benchmarked daemon its core: move every other process's threads off it for a run.

`bench_daemon.py` pins the daemon to core 0 and its sender to core 1, but the machine's other
processes (here: RabbitMQ's beam.smp, PostgreSQL, Redis, NATS, Mosquitto, started for every
session) may still run on core 0, and while one does the daemon's event loop waits for the core
(`--trace`'s "to_read - waiting for a core"). `--isolate` takes core 0 out of the affinity of
every thread that may run elsewhere too, for the run only, and puts each back afterwards.
Threads bound to one core (the kernel's per-CPU threads) and threads whose affinity cannot be
changed are left as they are. Linux only (`/proc`, `sched_setaffinity`); needs the right to
change the other processes' affinity (root).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

Moved = dict[int, set[int]]  # thread id -> its affinity before


def _threads(pids: Iterable[int] | None, keep: set[int]) -> Iterator[int]:
    if pids is None:
        pids = (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    for pid in pids:
        if pid in keep:
            continue
        try:
            tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
        except OSError:  # gone, or not ours to see
            continue
        yield from tids


def move_off(core: int, keep: Iterable[int] = (), pids: Iterable[int] | None = None) -> Moved:
    """Take `core` out of the affinity of every thread of `pids` (default: every process)
    but those of `keep`, where the thread may run on another core too. Returns what to put
    back (`put_back`)."""
    moved: Moved = {}
    for tid in _threads(pids, {os.getpid(), *keep}):
        try:
            before = os.sched_getaffinity(tid)
            if core in before and len(before) > 1:
                os.sched_setaffinity(tid, before - {core})
                moved[tid] = before
        except OSError:  # exited meanwhile, or its affinity is fixed
            continue
    return moved


def put_back(moved: Moved) -> int:
    """Restore each moved thread's affinity; returns how many were restored."""
    done = 0
    for tid, before in moved.items():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, before)
            done += 1
    return done


@contextlib.contextmanager
def core_to_self(core: int, enabled: bool) -> Iterator[dict[str, int]]:
    """Within the block, `core` runs only this process (and what it starts); the figures say
    how many threads were moved and put back."""
    figures = {"threads_moved": 0, "threads_put_back": 0}
    moved = move_off(core) if enabled else {}
    figures["threads_moved"] = len(moved)
    try:
        yield figures
    finally:
        figures["threads_put_back"] = put_back(moved)

"""Give the benchmarked daemon its core: move every other process's threads off it for a run.

`bench_daemon.py` pins the daemon to core 0 and its sender to core 1, but the machine's other
processes (here: RabbitMQ's beam.smp, PostgreSQL, Redis, NATS, Mosquitto, started for every
session) may still run on core 0, and while one does the daemon's event loop waits for the core
(`--trace`'s "to_read - waiting for a core"). `--isolate` takes core 0 out of the affinity of
every thread that may run elsewhere too, for the run only, and puts each back afterwards.
Threads bound to one core (the kernel's per-CPU threads) and threads whose affinity cannot be
changed are left as they are. Linux only (`/proc`, `sched_setaffinity`); needs the right to
change the other processes' affinity (root).

A run stopped by SIGTERM, SIGHUP or Ctrl-C puts them back on its way out. One killed outright
(SIGKILL) cannot: what it moved is kept in `STATE` while it runs, and

    python bench/core_aside.py --put-back

puts those threads back (a run also refuses to start while that file is there).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType

Moved = dict[int, set[int]]  # thread id -> its affinity before
STATE = Path(tempfile.gettempdir()) / "tollwatch-core-aside.json"


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


def move_off(
    core: int,
    keep: Iterable[int] = (),
    pids: Iterable[int] | None = None,
    moved: Moved | None = None,
) -> Moved:
    """Take `core` out of the affinity of every thread of `pids` (default: every process)
    but those of `keep`, where the thread may run on another core too. Returns what to put
    back (`put_back`): `moved` when given, filled as it goes, so that a caller interrupted
    meanwhile (a signal) still knows every thread moved so far."""
    moved = {} if moved is None else moved
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


def _exit_on(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through `core_to_self`, which puts back


@contextlib.contextmanager
def core_to_self(
    core: int, enabled: bool, state: Path = STATE, pids: Iterable[int] | None = None
) -> Iterator[dict[str, int]]:
    """Within the block, `core` runs only this process (and what it starts); the figures say
    how many threads were moved and put back. Call from the main thread."""
    figures = {"threads_moved": 0, "threads_put_back": 0}
    if not enabled:
        yield figures
        return
    if state.exists():
        raise SystemExit(f"{state}: a run that was killed moved threads off a core; "
                         "put them back first: python bench/core_aside.py --put-back")
    handlers = {sig: signal.signal(sig, _exit_on) for sig in (signal.SIGTERM, signal.SIGHUP)}
    moved: Moved = {}
    try:
        move_off(core, pids=pids, moved=moved)  # filled as it goes: a signal meanwhile puts back
        state.write_text(json.dumps({str(t): sorted(c) for t, c in moved.items()}))
        figures["threads_moved"] = len(moved)
        yield figures
    finally:
        figures["threads_put_back"] = put_back(moved)
        state.unlink(missing_ok=True)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def put_back_saved(state: Path = STATE) -> int:
    """Put back what a killed run moved (`state`), then forget it; returns how many."""
    if not state.exists():
        return 0
    saved = json.loads(state.read_text())
    done = put_back({int(t): set(c) for t, c in saved.items()})
    state.unlink()
    return done


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--put-back", action="store_true", help="undo what a killed run moved")
    args = ap.parse_args()
    if args.put_back:
        print(f"{put_back_saved()} threads put back")
    else:
        ap.print_help(sys.stderr)

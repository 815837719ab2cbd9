"""Take the live pipelines' snapshots without holding the event loop.

Pickling a busy PBX's rule state (windows and open incidents holding thousands of calls) takes
tens to hundreds of milliseconds, every `snapshot_every`: on the event loop that is a pause in
which no AMI event is handled (the DialBegin -> decision latency). So once a pickle has taken
longer than `INLINE_MAX`, the next ones are taken in a forked child: fork() gives the child the
state as it is at that instant (copy-on-write, so the snapshot is consistent), the child pickles
it on another core and sends the bytes back through a pipe; the loop goes on handling events and
reads the pipe as it fills. A small state (most PBXes of a fleet) is pickled in place, as is
everything when fork is not available or fails. The bytes are the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import struct
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("tollwatch.daemon")

INLINE_MAX = 0.002  # seconds: a pickle this slow moves the next ones to a child
DUTY = 0.05  # snapshots take at most this share of the time: a 0.4 s pickle, every 8 s at most
# ... and hold the event loop at most this share of it (the pickle in place, or the fork()
# call, which copies the page tables of the whole process: 5-50 ms for 100-250 MB): a 20 ms
# fork every 4 s at most, so the pauses stay out of the decision latency's 99th percentile
HOLD_DUTY = 0.005
CHILD_NICE = 10  # the child's priority below the daemon's (measured: a pinned daemon's child
# pickling on its core was the longest wait of the slow decisions at load 1.3)
_HEAD = struct.Struct("!Qd")  # bytes that follow, the child's pickling time


class Snapshotter:
    """`await take({name: snapshot_fn})` -> {name: bytes}, in place or in a child."""

    def __init__(
        self, inline_max: float = INLINE_MAX, duty: float = DUTY, hold_duty: float = HOLD_DUTY
    ) -> None:
        self.inline_max = inline_max
        self.duty = duty
        self.hold_duty = hold_duty
        self.last_s = 0.0  # how long the last pickling took (in place or in the child)
        self.held_s = 0.0  # how long the last snapshot held the loop (pickle in place, fork)
        self.taken_at = -float("inf")  # time.monotonic() of the last snapshot
        self.forked = 0  # snapshots taken in a child
        self.failed = 0  # children that failed (then taken in place)

    def due(self) -> bool:
        """Whether a snapshot may be taken now: a big state is pickled less often (at most
        `duty` of the time, and holding the loop at most `hold_duty` of it), whatever the
        writer's interval."""
        wait = max(self.last_s / self.duty, self.held_s / self.hold_duty)
        return time.monotonic() - self.taken_at >= wait

    async def take(
        self, snapshots: Mapping[str, Callable[[], bytes]], child: bool = False
    ) -> dict[str, bytes]:
        """`child`: in a child however fast the last pickle was (at stop, where the loop has
        nothing left to do: the pickler's memo and the baseline's dicts stay out of the
        daemon's memory; only the bytes come back)."""
        if not snapshots:
            return {}
        self.taken_at = time.monotonic()
        if (child or self.last_s > self.inline_max) and hasattr(os, "fork"):
            try:
                return await self._in_child(snapshots)
            except Exception as exc:
                self.failed += 1
                log.warning("snapshot in a child process failed (%s); taking it in place", exc)
        t = time.perf_counter()
        out = {name: fn() for name, fn in snapshots.items()}
        self.last_s = self.held_s = time.perf_counter() - t
        return out

    async def _in_child(self, snapshots: Mapping[str, Callable[[], bytes]]) -> dict[str, bytes]:
        names = list(snapshots)
        r, w = os.pipe()
        t = time.perf_counter()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            raise
        if pid != 0:
            self.held_s = time.perf_counter() - t
        if pid == 0:  # the child: pickle, write, leave without running any cleanup
            status = 1
            try:
                signal.set_wakeup_fd(-1)  # a signal here is not the parent's loop's business
                _step_aside()
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                os.close(r)
                for name in names:
                    t = time.perf_counter()
                    blob = snapshots[name]()
                    _write_all(w, _HEAD.pack(len(blob), time.perf_counter() - t))
                    _write_all(w, blob)
                status = 0
            finally:
                os._exit(status)
        os.close(w)
        try:
            data = await _read_all(r)
        except BaseException:  # cancelled (the daemon stops) or the pipe failed: the child's
            # work is not waited for
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            raise
        finally:
            _, code = await asyncio.to_thread(os.waitpid, pid, 0)
        if code != 0:
            raise RuntimeError(f"child exited with status {code}")
        out: dict[str, bytes] = {}
        pos = 0
        took = 0.0
        for name in names:
            if pos + _HEAD.size > len(data):
                raise RuntimeError("the child's snapshot is cut short")
            size, seconds = _HEAD.unpack_from(data, pos)
            pos += _HEAD.size
            if pos + size > len(data):
                raise RuntimeError("the child's snapshot is cut short")
            out[name] = data[pos : pos + size]
            pos += size
            took += seconds
        if pos != len(data):
            raise RuntimeError("the child sent more than its snapshots")
        self.last_s = took
        self.forked += 1
        return out


def _step_aside() -> None:
    """In the child: the daemon's decisions come first. Lower priority, and any core (a
    daemon pinned to one core would otherwise share it with its own child)."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(CHILD_NICE)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


async def _read_all(fd: int) -> bytes:
    """Everything until EOF from a pipe, read as it arrives (the loop is not held)."""
    loop = asyncio.get_running_loop()
    chunks: list[bytes] = []
    done = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        except OSError as exc:
            if not done.done():
                done.set_exception(exc)
            return
        if chunk:
            chunks.append(chunk)
        elif not done.done():
            done.set_result(None)

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)
    return b"".join(chunks)
